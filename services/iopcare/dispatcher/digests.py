"""The daily digests' timer: at the clinic's digest hour, gather each counselor's digest
(:func:`iopcare.store.digests.gather_digests`) and wake the webhook sender for their POSTs.

It looks every ``digest_poll_seconds``; the day it gathers is the latest whose digest hour has come
(:func:`iopcare.domain.digest.due_day`), so a dispatcher that was down at the hour makes the digest
when it is back, and one that looks again the same day finds it made. Several dispatchers may run
it: the digest is one row per counselor and day.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

import asyncpg

from iopcare.dispatcher import metrics
from iopcare.domain.digest import digest_time, due_day
from iopcare.store.digests import gather_digests

log = logging.getLogger(__name__)


class DigestTimer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        hour: int,
        zone: tzinfo,
        public_url: str,
        poll_seconds: float,
        on_made: Callable[[], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._hour = hour
        self._zone = zone
        self._public_url = public_url
        self._poll = poll_seconds
        self._on_made = on_made
        self._clock = clock

    async def gather_once(self) -> int:
        """Make the digests of the day now due that are not made yet; how many were made."""
        now = self._clock()
        day = due_day(now, self._hour, self._zone)
        async with self._pool.acquire() as connection, connection.transaction():
            made = await gather_digests(
                connection, day, digest_time(day, self._hour, self._zone), self._public_url
            )
        if made:
            metrics.DIGESTS.inc(len(made))
            log.info("made %d digests for %s (%d items)", len(made), day, sum(len(d.items) for d in made))
            self._on_made()
        return len(made)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.gather_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("digest pass failed (%s); retrying", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self._poll)


__all__ = ["DigestTimer"]
