"""Migrations against real Postgres: order, idempotence, concurrency, tamper detection."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from iopcare.endpoints import Endpoints
from iopcare.store.migrate import REWORDED, Migration, MigrationError, load_migrations, migrate

pytestmark = pytest.mark.integration


@pytest.fixture
async def empty_database(endpoints: Endpoints):
    base = endpoints.database_url.rpartition("/")[0]
    name = f"iopcare_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{base}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def test_packaged_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


async def test_two_migrators_at_once_apply_each_migration_once(empty_database: str) -> None:
    first, second = await asyncpg.connect(empty_database), await asyncpg.connect(empty_database)
    try:
        applied = await asyncio.gather(migrate(first), migrate(second))
        assert sorted(len(a) for a in applied) == [0, len(load_migrations())]
        rows = await first.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in load_migrations()]
        assert await migrate(first) == []
    finally:
        await first.close()
        await second.close()


async def test_an_edited_released_migration_is_refused(empty_database: str) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        migrations = load_migrations()
        await migrate(connection, migrations)
        edited = [Migration(migrations[0].version, migrations[0].name, migrations[0].sql + "\n-- edit")]
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(connection, edited)
    finally:
        await connection.close()


async def test_a_database_that_applied_a_reworded_migration_as_released_migrates_on(
    empty_database: str,
) -> None:
    """0007 and 0009 had comments reworded after release: a database that recorded their released
    checksums is accepted, and then records the current ones; any other edit is still refused."""
    connection = await asyncpg.connect(empty_database)
    try:
        migrations = load_migrations()
        await migrate(connection, migrations)
        for version, released in REWORDED.items():
            await connection.execute(
                "UPDATE schema_migrations SET checksum = $2 WHERE version = $1", version, next(iter(released))
            )
        assert await migrate(connection, migrations) == []
        recorded = dict(await connection.fetch("SELECT version, checksum FROM schema_migrations"))
        assert all(recorded[m.version] == m.checksum for m in migrations)
        edited = [m for m in migrations if m.version == 7]
        edited = [Migration(7, edited[0].name, edited[0].sql + "\n-- edit")]
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(connection, edited)
    finally:
        await connection.close()


async def test_a_failing_migration_rolls_back_and_says_which(empty_database: str) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        broken = [Migration(1, "broken", "CREATE TABLE t (a int); SELECT * FROM no_such_table;")]
        with pytest.raises(MigrationError, match="0001_broken failed"):
            await migrate(connection, broken)
        assert await connection.fetchval("SELECT to_regclass('t')") is None
        assert await connection.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await connection.close()
