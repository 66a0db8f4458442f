"""The counselor's daily digest on real Postgres: gathered once per counselor and day (again: nothing
new), with its webhook POST for the counselor's own endpoint (codes and counts only), listed by the
API to the counselor and their supervisor and no one else, acknowledged in one step with an
outcome on every live item, audited per patient."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from iopcare.dispatcher.digests import DigestTimer
from iopcare.dispatcher.webhooks.store import add_endpoint, claim_due
from iopcare.domain.digest import digest_time
from iopcare.store.digests import gather_digests
from iopcare.store.engagement import AcceptedEvent, EngagementStore
from tests.integration.clinic import NOW, Clinic
from tests.unit.domain.rules.clinic import Patient, at

pytestmark = pytest.mark.integration

URL = "https://iop.example"


async def _house_incidents(clinic: Clinic) -> None:
    """pt-a3 (staff-c01's) has two minor house incidents: two digest items."""
    patient = Patient("pt-a3")
    patient.enrolled(counselor="staff-c01", supervisor="staff-s01")
    patient.house_consent()
    patient.house(at(1, 23), "curfew_violation")
    patient.house(at(2, 20), "missed_house_meeting")
    store = EngagementStore(clinic.pool, clock="stream")
    await store.commit_batch([AcceptedEvent(e, 0, 1000 + n) for n, e in enumerate(patient.events)], [])


async def test_a_counselors_digest_is_made_once_listed_to_their_team_and_acknowledged_in_one_step(
    clinic: Clinic,
) -> None:
    await _house_incidents(clinic)
    tiers = await clinic.pool.fetch("SELECT rule_id, tier FROM alerts WHERE patient_id = 'pt-a3'")
    assert sorted(tuple(r) for r in tiers) == [
        ("silence", "inbox"),  # no check-in since the enrollment: shown in the inbox, not the digest
        ("sober_living_incident", "digest"),
        ("sober_living_incident", "digest"),
    ]
    endpoint = await add_endpoint(clinic.pool, "counselor", "staff-c01", f"{URL}/hook", "s" * 32)
    await add_endpoint(clinic.pool, "team", "staff-s01", f"{URL}/team", "t" * 32)
    day = NOW.date()
    cutoff = digest_time(day, 8, UTC) + timedelta(days=1)
    async with clinic.pool.acquire() as connection, connection.transaction():
        (made,) = await gather_digests(connection, day, cutoff, URL)
    assert made.counselor_id == "staff-c01" and len(made.items) == 2
    async with clinic.pool.acquire() as connection, connection.transaction():
        assert await gather_digests(connection, day, cutoff, URL) == []  # made already: nothing twice

    # One POST, to the counselor's own endpoint (the team's hears alerts, not the digest).
    (delivery,) = [d for d in await claim_due(clinic.pool, 10, 30) if d.digest is not None]
    assert delivery.endpoint_id == endpoint and delivery.patient_id is None
    assert delivery.digest == {
        "digest_id": made.digest_id,
        "counselor_id": "staff-c01",
        "for_day": day.isoformat(),
        "items": 2,
        "patients": 1,
        "url": f"{URL}/inbox#digest-{made.digest_id}",
    }

    listed = await clinic.client.get("/v1/digests", headers=clinic.auth("c01"))
    assert listed.status == 200, await listed.text()
    view, yesterday = (await listed.json())["digests"]  # newest first
    assert view["digest_id"] == made.digest_id and yesterday["digest_id"] == clinic.digest_of["pt-a1"]
    assert view["headline"].endswith(": 2 items about 1 patient")
    assert view["by_rule"] == {"sober_living_incident": 2}
    assert {i["state"] for i in view["items"]} == {"open"}
    rows = await clinic.audit_rows(listed.headers["X-Request-Id"])
    assert [(r["action"], r["patient_id"], r["outcome"]) for r in rows] == [
        ("digests.list", "pt-a1", "allowed"),
        ("digests.list", "pt-a3", "allowed"),
    ]
    supervisor = await (await clinic.client.get("/v1/digests", headers=clinic.auth("s01"))).json()
    assert supervisor["digests"][0]["digest_id"] == made.digest_id  # then the team's older ones
    assert {d["counselor_id"] for d in supervisor["digests"]} == {"staff-c01", "staff-c03"}
    other = await (await clinic.client.get("/v1/digests", headers=clinic.auth("c02"))).json()
    assert [d["counselor_id"] for d in other["digests"]] == ["staff-c02"]
    refused = await clinic.client.post(
        f"/v1/digests/{made.digest_id}/acknowledge", headers=clinic.auth("c02"), json={}
    )
    assert refused.status == 404  # as if there were none; the patients it is about are recorded
    rows = await clinic.audit_rows(refused.headers["X-Request-Id"])
    assert [(r["outcome"], r["patient_id"]) for r in rows] == [("denied", "pt-a3")]

    done = await clinic.client.post(
        f"/v1/digests/{made.digest_id}/acknowledge",
        headers=clinic.auth("c01"),
        json={"outcome": "no_action_needed"},
    )
    assert done.status == 200, await done.text()
    after = await done.json()
    assert after["acknowledged_by"] == "staff-c01" and {i["state"] for i in after["items"]} == {
        "acknowledged"
    }
    outcomes = await clinic.pool.fetch(
        "SELECT acknowledgement_outcome FROM alerts WHERE patient_id = 'pt-a3' AND tier = 'digest'"
    )
    assert [r["acknowledgement_outcome"] for r in outcomes] == ["no_action_needed"] * 2
    rows = await clinic.audit_rows(done.headers["X-Request-Id"])
    assert [(r["action"], r["patient_id"], r["outcome"]) for r in rows] == [
        ("digest.acknowledge", "pt-a3", "allowed")
    ] * 2


async def test_the_dispatchers_timer_makes_the_day_due_at_the_clinics_hour(clinic: Clinic) -> None:
    await _house_incidents(clinic)
    woken: list[bool] = []
    hour_passed = digest_time(NOW.date() + timedelta(days=1), 8, UTC)

    def timer(now: datetime) -> DigestTimer:
        return DigestTimer(
            clinic.pool,
            hour=8,
            zone=UTC,
            public_url=URL,
            poll_seconds=60,
            on_made=lambda: woken.append(True),
            clock=lambda: now,
        )

    assert await timer(hour_passed - timedelta(minutes=1)).gather_once() == 1  # yesterday's, late
    assert await timer(hour_passed).gather_once() == 0  # today's: nothing left to gather
    days = await clinic.pool.fetch("SELECT for_day FROM digests WHERE for_day >= $1", NOW.date())
    assert [r["for_day"] for r in days] == [NOW.date()] and woken == [True]
