"""Liveness and readiness probes shared by every service (worker, API, dispatcher), and the
connection pool every service waits for at start."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

log = logging.getLogger(__name__)

PROBE_SECONDS = 2.0


async def postgres_reachable(pool: asyncpg.Pool | None) -> bool:
    """Whether a pooled connection answers ``SELECT 1`` in time (None: not connected yet)."""
    if pool is None:
        return False
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            async with pool.acquire() as connection:
                await connection.fetchval("SELECT 1")
        return True
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


async def broker_reachable(bootstrap: str) -> bool:
    """Whether any bootstrap server accepts a connection (Kafka clients retry on their own)."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            await writer.wait_closed()
            return True
        except (OSError, TimeoutError, ValueError):
            continue
    return False


async def readiness(pool: asyncpg.Pool | None, bootstrap: str) -> tuple[bool, dict[str, bool]]:
    """``/readyz``: ready when Postgres and the broker are both reachable; the checks name which not."""
    checks = {"postgres": await postgres_reachable(pool), "broker": await broker_reachable(bootstrap)}
    return all(checks.values()), checks


async def connect_pool(database_url: str, max_size: int) -> asyncpg.Pool:
    """A pool, waiting for Postgres if it is not up yet (a service may start before the database)."""
    delay = 0.2
    while True:
        try:
            pool = await asyncpg.create_pool(database_url, min_size=1, max_size=max_size)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError) as exc:
            log.warning("waiting for Postgres (%s); retry in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
        assert pool is not None
        return pool


__all__ = ["PROBE_SECONDS", "broker_reachable", "connect_pool", "postgres_reachable", "readiness"]
