"""The HTTP API on real Postgres and the real broker: caseload isolation on every route, tokens and
their revocation, rate limiting, the audit log, counselor actions, ingest and the OpenAPI document."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from kafka import KafkaConsumer

from iopcare.api.app import CARE_ROLES, ROUTES, openapi
from iopcare.api.models import MAX_ACTION_BYTES
from iopcare.api.tokens import create_token, revoke_token
from iopcare.contract import encode_event
from iopcare.endpoints import Endpoints
from iopcare.networks import parse_networks
from iopcare.settings import Settings
from tests.integration.clinic import NOW, Clinic
from tests.unit.domain.rules.clinic import Patient, at

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _path(template: str, alert_id: str, patient_id: str, digest_id: str = "") -> str:
    return (
        template.replace("{alert_id}", alert_id)
        .replace("{patient_id}", patient_id)
        .replace("{digest_id}", digest_id)
    )


_BODIES: dict[str, dict[str, Any]] = {
    "acknowledge": {"note": "called"},
    "snooze": {"until": (NOW + timedelta(hours=2)).isoformat(), "reason": "in hospital"},
    "resolve": {"reason": "safety plan in place"},
}


def _body(path: str) -> dict[str, Any] | None:
    return _BODIES.get(path.rsplit("/", 1)[-1])


async def test_every_care_route_answers_not_found_across_caseloads_and_audits_the_refusal(
    clinic: Clinic,
) -> None:
    care_routes = [r for r in ROUTES if r.roles == CARE_ROLES and "{" in r.path]
    assert len(care_routes) >= 5
    for route in care_routes:
        path = _path(route.path, clinic.alert_of["pt-b1"], "pt-b1", clinic.digest_of["pt-b1"])
        response = await clinic.client.request(
            route.method, path, headers=clinic.auth("c01"), json=_body(path)
        )
        assert response.status == 404, (route.path, await response.text())
        problem = await response.json()
        assert problem["error"] == "not_found" and "pt-b1" not in json.dumps(problem)
        rows = await clinic.audit_rows(response.headers["X-Request-Id"])
        assert [(r["outcome"], r["patient_id"], r["actor"]) for r in rows] == [
            ("denied", "pt-b1", "staff-c01")
        ]
    # A supervisor of another team is refused the same way; a nonexistent id looks identical.
    for alert_id in (clinic.alert_of["pt-b1"], str(uuid.uuid4()), "not-a-uuid"):
        response = await clinic.client.get(f"/v1/alerts/{alert_id}", headers=clinic.auth("s01"))
        assert response.status == 404
    # Nothing of B's changed.
    state = await clinic.pool.fetchval(
        "SELECT state FROM alerts WHERE alert_id = $1::uuid", clinic.alert_of["pt-b1"]
    )
    assert state == "open"


async def test_roles_outside_the_care_team_are_forbidden_patient_data_and_counselors_cannot_ingest(
    clinic: Clinic,
) -> None:
    for who in ("integrator", "ops"):
        for route in (r for r in ROUTES if r.roles == CARE_ROLES):
            path = _path(route.path, clinic.alert_of["pt-a1"], "pt-a1", clinic.digest_of["pt-a1"])
            response = await clinic.client.request(
                route.method, path, headers=clinic.auth(who), json=_body(path)
            )
            assert response.status == 403, (who, route.path)
    response = await clinic.client.post("/v1/events", headers=clinic.auth("c01"), json=[])
    assert response.status == 403
    me = await clinic.client.get("/v1/me", headers=clinic.auth("ops"))
    assert await me.json() == {"token_id": clinic.token_ids["ops"], "role": "ops", "subject": "prometheus"}


async def test_a_counselor_lists_their_caseload_and_a_supervisor_their_team_page_by_page(
    clinic: Clinic,
) -> None:
    response = await clinic.client.get("/v1/alerts", headers=clinic.auth("c01"))
    page = await response.json()
    assert {a["patient_id"] for a in page["alerts"]} == {"pt-a1"}
    assert page["alerts"][0]["severity"] == "critical"  # most severe first
    rows = await clinic.audit_rows(response.headers["X-Request-Id"])
    assert [(r["action"], r["patient_id"], r["outcome"]) for r in rows] == [
        ("alerts.list", "pt-a1", "allowed")
    ]

    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        response = await clinic.client.get("/v1/alerts", headers=clinic.auth("s01"), params=query)
        page = await response.json()
        seen += [a["alert_id"] for a in page["alerts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    team = await clinic.pool.fetch(
        "SELECT alert_id::text FROM alerts WHERE patient_id IN ('pt-a1', 'pt-a2') AND state <> 'resolved'"
    )
    assert sorted(seen) == sorted(r["alert_id"] for r in team) and len(seen) == len(set(seen)) >= 4

    only = await clinic.client.get(
        "/v1/alerts", headers=clinic.auth("s01"), params={"counselor_id": "staff-c03", "severity": "critical"}
    )
    assert [a["patient_id"] for a in (await only.json())["alerts"]] == ["pt-a2"]
    for bad in ({"limit": "0"}, {"state": "closed"}, {"cursor": "garbage"}):
        response = await clinic.client.get("/v1/alerts", headers=clinic.auth("c01"), params=bad)
        assert response.status == 400, bad


async def test_alert_detail_shows_evidence_history_and_timeline_but_not_unconsented_reports(
    clinic: Clinic,
) -> None:
    alert_id = clinic.alert_of["pt-a1"]
    response = await clinic.client.get(f"/v1/alerts/{alert_id}", headers=clinic.auth("c01"))
    assert response.status == 200
    detail = await response.json()
    assert detail["alert"]["rule_id"] == "safety" and detail["alert"]["explanation"]
    assert detail["evidence"]["event_ids"] == ["pt-a1-e3"]
    # The crisis went unacknowledged past 15 minutes of stream time: it escalated in the batch.
    assert [t["kind"] for t in detail["transitions"]] == ["created", "escalated"]
    timeline_ids = [e["event_id"] for e in detail["timeline"]]
    assert timeline_ids == ["pt-a1-e3", "pt-a1-e2", "pt-a1-e1"]  # newest first; the held report is absent
    assert clinic.house_report_id not in timeline_ids
    assert 0 <= detail["risk"]["score"] <= 100 and detail["risk"]["factors"]
    rows = await clinic.audit_rows(response.headers["X-Request-Id"])
    assert [(r["action"], r["patient_id"], str(r["alert_id"])) for r in rows] == [
        ("alert.read", "pt-a1", alert_id)
    ]


async def test_acknowledge_snooze_and_resolve_record_the_counselor_and_refuse_what_does_not_apply(
    clinic: Clinic,
) -> None:
    alert_id = clinic.alert_of["pt-a1"]
    response = await clinic.client.post(
        f"/v1/alerts/{alert_id}/acknowledge", headers=clinic.auth("c01"), json={"note": "called her"}
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["state"] == "acknowledged"
    transition = await clinic.pool.fetchrow(
        "SELECT kind, actor, reason FROM alert_transitions WHERE alert_id = $1::uuid "
        "ORDER BY id DESC LIMIT 1",
        alert_id,
    )
    assert tuple(transition) == ("acknowledged", "staff-c01", "called her")
    assert (
        await clinic.pool.fetchval(
            "SELECT count(*) FROM outbox "
            "WHERE kind = 'iop.alert.acknowledged' AND payload->'data'->>'alert_id' = $1",
            alert_id,
        )
        == 1
    )

    past = {"until": (NOW - timedelta(hours=1)).isoformat(), "reason": "x"}
    response = await clinic.client.post(
        f"/v1/alerts/{alert_id}/snooze", headers=clinic.auth("c01"), json=past
    )
    assert response.status == 409
    rows = await clinic.audit_rows(response.headers["X-Request-Id"])
    assert [r["outcome"] for r in rows] == ["rejected"]
    for bad in ({"reason": ""}, {"until": "tomorrow", "reason": "x"}, {"reason": "x", "extra": 1}):
        response = await clinic.client.post(
            f"/v1/alerts/{alert_id}/snooze", headers=clinic.auth("c01"), json=bad
        )
        assert response.status == 400, bad

    response = await clinic.client.post(
        f"/v1/alerts/{alert_id}/resolve", headers=clinic.auth("s01"), json={"reason": "safety plan in place"}
    )
    assert (await response.json())["state"] == "resolved"
    again = await clinic.client.post(
        f"/v1/alerts/{alert_id}/acknowledge", headers=clinic.auth("c01"), json={}
    )
    assert again.status == 409
    metrics = await (await clinic.metrics.get("/metrics")).text()
    assert 'iopcare_alert_time_to_acknowledge_seconds_count{severity="critical"}' in metrics
    assert "pt-a1" not in metrics and alert_id not in metrics


async def test_a_callers_request_id_and_trace_follow_the_request_to_the_audit_row_and_the_alert_event(
    clinic: Clinic,
) -> None:
    alert_id = clinic.alert_of["pt-a1"]
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    proxy_id = "7f3a9c01d2e44b5c9a1e0c2d4f6b8a90"  # as nginx's $request_id: 32 hex digits
    headers = clinic.auth("c01") | {"X-Request-ID": proxy_id, "traceparent": traceparent}
    response = await clinic.client.post(
        f"/v1/alerts/{alert_id}/acknowledge", headers=headers, json={"outcome": "contacted_patient"}
    )
    assert response.status == 200, await response.text()
    assert response.headers["X-Request-ID"] == str(uuid.UUID(proxy_id))
    assert [r["action"] for r in await clinic.audit_rows(proxy_id)] == ["alert.acknowledge"]
    answered = response.headers["traceresponse"]
    assert answered.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-") and answered != traceparent
    published = await clinic.pool.fetchval(
        "SELECT payload->>'traceparent' FROM outbox "
        "WHERE kind = 'iop.alert.acknowledged' AND payload->'data'->>'alert_id' = $1",
        alert_id,
    )
    assert published == answered  # the request's span published the alert event

    # An id that is not a plain token is replaced, never echoed; so is an invalid traceparent.
    for offered in ("short", "lb-7f3a9c01d2e4", "<script>alert(1)</script>", "a" * 200):
        response = await clinic.client.get(
            "/v1/alerts", headers=clinic.auth("c01") | {"X-Request-ID": offered, "traceparent": "00-zz"}
        )
        assert response.status == 200
        assert re.fullmatch(r"[0-9a-f-]{36}", response.headers["X-Request-ID"]), offered
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", response.headers["traceresponse"])


async def test_patient_summary_has_risk_and_live_alerts(clinic: Clinic) -> None:
    response = await clinic.client.get("/v1/patients/pt-a2", headers=clinic.auth("s01"))
    assert response.status == 200
    summary = await response.json()
    assert summary["counselor_id"] == "staff-c03" and summary["level_of_care"] == "2.1"
    assert summary["last_craving"] == 3 and summary["this_week"]["week"] == 1
    assert {a["rule_id"] for a in summary["live_alerts"]} >= {"safety"}
    assert summary["risk"]["trend_direction"] in ("rising", "falling", "steady")
    denied = await clinic.client.get("/v1/patients/pt-a2", headers=clinic.auth("c01"))
    assert denied.status == 404


async def test_the_patient_view_comes_from_the_read_model_not_the_state_document(clinic: Clinic) -> None:
    """The processor's state document is its own: a version the API could not read changes nothing."""
    before = await (await clinic.client.get("/v1/patients/pt-a2", headers=clinic.auth("s01"))).json()
    async with clinic.pool.acquire() as connection:
        await connection.execute(
            "UPDATE patient_state SET state = '{\"unreadable\": true}', state_version = 999 "
            "WHERE patient_id = 'pt-a2'"
        )
    response = await clinic.client.get("/v1/patients/pt-a2", headers=clinic.auth("s01"))
    assert response.status == 200
    assert await response.json() == before
    alert_id = before["live_alerts"][0]["alert_id"]
    detail = await clinic.client.get(f"/v1/alerts/{alert_id}", headers=clinic.auth("s01"))
    assert detail.status == 200 and (await detail.json())["risk"] == before["risk"]


