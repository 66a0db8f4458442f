"""Run the API: ``iopcare api``. Connects (waiting for Postgres), serves until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from iopcare.api.app import ApiService
from iopcare.api.ratelimit import FailedAuthLimiter
from iopcare.endpoints import Endpoints
from iopcare.health import connect_pool
from iopcare.networks import parse_networks
from iopcare.rulepacks import DEFAULT_PACK, load_pack
from iopcare.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, endpoints: Endpoints, *, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled or signalled; in-flight requests get up to 10 s to finish."""
    pack = load_pack(settings.rule_pack) if settings.rule_pack else DEFAULT_PACK
    pool = await connect_pool(endpoints.database_url, settings.database_pool_size)
    tls = settings.public_url.startswith("https://")  # TLS terminates in front of the API
    service = ApiService(
        pool=pool,
        pack=pack,
        kafka_bootstrap=endpoints.kafka_bootstrap,
        events_topic=settings.events_topic,
        limiter=FailedAuthLimiter(settings.api_failed_auth_limit, settings.api_failed_auth_window_seconds),
        trusted_proxies=parse_networks(settings.api_trusted_proxies),
        hsts_max_age=settings.api_hsts_max_age_seconds if tls else None,
    )
    runner = web.AppRunner(service.application(), access_log=None, shutdown_timeout=10)
    operations = web.AppRunner(service.metrics_application(), access_log=None, shutdown_timeout=2)
    await runner.setup()
    await operations.setup()
    await web.TCPSite(runner, settings.api_host, settings.api_port).start()
    await web.TCPSite(operations, settings.api_metrics_host, settings.api_metrics_port).start()
    log.info(
        "iopcare api listening on http://%s:%s (metrics on http://%s:%s/metrics)",
        settings.api_host,
        settings.api_port,
        settings.api_metrics_host,
        settings.api_metrics_port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await operations.cleanup()
        await pool.close()


__all__ = ["serve"]
