"""The live processor (real worker, broker, Postgres) and `iopcare replay` raise the same alerts."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from kafka.partitioner.default import murmur2

from iopcare.contract import encode_event
from iopcare.domain.alerts import Change
from iopcare.domain.backtest import StreamReplay
from iopcare.endpoints import Endpoints
from iopcare.publish import EventPublisher
from iopcare.rulepacks import DEFAULT_PACK
from iopcare.settings import Settings
from iopcare.simulation import generate_cohort
from tests.comparisons import ALERT_FIELDS
from tests.integration.workers import WorkerProcess, wait_for_count

pytestmark = pytest.mark.integration


def _watermark(events: list, partitions: int) -> datetime:
    """Where the processor's stream clock ends: the least, over partitions, of the latest event time."""
    latest: dict[int, datetime] = {}
    for event in events:
        partition = (murmur2(event.subject.encode()) & 0x7FFFFFFF) % partitions
        latest[partition] = max(latest.get(partition, event.time), event.time)
    return min(latest.values())


async def _settled(database_url: str, until: datetime, within: float = 60) -> None:
    """Wait until the sweeps have fired every check and escalation due by ``until``."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            pending = await connection.fetchval(
                "SELECT (SELECT count(*) FROM absence_checks WHERE fired_at IS NULL AND due_at <= $1)"
                " + (SELECT count(*) FROM alerts WHERE state = 'open' AND escalate_at <= $1)",
                until,
            )
            if pending == 0:
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"{pending} checks or escalations still due after {within}s")
    finally:
        await connection.close()


async def test_the_live_processor_and_replay_raise_the_same_alerts(
    endpoints: Endpoints, topics: Settings, clean_db: str, tmp_path: Path
) -> None:
    events = sorted(
        generate_cohort(200, seed=3, start=date.today() - timedelta(days=91)), key=lambda e: (e.time, e.id)
    )
    worker = WorkerProcess(
        endpoints.kafka_bootstrap,
        clean_db,
        topics,
        tmp_path,
        app_id=f"test-live-replay-{uuid.uuid4().hex[:6]}",
        extra_env={"IOPCARE_CLOCK": "stream", "IOPCARE_SWEEP_INTERVAL_SECONDS": "0.2"},
    )
    try:
        with EventPublisher(endpoints.kafka_bootstrap, topics.events_topic) as publisher:
            # Pipelined (one acknowledgement wait per event would take minutes); a patient's events
            # still reach their partition in order (one request in flight per connection).
            report = publisher.publish_all((n, encode_event(e)) for n, e in enumerate(events, start=1))
        assert report.ok, (report.invalid[:3], report.failed[:3])
        logged = await wait_for_count(clean_db, "SELECT count(*) FROM event_log", len(events), within=600)
        assert logged == len(events)
        until = _watermark(events, topics.topic_partitions)
        await _settled(clean_db, until)
        connection = await asyncpg.connect(clean_db)
        try:
            rows = await connection.fetch("SELECT * FROM alerts")
            transitions = await connection.fetch(
                "SELECT a.dedup_key, t.kind, t.actor, t.at, t.from_state, t.to_state, t.reason "
                "FROM alert_transitions t JOIN alerts a USING (alert_id) ORDER BY t.id"
            )
        finally:
            await connection.close()
    finally:
        assert worker.stop() in (0, -15), worker.log()[-3000:]

    replay = StreamReplay(DEFAULT_PACK, until=until)
    replayed_changes: list[Change] = []
    for event in events:
        replayed_changes += [c for _, effects in replay.feed(event) for c in effects.changes]
    replayed_changes += [c for _, effects in replay.finish() for c in effects.changes]
    replayed = {a.dedup_key: a for course in replay.courses.values() for a in course.alerts.alerts.values()}
    live = {
        row["dedup_key"]: {f: row[f] for f in ALERT_FIELDS} | {"event_ids": tuple(row["event_ids"])}
        for row in rows
    }
    expected = {
        key: {f: getattr(alert, f) for f in ALERT_FIELDS} | {"event_ids": alert.event_ids}
        for key, alert in replayed.items()
    }
    assert len(expected) > 50, "the cohort should raise a fair number of alerts"
    assert sorted(live) == sorted(expected)
    differing = [key for key in expected if live[key] != expected[key]]
    assert not differing, [
        (key, {f: (live[key][f], expected[key][f]) for f in live[key] if live[key][f] != expected[key][f]})
        for key in differing[:5]
    ] + [(t["kind"], t["at"], t["reason"]) for t in transitions if t["dedup_key"] in differing[:1]]

    # Every transition of every alert, in order, with its time, actor, states and reason.
    def by_alert(rows: list[tuple[str, tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
        grouped: dict[str, list[tuple[object, ...]]] = {}
        for key, transition in rows:
            grouped.setdefault(key, []).append(transition)
        return grouped

    live_transitions = by_alert(
        [
            (t["dedup_key"], (t["kind"], t["actor"], t["at"], t["from_state"], t["to_state"], t["reason"]))
            for t in transitions
        ]
    )
    replayed_transitions = by_alert(
        [
            (c.alert.dedup_key, (c.kind, c.actor, c.at, c.from_state, c.alert.state, c.reason))
            for c in replayed_changes
        ]
    )
    assert sum(map(len, replayed_transitions.values())) > len(expected), "more transitions than alerts"
    assert sorted(live_transitions) == sorted(replayed_transitions)
    unequal = [key for key in replayed_transitions if live_transitions[key] != replayed_transitions[key]]
    assert not unequal, [(key, live_transitions[key], replayed_transitions[key]) for key in unequal[:3]]