async def test_revoked_and_expired_tokens_fail(clinic: Clinic) -> None:
    assert (await clinic.client.get("/v1/me", headers=clinic.auth("c02"))).status == 200
    async with clinic.pool.acquire() as connection:
        await revoke_token(connection, clinic.token_ids["c02"], NOW)
        _, expired = await create_token(
            connection, "counselor", "staff-c09", expires_at=NOW - timedelta(seconds=1)
        )
    assert (await clinic.client.get("/v1/me", headers=clinic.auth("c02"))).status == 401
    response = await clinic.client.get("/v1/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_failed_authentication_is_rate_limited_per_address_and_a_valid_token_still_works(
    clinic: Clinic,
) -> None:
    for attempt in range(5):
        response = await clinic.client.get("/v1/me", headers={"Authorization": f"Bearer iop_guess{attempt}"})
        assert response.status == 401
    limited = await clinic.client.get("/v1/me", headers={"Authorization": "Bearer iop_guess6"})
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    assert (await clinic.client.get("/v1/me", headers=clinic.auth("c01"))).status == 200
    # Without trusted proxies X-Forwarded-For is anyone's to send: it names no other client.
    spoofed = await clinic.client.get(
        "/v1/me", headers={"Authorization": "Bearer iop_guess7", "X-Forwarded-For": "203.0.113.50"}
    )
    assert spoofed.status == 429


