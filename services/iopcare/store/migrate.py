"""Versioned SQL migrations, applied in order and recorded in ``schema_migrations``.

Files live in ``store/migrations`` as ``NNNN_what_it_does.sql``; one file per schema change, never
edited once released (a checksum guards that). The one exception is :data:`REWORDED`: a comment of
a released file reworded (never a statement), whose released checksum is still accepted, and
replaced by the current one the first time a database is checked. A session-level advisory lock serializes
concurrent migrators, so two workers starting at once are safe: the second waits, then finds
nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import asyncpg

# Any constant shared by every iopcare migrator; 'iopcare' in ASCII.
MIGRATION_LOCK_ID = 0x696F7063617265

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

REWORDED: dict[int, frozenset[str]] = {
    # Comments that pointed outside the repository now point to docs/rules.md (statements unchanged).
    7: frozenset({"da013d97af87da96a98b69ba0717edb15383dc60d297470812cdd52b64b2c3e5"}),
    9: frozenset({"21852c288b54ed829a6e15ac0b1c09b164533e14d6703a4f8b785d3ed8a15f13"}),
}
"""Released checksums still accepted for a migration whose comments (only) were reworded since."""


class MigrationError(RuntimeError):
    """A migration file is malformed, was edited after being applied, or failed to apply."""


@dataclass(frozen=True)
class Migration:
    """One versioned SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The packaged migrations in version order; fails on a malformed name or a duplicate version."""
    folder = resources.files("iopcare.store") / "migrations"
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file name {entry.name!r} is not NNNN_lower_snake.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations share version {version:04d}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def migrate(
    connection: asyncpg.Connection,
    migrations: list[Migration] | None = None,
    report: Callable[[str], None] = lambda _line: None,
) -> list[Migration]:
    """Apply the pending migrations, each in its own transaction. Returns those applied now."""
    migrations = load_migrations() if migrations is None else migrations
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await connection.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer     PRIMARY KEY,
                name       text        NOT NULL,
                checksum   text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        applied = {
            row["version"]: row["checksum"]
            for row in await connection.fetch("SELECT version, checksum FROM schema_migrations")
        }
        done: list[Migration] = []
        for migration in migrations:
            if migration.version in applied:
                recorded = applied[migration.version]
                if recorded in REWORDED.get(migration.version, frozenset()):
                    await connection.execute(
                        "UPDATE schema_migrations SET checksum = $2 WHERE version = $1",
                        migration.version,
                        migration.checksum,
                    )
                elif recorded != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed after it was "
                        "applied; add a new migration instead of editing a released one"
                    )
                continue
            try:
                async with connection.transaction():
                    await connection.execute(migration.sql)
                    await connection.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                ) from exc
            report(f"applied {migration.version:04d}_{migration.name}")
            done.append(migration)
        return done
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)


async def migrate_url(
    database_url: str, report: Callable[[str], None] = lambda _line: None
) -> list[Migration]:
    """Connect, migrate, disconnect."""
    connection = await asyncpg.connect(database_url)
    try:
        return await migrate(connection, report=report)
    finally:
        await connection.close()
