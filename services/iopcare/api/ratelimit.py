"""Failed-authentication limiting per client, shared by every API replica through Postgres.

After ``limit`` failed attempts within a ``window`` (a fixed window from the client's first failure)
a client's further failures are answered 429 with ``Retry-After`` until the window ends: a client
that keeps sending bad tokens (a misconfigured integration, a script guessing) is slowed and shows
on the metrics, at no cost to anyone else. A valid token is always served, from any address: a
token carries 256 random bits, so the limit is about noise and load, never what keeps a token
secret, and a lockout must never shut the clinic out of its inbox (behind a proxy with
``IOPCARE_API_TRUSTED_PROXIES`` unset every counselor shares the proxy's address).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


@dataclass(frozen=True)
class FailedAuthLimiter:
    limit: int = 10
    window: float = 60.0

    async def failed(self, connection: Connection, client: str) -> float | None:
        """Record a failure of ``client``; seconds until its window ends if it is now past the limit,
        else None."""
        row = await connection.fetchrow(
            """
            INSERT INTO auth_failures AS f (client, window_start, failures)
            VALUES ($1, clock_timestamp(), 1)
            ON CONFLICT (client) DO UPDATE SET
                window_start = CASE WHEN f.window_start + make_interval(secs => $2) <= clock_timestamp()
                                    THEN clock_timestamp() ELSE f.window_start END,
                failures = CASE WHEN f.window_start + make_interval(secs => $2) <= clock_timestamp()
                                THEN 1 ELSE f.failures + 1 END
            RETURNING failures,
                      extract(epoch FROM f.window_start + make_interval(secs => $2) - clock_timestamp())
                          AS remaining
            """,
            client,
            self.window,
        )
        assert row is not None  # an upsert returns its row
        if row["failures"] <= self.limit:
            return None
        return max(0.0, float(row["remaining"]))

    async def prune(self, connection: Connection) -> int:
        """Forget the clients whose window has passed; returns how many."""
        done = await connection.execute(
            "DELETE FROM auth_failures WHERE window_start + make_interval(secs => $1) <= clock_timestamp()",
            self.window,
        )
        return int(done.rsplit(" ", 1)[1])


__all__ = ["FailedAuthLimiter"]
