"""The API's test clinic: the real API (aiohttp TestServer) on real Postgres and the real broker, with
two caseloads under two supervisors, live alerts for each patient and a token per role. Shared by
the API's integration tests and the reliability suite's security and hostile-input scenarios."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from iopcare.api.app import ApiService
from iopcare.api.ratelimit import FailedAuthLimiter
from iopcare.api.tokens import create_token
from iopcare.endpoints import Endpoints
from iopcare.rulepacks import DEFAULT_PACK
from iopcare.settings import Settings
from iopcare.store.digests import digest_id_for
from iopcare.store.engagement import EngagementStore
from iopcare.store.events import AcceptedEvent
from tests.databases import service_url
from tests.unit.domain.rules.clinic import Patient, at

NOW = at(3, 20)  # shortly after the seeded events
COUNSELOR_OF = {"pt-a1": "staff-c01", "pt-a2": "staff-c03", "pt-b1": "staff-c02"}


@dataclass
class Clinic:
    """Two caseloads under two supervisors, each patient with live alerts, and a token per role."""

    client: TestClient[Any, Any]
    metrics: TestClient[Any, Any]  # the API's operations port: /metrics
    pool: asyncpg.Pool
    service: ApiService
    tokens: dict[str, str]
    token_ids: dict[str, str]
    alert_of: dict[str, str]  # patient -> one of their alert ids
    house_report_id: str  # a sober-living report held for want of consent
    digest_of: dict[str, str]  # patient -> yesterday's digest of their counselor, listing that alert

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def audit_rows(self, request_id: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM audit_log WHERE request_id = $1::uuid ORDER BY id", request_id
        )


def _course(patient_id: str, counselor: str, supervisor: str) -> Patient:
    patient = Patient(patient_id)
    patient.enrolled(counselor=counselor, supervisor=supervisor)
    patient.checkin(at(1), craving=9)  # craving high
    patient.checkin(at(2), craving=3, safety=True)  # a crisis: critical
    patient.house(at(3), "curfew_violation")  # no consent for the house yet: held
    return patient


@pytest.fixture
async def clinic(clean_db: str, endpoints: Endpoints, unique_topics: Settings) -> AsyncIterator[Clinic]:
    from iopcare.topics import ensure_topics

    ensure_topics(endpoints.kafka_bootstrap, unique_topics)
    pool = await asyncpg.create_pool(clean_db, min_size=1, max_size=4)
    assert pool is not None
    store = EngagementStore(pool, clock="stream")
    patients = {
        "pt-a1": _course("pt-a1", "staff-c01", "staff-s01"),
        "pt-a2": _course("pt-a2", "staff-c03", "staff-s01"),  # same team, another counselor
        "pt-b1": _course("pt-b1", "staff-c02", "staff-s02"),
    }
    assert {pid: p.events[0].data.counselor_id for pid, p in patients.items()} == COUNSELOR_OF
    events = [e for p in patients.values() for e in p.events]
    await store.commit_batch([AcceptedEvent(e, 0, n) for n, e in enumerate(events)], [])
    alert_of = {
        pid: await pool.fetchval(
            "SELECT alert_id::text FROM alerts WHERE patient_id = $1 AND severity = 'critical'", pid
        )
        for pid in patients
    }
    assert all(alert_of.values())
    # Yesterday's digest of each counselor, listing their patient's alert (a digest normally lists
    # digest-tier alerts; any alert will do for who may see and act on it).
    digest_of = {
        pid: digest_id_for(counselor, NOW.date() - timedelta(days=1))
        for pid, counselor in COUNSELOR_OF.items()
    }
    await pool.executemany(
        "INSERT INTO digests (digest_id, counselor_id, for_day, made_at, alert_ids) "
        "VALUES ($1::uuid, $2, $3, $4, ARRAY[$5::uuid])",
        [
            (
                digest_of[pid],
                counselor,
                NOW.date() - timedelta(days=1),
                NOW - timedelta(hours=12),
                alert_of[pid],
            )
            for pid, counselor in COUNSELOR_OF.items()
        ],
    )
    tokens: dict[str, str] = {}
    token_ids: dict[str, str] = {}
    expires = NOW + timedelta(days=30)
    async with pool.acquire() as connection:
        for who, role, subject in [
            ("c01", "counselor", "staff-c01"),
            ("c02", "counselor", "staff-c02"),
            ("s01", "supervisor", "staff-s01"),
            ("integrator", "integrator", "ehr.clinic-a"),
            ("ops", "ops", "prometheus"),
        ]:
            token_ids[who], tokens[who] = await create_token(connection, role, subject, expires_at=expires)
    # The API connects as its own role, as in production; the test's pool is the owner's.
    api_pool = await asyncpg.create_pool(service_url(clean_db, "api"), min_size=1, max_size=4)
    assert api_pool is not None
    service = ApiService(
        pool=api_pool,
        pack=DEFAULT_PACK,
        kafka_bootstrap=endpoints.kafka_bootstrap,
        events_topic=unique_topics.events_topic,
        now=lambda: NOW,
        limiter=FailedAuthLimiter(limit=5, window=60),
    )
    client = TestClient(TestServer(service.application()))
    await client.start_server()
    metrics = TestClient(TestServer(service.metrics_application()))
    await metrics.start_server()
    # The API connects its producer in the background (it serves reads while the broker is away);
    # ingest tests need it connected, which on a loaded machine can take more than their first request.
    for _ in range(300):
        if service.producer is not None:
            break
        await asyncio.sleep(0.1)
    assert service.producer is not None, "the API's producer did not connect to the broker in 30 s"
    house_report = patients["pt-a1"].events[-1]
    try:
        yield Clinic(client, metrics, pool, service, tokens, token_ids, alert_of, house_report.id, digest_of)
    finally:
        await metrics.close()
        await client.close()
        await api_pool.close()
        await pool.close()