async def test_behind_a_trusted_proxy_one_clients_bad_tokens_do_not_lock_out_another(clinic: Clinic) -> None:
    clinic.service.trusted_proxies = parse_networks("127.0.0.1, 10.0.0.0/8")

    def via_proxy(client: str, token: str) -> dict[str, str]:
        # A spoofed first hop, the client as the edge proxy saw it, then an inner proxy.
        return {"Authorization": f"Bearer {token}", "X-Forwarded-For": f"198.51.100.1, {client}, 10.0.0.7"}

    for attempt in range(6):
        response = await clinic.client.get("/v1/me", headers=via_proxy("203.0.113.5", f"iop_guess{attempt}"))
        assert response.status == (401 if attempt < 5 else 429), attempt
    other = await clinic.client.get("/v1/me", headers=via_proxy("203.0.113.9", clinic.tokens["c01"]))
    assert other.status == 200
    assert (await clinic.client.get("/v1/me", headers=via_proxy("203.0.113.9", "iop_typo"))).status == 401
    rows = await clinic.pool.fetch("SELECT client, failures FROM auth_failures ORDER BY client")
    assert [(r["client"], r["failures"]) for r in rows] == [("203.0.113.5", 6), ("203.0.113.9", 1)]


async def test_the_failed_attempts_are_counted_across_api_replicas(clinic: Clinic) -> None:
    replica = TestClient(TestServer(replace(clinic.service, producer=None, _background=[]).application()))
    await replica.start_server()
    try:
        for attempt in range(5):
            client = clinic.client if attempt % 2 else replica
            assert (
                await client.get("/v1/me", headers={"Authorization": f"Bearer iop_{attempt}"})
            ).status == 401
        assert (await replica.get("/v1/me", headers={"Authorization": "Bearer iop_x"})).status == 429
        assert (await clinic.client.get("/v1/me", headers={"Authorization": "Bearer iop_y"})).status == 429
    finally:
        await replica.close()


