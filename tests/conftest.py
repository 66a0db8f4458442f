"""Session fixtures: one real Kafka-protocol broker and one real Postgres for the whole run.

By default the embedded runtime is started under ``.iopcare/test-runtime`` (apart from the demo's)
and stopped at the end. Set ``IOPCARE_KAFKA_BOOTSTRAP`` and ``IOPCARE_DATABASE_URL`` to run the same
tests against other servers (Apache Kafka, a system Postgres).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from iopcare.dispatcher.webhooks.secrets import new_key
from iopcare.embedded import EmbeddedRuntime
from iopcare.endpoints import Endpoints
from iopcare.settings import Settings
from tests.databases import create_migrated, drop, empty_tables

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Every process of the run (tests, the services they start, the CLI) encrypts and decrypts webhook
# secrets with one key, and the tests' webhook receivers listen on this machine, which a dispatcher
# refuses unless told (docs/webhooks.md, "Targets"). A test about either sets its own.
os.environ.setdefault("IOPCARE_WEBHOOK_SECRET_KEYS", new_key())
os.environ.setdefault("IOPCARE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32")


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    """Broker and Postgres server for the session (not yet a database: see ``database_url``)."""
    kafka, database = os.environ.get("IOPCARE_KAFKA_BOOTSTRAP"), os.environ.get("IOPCARE_DATABASE_URL")
    if kafka and database:
        yield Endpoints(kafka, database, embedded=False)
        return
    runtime = EmbeddedRuntime(PROJECT_ROOT / ".iopcare" / "test-runtime")
    addresses = runtime.up()
    try:
        yield Endpoints(kafka or addresses.kafka_bootstrap, database or addresses.database_url, embedded=True)
    finally:
        runtime.down()


@pytest.fixture(scope="session")
async def database_url(endpoints: Endpoints) -> AsyncIterator[str]:
    """A fresh, migrated database for this session, dropped at the end."""
    name = f"iopcare_test_{uuid.uuid4().hex[:10]}"
    yield await create_migrated(endpoints.database_url, name)
    await drop(endpoints.database_url, name)


@pytest.fixture
async def clean_db(database_url: str) -> AsyncIterator[str]:
    """The session database, every table but the migration record emptied before the test."""
    connection = await asyncpg.connect(database_url)
    try:
        await empty_tables(connection)
    finally:
        await connection.close()
    yield database_url


@pytest.fixture
def unique_topics() -> Settings:
    """Settings with topic names of their own, so tests sharing the broker never see each other's events."""
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        events_topic=f"test.events.{suffix}",
        alerts_topic=f"test.alerts.{suffix}",
        dead_letter_topic=f"test.events.{suffix}.dlq",
        topic_partitions=4,
    )
