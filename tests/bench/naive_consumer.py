"""The naive baseline: consume one record at a time and write it with its own autocommit statements.

Run as ``python -m tests.bench.naive_consumer --port P`` with the ``IOPCARE_*`` environment of a
worker. It does the pipeline's work per event, without batching: decode and validate the event,
``INSERT INTO event_log ... ON CONFLICT DO NOTHING`` (one autocommit), fold it into the patient's
state with the same pure domain, and upsert the ``patient_state`` row (a second autocommit). States
are cached in memory after the first read (this one consumer owns every partition), so per event
there are exactly two round trips. Kafka offsets are auto-committed by aiokafka every 5 s.
It is *not* exactly-once in effect (a crash between the two statements loses a state update):
it is the design the batched pipeline replaced, kept only to measure against.
``GET /progress`` reports how many records it has finished.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]

from iopcare.contract import InvalidEvent, decode_event, encode_event
from iopcare.domain.engagement import PatientState, apply_event
from iopcare.domain.state_document import dump_state, load_state
from iopcare.settings import get_settings

_INSERT_EVENT = """
    INSERT INTO event_log
        (source, event_id, patient_id, event_type, event_time, kafka_partition, kafka_offset, payload)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING 1
"""
_UPSERT_STATE = """
    INSERT INTO patient_state
        (patient_id, state, counselor_id, supervisor_id, level_of_care, high_water, last_checkin_at,
         events_applied, late_events, updated_at)
    VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8, $9, now())
    ON CONFLICT (patient_id) DO UPDATE SET
        state = EXCLUDED.state, counselor_id = EXCLUDED.counselor_id,
        supervisor_id = EXCLUDED.supervisor_id, level_of_care = EXCLUDED.level_of_care,
        high_water = EXCLUDED.high_water, last_checkin_at = EXCLUDED.last_checkin_at,
        events_applied = EXCLUDED.events_applied, late_events = EXCLUDED.late_events, updated_at = now()
"""
_INSERT_DEAD_LETTER = """
    INSERT INTO dead_letters
        (reason, detail, source_topic, source_partition, source_offset, record_key, payload)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
"""


async def consume(port: int) -> None:
    settings = get_settings()
    assert settings.kafka_bootstrap and settings.database_url, "IOPCARE_KAFKA_BOOTSTRAP/DATABASE_URL"
    progress: dict[str, Any] = {"records": 0, "first_at": None, "last_at": None}

    async def progress_page(_request: web.Request) -> web.Response:
        return web.json_response(progress)

    web_app = web.Application()
    web_app.router.add_get("/progress", progress_page)
    runner = web.AppRunner(web_app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    connection = await asyncpg.connect(settings.database_url)  # no transaction: each statement commits
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.processor_app_id,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        session_timeout_ms=int(settings.broker_session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(settings.broker_heartbeat_interval_seconds * 1000),
        rebalance_timeout_ms=int(settings.broker_rebalance_timeout_seconds * 1000),
    )
    await consumer.start()
    states: dict[str, PatientState] = {}
    max_skew = timedelta(days=1)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            fetch = asyncio.ensure_future(consumer.getone())
            done, _ = await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if fetch not in done:
                fetch.cancel()
                break
            record = fetch.result()
            try:
                event = decode_event(record.value or b"", key=record.key)
                if event.time > datetime.now(UTC) + max_skew:
                    raise InvalidEvent("future_time", "time: later than now + allowed skew")
            except InvalidEvent as exc:
                await connection.execute(
                    _INSERT_DEAD_LETTER,
                    exc.reason,
                    exc.detail,
                    record.topic,
                    record.partition,
                    record.offset,
                    record.key,
                    record.value or b"",
                )
            else:
                inserted = await connection.fetchval(
                    _INSERT_EVENT,
                    event.source,
                    event.id,
                    event.subject,
                    event.type,
                    event.time,
                    record.partition,
                    record.offset,
                    encode_event(event).decode(),
                )
                if inserted:
                    state = states.get(event.subject)
                    if state is None:
                        document = await connection.fetchval(
                            "SELECT state::text FROM patient_state WHERE patient_id = $1", event.subject
                        )
                        state = (
                            load_state(document)
                            if document not in (None, "{}")
                            else PatientState(patient_id=event.subject)
                        )
                        states[event.subject] = state
                    apply_event(state, event)
                    await connection.execute(
                        _UPSERT_STATE,
                        state.patient_id,
                        dump_state(state),
                        state.enrollment.counselor_id if state.enrollment else None,
                        state.enrollment.supervisor_id if state.enrollment else None,
                        state.level_of_care,
                        state.high_water,
                        state.last_checkin_at,
                        state.events_applied,
                        state.late_events,
                    )
            now = time.time()
            progress["first_at"] = progress["first_at"] or now
            progress["last_at"] = now
            progress["records"] += 1
    finally:
        stopping.cancel()
        with contextlib.suppress(Exception):
            await consumer.stop()
        await connection.close()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True, help="port for GET /progress")
    asyncio.run(consume(parser.parse_args().port))


if __name__ == "__main__":
    main()
