"""A valid event that makes the domain raise is dead-lettered; its partition goes on.

The defect is real code in the worker's process: a local rule (``poison_rule.py``) in a test rule pack,
loaded by the pack loader like a clinic's own rules. Nothing in the pipeline is mocked.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from iopcare.contract import InboundEvent
from iopcare.contract.examples import example_event
from iopcare.domain.intake import replay
from iopcare.endpoints import Endpoints
from iopcare.publish import EventPublisher
from iopcare.rulepacks import DEFAULT_PACK_PATH
from iopcare.settings import Settings
from iopcare.store.engagement import EngagementStore
from tests.conftest import PROJECT_ROOT
from tests.integration.poison_rule import POISON_ID_PREFIX
from tests.integration.workers import WorkerProcess, read_topic, wait_for_count

pytestmark = pytest.mark.integration


def _course(patient: str, checkins: int, poison_at: int | None = None) -> list[InboundEvent]:
    """An enrolment then daily check-ins; the ``poison_at``-th check-in carries the poison id."""
    enrolled = example_event("iop.patient.enrolled")
    enrolled = enrolled.model_copy(update={"subject": patient, "id": f"enrol-{patient}"})
    checkin = example_event("iop.checkin.submitted")
    events: list[InboundEvent] = [enrolled]
    for n in range(checkins):
        prefix = POISON_ID_PREFIX if n == poison_at else "checkin-"
        events.append(
            checkin.model_copy(
                update={
                    "subject": patient,
                    "id": f"{prefix}{patient}-{n}",
                    "time": enrolled.time + timedelta(days=n + 1),
                }
            )
        )
    return events


@pytest.fixture
def poisoned_pack(tmp_path: Path) -> Path:
    """The default pack plus the defective local rule."""
    path = tmp_path / "poisoned.toml"
    path.write_text(
        DEFAULT_PACK_PATH.read_text() + '\n[local_rules]\nmodules = ["tests.integration.poison_rule"]\n'
    )
    return path


async def test_an_event_the_domain_cannot_process_is_dead_lettered_and_its_partition_goes_on(
    endpoints: Endpoints, topics: Settings, clean_db: str, tmp_path: Path, poisoned_pack: Path
) -> None:
    poisoned = _course("p-poisoned", checkins=6, poison_at=2)
    others = _course("p-bystander", checkins=3)
    poison = [e for e in poisoned if e.id.startswith(POISON_ID_PREFIX)]
    good = [e for e in poisoned + others if e not in poison]
    worker = WorkerProcess(
        endpoints.kafka_bootstrap,
        clean_db,
        topics,
        tmp_path,
        app_id=f"test-poison-{uuid.uuid4().hex[:6]}",
        extra_env={"IOPCARE_RULE_PACK": str(poisoned_pack), "PYTHONPATH": str(PROJECT_ROOT)},
    )
    try:
        await worker.wait_healthy()
        # One patient's events share a key, hence a partition: the ones after the poison wait on it.
        with EventPublisher(endpoints.kafka_bootstrap, topics.events_topic) as publisher:
            for event in poisoned + others:
                publisher.publish(event)

        assert await wait_for_count(clean_db, "SELECT count(*) FROM event_log", len(good)) == len(good)
        assert await wait_for_count(clean_db, "SELECT count(*) FROM dead_letters", 1) == 1
        connection = await asyncpg.connect(clean_db)
        try:
            dead = await connection.fetchrow("SELECT reason, detail, payload FROM dead_letters")
            logged = {r["event_id"] for r in await connection.fetch("SELECT event_id FROM event_log")}
        finally:
            await connection.close()
        assert dead["reason"] == "processing_failed"
        # The exception's class and where it was raised, never its message (it names the patient).
        assert dead["detail"].startswith("RuleDefect at tests/integration/poison_rule.py:"), dead["detail"]
        assert "p-poisoned" not in dead["detail"]
        assert logged == {e.id for e in good}

        # Every other event, before and after the poison on its partition, is applied as if it were
        # never sent.
        pool = await asyncpg.create_pool(clean_db, min_size=1, max_size=1)
        try:
            assert await EngagementStore(pool).load_states() == replay(good)
        finally:
            await pool.close()

        [record] = read_topic(endpoints.kafka_bootstrap, topics.dead_letter_topic, 1)
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["iopcare-dlq-reason"] == "processing_failed"
        assert record.key == b"p-poisoned"

        assert await worker.wait_for_metric("iopcare_processing_failures_total", 1) == 1
        assert await worker.metric("iopcare_dead_letters_total", reason="processing_failed") == 1

        # The worker is still up and still processing that partition.
        later = _course("p-poisoned", checkins=8)[-1]
        with EventPublisher(endpoints.kafka_bootstrap, topics.events_topic) as publisher:
            publisher.publish(later)
        assert (
            await wait_for_count(clean_db, "SELECT count(*) FROM event_log", len(good) + 1) == len(good) + 1
        )
        assert worker.process.poll() is None
    finally:
        assert worker.stop() in (0, -15), worker.log()[-3000:]
