"""The framework ceiling: a Faust agent on the events topic that acks every record and does nothing else.

Run as ``python -m tests.bench.noop_worker`` with the same ``IOPCARE_*`` environment as a pipeline
worker. Its app is built from the very options ``iopcare.processor.app.build_app`` passes to
``faust.App`` (raw serializers, group timeouts, ``broker_max_poll_records``, ``stream_buffer_maxsize``,
commit settings, the ``iopcare://`` transport and its fetch wait), and its agent consumes the same
way (``noack_take`` batches, one ``ack`` per record), so the only difference from the pipeline is the
work done per batch. ``GET /progress`` reports how many records it has acked.
"""

from __future__ import annotations

import time
from typing import Any

import faust
from faust.worker import Worker

from iopcare.endpoints import Endpoints
from iopcare.processor.app import build_app
from iopcare.processor.transport import use_fetch_wait
from iopcare.settings import get_settings


def noop_app() -> faust.App:
    """A Faust app with the pipeline's options and an agent that only acks."""
    settings = get_settings()
    assert settings.kafka_bootstrap, "IOPCARE_KAFKA_BOOTSTRAP is required"
    endpoints = Endpoints(settings.kafka_bootstrap, settings.database_url or "unused", embedded=False)
    # build_app's own keyword arguments to faust.App, so that a change there changes the ceiling too.
    # (``_default_options`` is faust's record of them: (id, options).)
    template = build_app(settings, endpoints, app_id=settings.processor_app_id)
    app_id, options = template._default_options
    app = faust.App(app_id, **options)
    use_fetch_wait(app, settings.fetch_max_wait_ms)  # the same consumer as the pipeline's
    events_topic = app.topic(settings.events_topic, key_type=bytes, value_type=bytes)
    progress: dict[str, Any] = {"records": 0, "first_at": None, "last_at": None}
    # Seconds from each record's Kafka timestamp (set by the producer when it sends) to its ack.
    delays: list[float] = []

    @app.agent(events_topic, name="noop")
    async def noop(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.noack_take(  # type: ignore[attr-defined]
            settings.batch_max_records, within=settings.batch_max_wait_seconds
        ):
            events = list(batch)
            for event in events:
                await stream.ack(event)
            now = time.time()
            delays.extend(now - (event.message.timestamp or now) for event in events)
            progress["first_at"] = progress["first_at"] or now
            progress["last_at"] = now
            progress["records"] += len(events)

    @app.page("/progress")
    async def progress_page(web: faust.web.View, _request: faust.web.Request) -> faust.web.Response:
        return web.json(progress)

    @app.page("/delays")
    async def delays_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """Record-timestamp-to-ack delays of the records after the first ``skip`` (the warm-up)."""
        return web.json(delays[int(request.query.get("skip", "0")) :])

    return app


def main() -> None:
    settings = get_settings()
    Worker(noop_app(), loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
