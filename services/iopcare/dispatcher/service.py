"""``iopcare dispatcher``: the alert-event consumer, the webhook sender and their web endpoints.

One process runs these on one event loop: :class:`AlertEventConsumer` (``iop.alerts.v1`` to
delivery rows), :class:`WebhookSender` (delivery rows to signed POSTs), :class:`DigestTimer` (the
counselors' daily digests at the clinic's hour), a :class:`GroupLagWatch` of its own consumer
group and a small aiohttp server with ``/metrics``,
``/healthz`` and ``/readyz``. Several dispatchers may run: the consumer group
splits the partitions, and ``SKIP LOCKED`` claims split the deliveries. SIGTERM lets the batch and
the POSTs in flight finish and be recorded, then commits and leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import aiohttp
import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from iopcare.dispatcher.consumer import AlertEventConsumer, AlertIntake
from iopcare.dispatcher.delivery import WebhookSender
from iopcare.dispatcher.digests import DigestTimer
from iopcare.dispatcher.progress import ResumeFromPostgres
from iopcare.dispatcher.webhooks.policy import DisablePolicy, RetryPolicy
from iopcare.dispatcher.webhooks.secrets import secret_box
from iopcare.dispatcher.webhooks.targets import GuardedResolver
from iopcare.endpoints import Endpoints
from iopcare.grouplag import GroupLagWatch
from iopcare.health import connect_pool, readiness
from iopcare.networks import parse_networks
from iopcare.rulepacks import DEFAULT_PACK, load_pack
from iopcare.settings import Settings

log = logging.getLogger(__name__)

# The embedded broker holds a fetch for its whole max wait even when records are there; a short
# wait keeps alert-to-POST latency low there and costs Apache Kafka only a few idle fetches.
_FETCH_MAX_WAIT_MS = 250


class Dispatcher:
    """The dispatcher service as an object: :meth:`start`, then :meth:`stop` (or :meth:`run`)."""

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self._stopping = asyncio.Event()
        self._stopped = False
        self._pool: asyncpg.Pool | None = None
        self._session: aiohttp.ClientSession | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.web_port: int | None = None
        self.sender: WebhookSender | None = None

    async def start(self) -> None:
        """Serve the web endpoints, connect to Postgres and the broker, start consuming and sending."""
        settings = self.settings
        await self._serve_web()
        self._pool = await connect_pool(self.endpoints.database_url, settings.database_pool_size)
        allowed = parse_networks(settings.webhook_allowed_networks)
        # Every name a webhook goes to is resolved through the guard (docs/webhooks.md, "Targets").
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(allowed)), trust_env=False
        )
        self.sender = WebhookSender(
            self._pool,
            self._session,
            retry=RetryPolicy(
                settings.webhook_retry_base_seconds,
                settings.webhook_retry_max_seconds,
                settings.webhook_max_attempts,
            ),
            disable=DisablePolicy(
                settings.webhook_disable_after_failures, settings.webhook_disable_after_seconds
            ),
            timeout_seconds=settings.webhook_timeout_seconds,
            box=secret_box(settings),
            allowed_networks=allowed,
            batch_size=settings.webhook_concurrency,
            poll_interval_seconds=settings.webhook_poll_interval_seconds,
        )
        sender = self.sender
        intake = AlertIntake(
            self._pool,
            settings.alerts_topic,
            settings.public_url,
            settings.webhook_coalesce_seconds,
            # New rows fall due when their coalescing wait ends: look then, not at the next poll.
            on_new=lambda: sender.wake(after=settings.webhook_coalesce_seconds + 0.01),
        )
        self._consumer = await self._start_consumer()
        self._tasks = [
            asyncio.create_task(
                AlertEventConsumer(self._consumer, intake).run(self._stopping), name="alert-consumer"
            ),
            asyncio.create_task(self.sender.run(self._stopping), name="webhook-sender"),
            asyncio.create_task(self._digest_timer(sender).run(self._stopping), name="digest-timer"),
            asyncio.create_task(
                GroupLagWatch(
                    self.endpoints.kafka_bootstrap, settings.dispatcher_group_id, settings.alerts_topic
                ).run(self._stopping, settings.group_lag_interval_seconds),
                name="group-lag",
            ),
        ]
        log.info(
            "dispatcher consuming %s as group %s; web on %s:%s",
            settings.alerts_topic,
            settings.dispatcher_group_id,
            settings.dispatcher_web_host,
            self.web_port,
        )

    def _digest_timer(self, sender: WebhookSender) -> DigestTimer:
        settings = self.settings
        pack = load_pack(settings.rule_pack) if settings.rule_pack else DEFAULT_PACK
        assert self._pool is not None
        return DigestTimer(
            self._pool,
            hour=pack.calendar.digest_hour,
            zone=pack.program_calendar.zone,
            public_url=settings.public_url,
            poll_seconds=settings.digest_poll_seconds,
            on_made=sender.wake,
        )

    async def _start_consumer(self) -> AIOKafkaConsumer:
        """Join the consumer group, waiting for the broker if it is not up yet."""
        settings = self.settings
        delay = 0.2
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.endpoints.kafka_bootstrap,
                group_id=settings.dispatcher_group_id,
                client_id="iopcare-dispatcher",
                enable_auto_commit=False,
                # Each assigned partition is sought to where Postgres records the intake got to
                # (dispatcher/progress.py). Where it records nothing (the first dispatcher ever), the
                # oldest retained alert event: nothing published before it started is lost.
                auto_offset_reset="earliest",
                fetch_max_wait_ms=_FETCH_MAX_WAIT_MS,
                session_timeout_ms=int(settings.broker_session_timeout_seconds * 1000),
                heartbeat_interval_ms=int(settings.broker_heartbeat_interval_seconds * 1000),
                rebalance_timeout_ms=int(settings.broker_rebalance_timeout_seconds * 1000),
            )
            assert self._pool is not None
            consumer.subscribe(
                [settings.alerts_topic],
                listener=ResumeFromPostgres(consumer, self._pool, settings.alerts_topic),
            )
            try:
                await consumer.start()
                return consumer
            except KafkaError as exc:
                await consumer.stop()
                log.warning("waiting for the broker (%s); retry in %.1fs", type(exc).__name__, delay)
            except asyncio.CancelledError:  # stopped while still waiting for the broker
                await consumer.stop()
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _serve_web(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.dispatcher_web_host, self.settings.dispatcher_web_port)
        await site.start()
        self.web_port = int(self._runner.addresses[0][1])  # the real port when 0 asked for any

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        reachable, checks = await readiness(self._pool, self.endpoints.kafka_bootstrap)
        # ...and the consumer and the sender are running (neither has died of an unexpected error).
        checks["running"] = bool(self._tasks) and not any(t.done() for t in self._tasks)
        ready = reachable and checks["running"]
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return web.json_response(body, status=200 if ready else 503)

    async def wait(self) -> None:
        """Return when :meth:`stop` was called, or raise if the consumer or the sender died."""
        stop = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait([stop, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        for task in done:
            if task is not stop and task.exception() is not None:
                raise RuntimeError(f"dispatcher task {task.get_name()} failed") from task.exception()

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Finish the work in flight (within the grace period), commit, leave the group, close."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        grace = grace_seconds if grace_seconds is not None else self.settings.webhook_timeout_seconds + 5
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=grace)
            for task in late:  # their rows' leases run out and another dispatcher retries them
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._consumer is not None:
            with contextlib.suppress(KafkaError):
                await self._consumer.stop()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._pool is not None:
            await self._pool.close()

    async def run(self) -> None:
        """Run until SIGTERM or SIGINT (or a fatal error), then stop cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        starting = asyncio.create_task(self.start())
        stop_requested = asyncio.create_task(self._stopping.wait())
        try:
            # A SIGTERM while still waiting for Postgres or the broker ends the wait.
            await asyncio.wait([starting, stop_requested], return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a failed start raises here
                await self.wait()
            else:
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
        finally:
            stop_requested.cancel()
            await self.stop()
