"""Fixtures shared by the integration tests: fresh topics and a worker per test (``clean_db``, the
emptied database, is in the top-level conftest)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from iopcare.endpoints import Endpoints
from iopcare.settings import Settings
from iopcare.topics import ensure_topics
from tests.integration.clinic import clinic  # noqa: F401 (a fixture: the API's test clinic)
from tests.integration.workers import WorkerProcess


@pytest.fixture
def topics(endpoints: Endpoints, unique_topics: Settings) -> Settings:
    """Topics of this test's own (4 partitions), created on the broker."""
    ensure_topics(endpoints.kafka_bootstrap, unique_topics)
    return unique_topics


@pytest.fixture
def worker(endpoints: Endpoints, topics: Settings, clean_db: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    """One real `iopcare worker` on this test's topics and database; it must stop cleanly."""
    process = WorkerProcess(
        endpoints.kafka_bootstrap, clean_db, topics, tmp_path, app_id=f"test-processor-{uuid.uuid4().hex[:6]}"
    )
    yield process
    assert process.stop() in (0, -15), process.log()[-3000:]


@pytest.fixture
async def pool(clean_db: str) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool on the emptied session database, for tests that drive the store directly."""
    pool = await asyncpg.create_pool(clean_db, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()
