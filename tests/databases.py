"""Throwaway databases on a Postgres server, for the test session and the benchmark's contenders."""

from __future__ import annotations

import asyncpg

from iopcare.store.migrate import migrate


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def create_migrated(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url``, apply every migration, return its URL."""
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(server_url, name)
    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    return url


async def drop(server_url: str, *names: str) -> None:
    """Drop the databases, disconnecting anyone still on them."""
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
