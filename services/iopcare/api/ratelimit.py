"""Failed-authentication rate limiting, per client address.

After ``limit`` failed attempts within ``window`` seconds an address is refused (429) for every
request, valid token or not, until its failures age out: if a valid token still worked, a guesser
would learn when they hit one. Per API process and in memory: a restart forgets, and N replicas
allow N times the attempts, which is still far below what guessing a 256-bit token needs.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class FailedAuthLimiter:
    def __init__(
        self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        cutoff = self._clock() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None if it is not limited."""
        failures = self._recent(client)
        if len(failures) < self.limit:
            return None
        return max(0.0, failures[-self.limit] + self.window - self._clock())

    def failed(self, client: str) -> None:
        self._recent(client)
        self._failures.setdefault(client, deque()).append(self._clock())
        if len(self._failures) > 10_000:  # bound memory under a spray from many addresses
            oldest = min(self._failures, key=lambda c: self._failures[c][-1])
            del self._failures[oldest]


__all__ = ["FailedAuthLimiter"]
