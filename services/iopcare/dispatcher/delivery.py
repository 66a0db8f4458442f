"""The webhook sender: POSTs due deliveries, signed, and records what happened.

Each pass claims up to ``batch_size`` due deliveries (``FOR UPDATE SKIP LOCKED`` plus a lease, see
:func:`iopcare.dispatcher.webhooks.store.claim_due`), POSTs them concurrently with a timeout, then closes each
as delivered (any 2xx) or schedules its retry with backoff and jitter, giving up after the last
attempt. Redirects are not followed: a 3xx is a failure, so a webhook never lands on a URL nobody
registered. An endpoint whose failures pass the :class:`~iopcare.dispatcher.webhooks.DisablePolicy`
is disabled with the reason (counts and status codes, never a response body), logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence

import aiohttp
import asyncpg

from iopcare.dispatcher import metrics
from iopcare.dispatcher.webhooks.policy import (
    DisablePolicy,
    RetryPolicy,
    digest_body,
    notification_body,
    origin,
    signed_headers,
)
from iopcare.dispatcher.webhooks.secrets import SecretBox, SecretKeyError
from iopcare.dispatcher.webhooks.store import (
    DueDelivery,
    claim_due,
    disable_endpoint,
    pending_count,
    record_delivered,
    record_failed_attempt,
)
from iopcare.dispatcher.webhooks.targets import TargetRefused, check_literal
from iopcare.networks import Network
from iopcare.tracing import new_trace, parse_traceparent, tracing

log = logging.getLogger(__name__)


class WebhookSender:
    """Sends due webhook deliveries; :meth:`run` loops until told to stop."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        *,
        retry: RetryPolicy,
        disable: DisablePolicy,
        timeout_seconds: float,
        box: SecretBox,
        allowed_networks: Sequence[Network] = (),
        batch_size: int = 16,
        poll_interval_seconds: float = 1.0,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._session = session
        self._retry = retry
        self._disable = disable
        self._box = box
        self._allowed = tuple(allowed_networks)
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        # A claimed row is not due again until the POST has had its time, plus a margin.
        self._lease_seconds = timeout_seconds + 30
        self._batch_size = batch_size
        self._poll_interval = poll_interval_seconds
        self._jitter = jitter
        self._clock = clock
        self._wake = asyncio.Event()

    def wake(self, after: float = 0.0) -> None:
        """Look for due deliveries in ``after`` seconds instead of at the next poll (new rows were
        written that fall due then)."""
        if after <= 0:
            self._wake.set()
        else:
            asyncio.get_running_loop().call_later(after, self._wake.set)

    async def send_due(self) -> int:
        """One pass: claim due deliveries, POST them, record the outcomes. Returns how many."""
        claimed = await claim_due(self._pool, self._batch_size, self._lease_seconds)
        if claimed:
            await asyncio.gather(*(self._attempt(d) for d in claimed))
        return len(claimed)

    async def run(self, stopping: asyncio.Event) -> None:
        """Send until ``stopping`` is set; a pass in flight is finished first."""
        while not stopping.is_set():
            self._wake.clear()  # a wake-up during the pass below is kept for the wait after it
            sent = 0
            try:
                sent = await self.send_due()
                metrics.PENDING_DELIVERIES.set(await pending_count(self._pool))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("webhook pass failed (%s); retrying", type(exc).__name__)
            if sent < self._batch_size:  # a full batch means more may be due: go on at once
                waits = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stopping.wait())]
                await asyncio.wait(waits, timeout=self._poll_interval, return_when=asyncio.FIRST_COMPLETED)
                for task in waits:
                    task.cancel()

    async def _attempt(self, delivery: DueDelivery) -> None:
        # The POST continues the trace of the (first) alert event it carries; a digest starts one.
        causes = (parse_traceparent(n.traceparent) for n in delivery.notices)
        cause = next((c for c in causes if c is not None), None)
        with tracing(cause.child() if cause is not None else new_trace()) as trace:
            await self._post(delivery, trace.traceparent)

    async def _post(self, delivery: DueDelivery, traceparent: str) -> None:
        if delivery.digest is not None:
            body = digest_body(delivery.delivery_id, delivery.created_at, delivery.digest)
        else:
            assert delivery.patient_id is not None  # an alert notification is one patient's
            body = notification_body(
                delivery.delivery_id,
                delivery.notification_group,
                delivery.patient_id,
                delivery.created_at,
                delivery.notices,
            )
        status: int | None = None
        error = ""
        started = time.perf_counter()
        try:
            secrets = [self._box.open(sealed) for sealed in delivery.sealed_secrets]
            headers = signed_headers(secrets, body, delivery.delivery_id, delivery.attempt, self._clock())
            headers["traceparent"] = traceparent
            # A name is checked by the session's resolver (GuardedResolver); an address is not
            # resolved, so it is checked here.
            check_literal(delivery.url, self._allowed)
            async with self._session.post(
                delivery.url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                status = response.status
                # The body is never read: it may echo patient data back, and nothing here needs it.
                response.release()
        except Exception as exc:  # any failure of the POST is the endpoint's, never the dispatcher's
            error = type(exc).__name__
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, TargetRefused | SecretKeyError):
                cause = cause.__cause__  # aiohttp wraps its resolver's refusal in a connector error
            if cause is not None:
                error = type(cause).__name__
                log.error(
                    "webhook not sent: %s",
                    cause,
                    extra={"delivery_id": delivery.delivery_id, "endpoint_id": delivery.endpoint_id},
                )
        finally:
            elapsed = time.perf_counter() - started
            metrics.DELIVERY_SECONDS.observe(elapsed)
        if status is not None and 200 <= status < 300:
            await record_delivered(self._pool, delivery, status)
            metrics.DELIVERIES.labels("delivered").inc()
            log.info(
                "webhook delivered",
                extra={
                    "delivery_id": delivery.delivery_id,
                    "endpoint_id": delivery.endpoint_id,
                    "attempt": delivery.attempt,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
            return
        if status is not None:
            error = f"http_{status}"
        final = self._retry.gives_up(delivery.attempt)
        retry_in = None if final else self._retry.delay(delivery.attempt, self._jitter())
        streak = await record_failed_attempt(self._pool, delivery, error, status, retry_in)
        metrics.DELIVERIES.labels("failed" if final else "retried").inc()
        log.info(
            "webhook delivery %s to endpoint %d (%s) attempt %d failed: %s; %s",
            delivery.delivery_id,
            delivery.endpoint_id,
            origin(delivery.url),
            delivery.attempt,
            error,
            "giving up" if final else f"retry in {retry_in:.1f}s",
        )
        if streak is None:
            return
        reason = self._disable.reason(streak.consecutive_failures, streak.failing_since, streak.now, error)
        if reason is None:
            return
        async with self._pool.acquire() as connection:
            disabled = await disable_endpoint(connection, delivery.endpoint_id, reason)
        if disabled:
            metrics.ENDPOINTS_DISABLED.inc()
            log.warning(
                "webhook endpoint %d (%s) disabled: %s", delivery.endpoint_id, origin(delivery.url), reason
            )