async def test_bodies_must_be_json_and_within_the_routes_limit(clinic: Clinic) -> None:
    alert = clinic.alert_of["pt-a1"]
    path = f"/v1/alerts/{alert}/acknowledge"
    as_form = await clinic.client.post(
        path,
        data=b"note=hi",
        headers=clinic.auth("c01") | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert as_form.status == 415 and (await as_form.json())["error"] == "unsupported_media_type"
    huge = b'{"note": "' + b"x" * (MAX_ACTION_BYTES + 10) + b'"}'
    too_big = await clinic.client.post(
        path, data=huge, headers=clinic.auth("c01") | {"Content-Type": "application/json"}
    )
    assert too_big.status == 413

    # Refused on its Content-Length, before the body is read: 20 MB never reach memory.
    async def twenty_megabytes() -> AsyncIterator[bytes]:
        for _ in range(20 * 16):
            yield b"[" + b" " * (64 * 1024 - 2) + b"]"

    ingest = await clinic.client.post(
        "/v1/events",
        data=twenty_megabytes(),
        headers=clinic.auth("integrator") | {"Content-Type": "application/cloudevents-batch+json"},
    )
    assert ingest.status == 413
    assert all(r["outcome"] != "allowed" for r in await clinic.pool.fetch("SELECT outcome FROM audit_log"))
    fine = await clinic.client.post(path, json={"outcome": "contacted_patient"}, headers=clinic.auth("c01"))
    assert fine.status == 200


async def test_responses_name_no_server_software_and_metrics_are_not_public(clinic: Clinic) -> None:
    response = await clinic.client.get("/healthz")
    assert response.headers["Server"] == "iopcare"
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP here: no TLS in front
    assert (await clinic.client.get("/metrics")).status == 404
    metrics = await clinic.metrics.get("/metrics")
    assert metrics.status == 200 and "iopcare_api_requests_total" in await metrics.text()
    behind_tls = TestClient(
        TestServer(replace(clinic.service, hsts_max_age=31_536_000).metrics_application())
    )
    await behind_tls.start_server()
    try:
        hsts = (await behind_tls.get("/healthz")).headers["Strict-Transport-Security"]
        assert hsts == "max-age=31536000; includeSubDomains"
    finally:
        await behind_tls.close()


async def test_ingest_produces_valid_events_and_rejects_bad_ones_with_reasons(
    clinic: Clinic, endpoints: Endpoints, unique_topics: Settings
) -> None:
    patient = Patient("pt-new1")
    good = [json.loads(encode_event(e)) for e in (patient.enrolled(), patient.checkin(at(1)))]
    bad_type = dict(good[1], type="iop.unknown.v9", id="x-1")
    missing = {k: v for k, v in good[1].items() if k != "subject"}
    response = await clinic.client.post(
        "/v1/events", headers=clinic.auth("integrator"), json=[good[0], bad_type, 42, missing, good[1]]
    )
    assert response.status == 207
    body = await response.json()
    assert (body["accepted"], body["rejected"]) == (2, 3)
    assert [r["status"] for r in body["results"]] == [
        "accepted",
        "rejected",
        "rejected",
        "rejected",
        "accepted",
    ]
    assert all(r["reason"] for r in body["results"] if r["status"] == "rejected")
    assert body["results"][1]["reason"] == "unknown_type"

    consumer = KafkaConsumer(
        unique_topics.events_topic,
        bootstrap_servers=endpoints.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
    )
    try:
        records = list(consumer)
    finally:
        consumer.close()
    assert sorted(json.loads(r.value)["id"] for r in records) == sorted(g["id"] for g in good)
    assert {r.key for r in records} == {b"pt-new1"}
    rows = await clinic.audit_rows(response.headers["X-Request-Id"])
    assert sorted((r["action"], r["outcome"], r["patient_id"]) for r in rows) == [
        ("events.ingest", "allowed", "pt-new1"),
        ("events.ingest", "allowed", "pt-new1"),
        ("events.ingest", "rejected", None),
    ]
    as_json = clinic.auth("integrator") | {"Content-Type": "application/json"}
    assert (await clinic.client.post("/v1/events", headers=as_json, data=b"\xff{")).status == 400
    untyped = await clinic.client.post("/v1/events", headers=clinic.auth("integrator"), data=b"{}")
    assert untyped.status == 415  # no Content-Type: aiohttp's default is application/octet-stream
    only_bad = await clinic.client.post("/v1/events", headers=clinic.auth("integrator"), json=bad_type)
    assert only_bad.status == 422


async def test_every_patient_data_request_has_an_audit_row(clinic: Clinic) -> None:
    request_ids = []
    for who, path in [
        ("c01", "/v1/alerts"),
        ("c01", f"/v1/alerts/{clinic.alert_of['pt-a1']}"),
        ("c01", f"/v1/alerts/{clinic.alert_of['pt-b1']}"),
        ("s01", "/v1/patients/pt-a1"),
        ("s01", "/v1/patients/pt-nobody"),
        ("c02", "/v1/alerts?state=resolved"),
    ]:
        response = await clinic.client.get(path, headers=clinic.auth(who))
        request_ids.append(response.headers["X-Request-Id"])
    for request_id in request_ids:
        assert await clinic.audit_rows(request_id), request_id


async def test_the_openapi_document_is_served_checked_in_and_matches_the_router(clinic: Clinic) -> None:
    served = await (await clinic.client.get("/openapi.json")).json()
    assert served == json.loads(json.dumps(openapi()))
    assert json.loads((ROOT / "schemas" / "openapi.json").read_text()) == served
    documented = {(method.upper(), path) for path, ops in served["paths"].items() for method in ops}
    routed = {
        (resource_route.method, resource.canonical)
        for resource in clinic.client.server.app.router.resources()
        for resource_route in resource
        if resource_route.method != "HEAD"
    }
    assert routed == documented


async def test_alert_gauges_count_live_alerts_by_severity_and_state(clinic: Clinic) -> None:
    await clinic.service.update_alert_gauges()
    metrics = await (await clinic.metrics.get("/metrics")).text()
    critical = await clinic.pool.fetchval(
        "SELECT count(*) FROM alerts WHERE severity = 'critical' AND state = 'open'"
    )
    assert f'iopcare_alerts_open{{severity="critical",state="open"}} {float(critical)}' in metrics
    age = (NOW - at(2)).total_seconds()
    assert f'iopcare_alert_oldest_unacknowledged_seconds{{severity="critical"}} {age}' in metrics


async def test_health_and_readiness(clinic: Clinic) -> None:
    assert (await clinic.client.get("/healthz")).status == 200
    ready = await clinic.client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["checks"] == {"postgres": True, "broker": True}


async def test_an_unchanged_page_is_not_modified_and_audited_once(clinic: Clinic) -> None:
    first = await clinic.client.get("/v1/alerts", headers=clinic.auth("s01"))
    etag = first.headers["ETag"]
    assert len(await clinic.audit_rows(first.headers["X-Request-Id"])) == 2  # pt-a1 and pt-a2
    again = await clinic.client.get("/v1/alerts", headers=clinic.auth("s01") | {"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag and await again.read() == b""
    rows = await clinic.audit_rows(again.headers["X-Request-Id"])
    assert [(r["outcome"], r["patient_id"]) for r in rows] == [("unchanged", None)]
    # A change to the page (an acknowledgement) is a new page.
    await clinic.client.post(f"/v1/alerts/{clinic.alert_of['pt-a2']}/acknowledge", headers=clinic.auth("s01"))
    changed = await clinic.client.get("/v1/alerts", headers=clinic.auth("s01") | {"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
