"""Throwaway databases and topics, for the test session, the benchmark and the reliability suite."""

from __future__ import annotations

import asyncpg

from iopcare.settings import Settings
from iopcare.store.migrate import migrate
from iopcare.store.roles import ROLES, Service, as_role, enable_logins
from iopcare.topics import ensure_topics

ROLE_PASSWORD = "iopcare-test-role"
"""The test servers' login password of every service role (the embedded server trusts local
connections and ignores it; a server named by ``IOPCARE_DATABASE_URL`` checks it)."""


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def create(server_url: str, name: str) -> str:
    """Create the empty database ``name`` on the server of ``server_url``; return its URL."""
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(server_url, name)


async def create_migrated(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url``, apply every migration and give the
    services' roles their logins (as ``iopcare setup`` does); return its URL (the owner's)."""
    url = await create(server_url, name)
    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
        await enable_logins(connection, dict.fromkeys(ROLES, ROLE_PASSWORD), trusted_server=False)
    finally:
        await connection.close()
    return url


def service_url(database_url: str, service: Service) -> str:
    """``database_url`` as the service's own role: how the services connect in production."""
    return as_role(database_url, service, ROLE_PASSWORD)


async def empty_tables(connection: asyncpg.Connection) -> None:
    """Empty every table but the migration record (as the owner, on a superuser's connection)."""
    tables = await connection.fetch(
        "SELECT quote_ident(tablename) AS name FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
    )
    # The audit log's trigger refuses TRUNCATE to everyone (migration 0015); a replica session
    # (superuser only) fires no triggers, which is what emptying a test database needs.
    async with connection.transaction():
        await connection.execute("SET LOCAL session_replication_role = replica")
        await connection.execute(f"TRUNCATE {', '.join(t['name'] for t in tables)} RESTART IDENTITY")


async def drop(server_url: str, *names: str) -> None:
    """Drop the databases, disconnecting anyone still on them."""
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def fresh_topics(kafka_bootstrap: str, base: str, partitions: int) -> Settings:
    """Settings naming new topics under ``base`` (events, their dead letters, alerts), created on the
    broker (the embedded broker keeps topics in memory until it stops)."""
    settings = Settings(
        events_topic=f"{base}.events",
        dead_letter_topic=f"{base}.events.dlq",
        alerts_topic=f"{base}.alerts",
        topic_partitions=partitions,
    )
    ensure_topics(kafka_bootstrap, settings)
    return settings
