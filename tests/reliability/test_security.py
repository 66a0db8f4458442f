"""Scenario 6 of the reliability suite: security of the HTTP API (issue 6).

Every route in :data:`iopcare.api.app.ROUTES`, called by every role on its own and on another
caseload, on the real API over real Postgres and the real broker: another caseload is 404 with a
``denied`` audit row, a role that may not call the route is 403, revoked and expired tokens are 401,
guessing is rate limited (429 with Retry-After, even for a valid token), SQL injection strings in every
path, query and body field change no table and leak nothing, and every patient-data request the tests
make has its audit row. Last, real ``iopcare worker`` and ``iopcare api`` processes at DEBUG are driven
with tokens and notes carrying marker strings, and their logs are scanned for every one of them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest

from iopcare.api.app import ROUTES, Route
from iopcare.api.ratelimit import FailedAuthLimiter
from iopcare.api.tokens import create_token, revoke_token
from iopcare.contract import encode_event
from iopcare.endpoints import Endpoints
from iopcare.settings import Settings
from iopcare.topics import ensure_topics
from tests.integration.clinic import NOW, Clinic
from tests.integration.workers import WorkerProcess, wait_for_count
from tests.reliability.apiprocess import ApiProcess
from tests.unit.domain.rules.clinic import Patient

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

QUICK = os.environ.get("IOPCARE_RELIABILITY_QUICK", "1") != "0"
GUESSES = 10  # the product's default limit: the 11th request from the address is refused
INJECTIONS: tuple[str, ...] = (
    "' OR '1'='1",
    "'; DROP TABLE alerts; --",
    "pt-b1' OR patient_id LIKE '%",
    '" OR ""="',
    "1; UPDATE alerts SET state='resolved'; --",
    "') UNION SELECT patient_id, state::text FROM patient_state --",
    "$1",
    "\\x00'; SELECT pg_sleep(5); --",
    "%' AND 1=CAST((SELECT string_agg(patient_id, ',') FROM patient_state) AS int) --",
    "00000000-0000-0000-0000-000000000000' OR '1'='1",
)
if not QUICK:
    INJECTIONS += tuple(f"{s}/*{n}*/" for n in range(4) for s in INJECTIONS)
LEAK_PATTERNS = re.compile(
    r"syntax error|SQLSTATE|asyncpg|psycopg|postgres|relation \"|pg_catalog|Traceback|column \"",
    re.IGNORECASE,
)

# Who is who in the clinic fixture: each care role's own patient and another caseload's.
CARE = {"c01": ("pt-a1", "pt-b1"), "s01": ("pt-a2", "pt-b1"), "c02": ("pt-b1", "pt-a1")}
OTHERS = {"integrator": ("pt-a1", "pt-b1"), "ops": ("pt-a1", "pt-b1")}
ROLE_OF = {
    "c01": "counselor",
    "s01": "supervisor",
    "c02": "counselor",
    "integrator": "integrator",
    "ops": "ops",
}


def _bodies() -> dict[str, dict[str, Any]]:
    return {
        "acknowledge": {"note": "called"},
        "snooze": {"until": (NOW + timedelta(hours=2)).isoformat(), "reason": "in hospital"},
        "resolve": {"reason": "safety plan in place"},
    }


@dataclass
class Sent:
    route: Route
    who: str
    status: int
    request_id: str


@dataclass
class Caller:
    """The clinic's client, recording every request (for the audit check) and every response body."""

    clinic: Clinic
    sent: list[Sent] = field(default_factory=list)

    async def call(
        self,
        route: Route,
        who: str | None,
        path: str,
        *,
        token: str | None = None,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> tuple[int, str, dict[str, str]]:
        headers = {}
        bearer = token if token is not None else (self.clinic.tokens[who] if who else None)
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        response = await self.clinic.client.request(
            route.method, path, headers=headers, params=params, json=body
        )
        text = await response.text()
        self.sent.append(Sent(route, who or "anonymous", response.status, response.headers["X-Request-Id"]))
        return response.status, text, dict(response.headers)

    async def assert_audited(self) -> int:
        """Every authenticated request a role could make to a patient-data route has audit rows."""
        audited = [
            s
            for s in self.sent
            if s.route.patient_data
            and s.who in ROLE_OF
            and ROLE_OF[s.who] in s.route.roles
            and s.status not in (401, 429)
        ]
        ids = [s.request_id for s in audited]
        found = {
            str(r["request_id"])
            for r in await self.clinic.pool.fetch(
                "SELECT DISTINCT request_id FROM audit_log WHERE request_id = ANY($1::uuid[])", ids
            )
        }
        missing = [(s.route.path, s.who, s.status) for s in audited if s.request_id not in found]
        assert not missing, f"patient-data requests without an audit row: {missing[:10]}"
        return len(audited)


def _path(route: Route, clinic: Clinic, patient_id: str) -> str:
    """The route's path aimed at the patient's alert, the patient, or their counselor's digest."""
    return (
        route.path.replace("{alert_id}", clinic.alert_of[patient_id])
        .replace("{patient_id}", patient_id)
        .replace("{digest_id}", clinic.digest_of[patient_id])
    )


def _body_for(route: Route) -> dict[str, Any] | None:
    return _bodies().get(route.path.rsplit("/", 1)[-1]) if route.request is not None else None


def _open_limiter(clinic: Clinic) -> None:
    """A limit no test reaches, where a test is about something other than guessing."""
    clinic.service.limiter = FailedAuthLimiter(limit=1_000_000, window=60)


async def _transitions(clinic: Clinic, patient_id: str) -> int:
    return int(
        await clinic.pool.fetchval(
            "SELECT count(*) FROM alert_transitions t JOIN alerts a USING (alert_id) WHERE a.patient_id = $1",
            patient_id,
        )
    )


async def test_every_route_every_role_own_and_other_caseload(clinic: Clinic, record_property: Any) -> None:
    _open_limiter(clinic)
    caller = Caller(clinic)
    checked = 0
    for who, (own, other) in (CARE | OTHERS).items():
        role = ROLE_OF[who]
        for route in ROUTES:
            for whose, patient_id in (("own", own), ("other", other)):
                path = _path(route, clinic, patient_id)
                params = {"patient_id": patient_id} if route.path == "/v1/alerts" else None
                body: Any = _body_for(route)
                if route.path == "/v1/events":
                    body = [json.loads(encode_event(Patient(f"pt-sec-{who}-{whose}").enrolled()))]
                before = await _transitions(clinic, patient_id)
                status, text, _ = await caller.call(route, who, path, params=params, body=body)
                checked += 1
                label = (route.method, route.path, who, whose, status, text[:200])
                if role not in route.roles:
                    assert status == 403, label
                    assert json.loads(text)["error"] == "forbidden", label
                elif whose == "other" and "{" in route.path:
                    assert status == 404, label
                    assert patient_id not in text, label
                    rows = await clinic.audit_rows(caller.sent[-1].request_id)
                    assert [(r["outcome"], r["patient_id"], r["role"]) for r in rows] == [
                        ("denied", patient_id, role)
                    ], label
                    assert await _transitions(clinic, patient_id) == before, label
                elif whose == "other" and route.path == "/v1/alerts":
                    assert status == 200, label
                    assert json.loads(text)["alerts"] == [] and patient_id not in text, label
                else:
                    assert status == 200, label
                    if "{" in route.path or route.path == "/v1/alerts":
                        assert patient_id in text, label
                        assert other not in text, label
    record_property("security_route_role_caseload_checks", checked)
    record_property("security_audited_requests", await caller.assert_audited())


async def test_revoked_expired_and_missing_tokens_fail_on_every_route(clinic: Clinic) -> None:
    _open_limiter(clinic)
    caller = Caller(clinic)
    async with clinic.pool.acquire() as connection:
        await revoke_token(connection, clinic.token_ids["c01"], NOW)
        _, expired = await create_token(
            connection, "supervisor", "staff-s01", expires_at=NOW - timedelta(seconds=1)
        )
    before = await _transitions(clinic, "pt-a1")
    for route in ROUTES:
        path = _path(route, clinic, "pt-a1")
        for token in (clinic.tokens["c01"], expired, None, "", "iop_", clinic.tokens["c01"] + "x"):
            status, text, headers = await caller.call(route, None, path, token=token, body=_body_for(route))
            assert status == 401, (route.path, status, text)
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert "pt-a1" not in text
    assert await _transitions(clinic, "pt-a1") == before  # nothing acted on pt-a1's alerts


async def test_guessing_tokens_is_rate_limited_and_valid_tokens_still_work(
    clinic: Clinic, record_property: Any
) -> None:
    clinic.service.limiter = FailedAuthLimiter()  # the product's default: 10 failures a minute
    caller = Caller(clinic)
    me = ROUTES[0]
    assert me.path == "/v1/me"
    for guess in range(GUESSES):
        status, _, _ = await caller.call(me, None, "/v1/me", token=f"iop_{guess:08x}_{uuid.uuid4().hex}")
        assert status == 401, guess
    for route in ROUTES:
        path = _path(route, clinic, "pt-a1")
        status, _, headers = await caller.call(
            route, None, path, token=f"iop_guess_{uuid.uuid4().hex}", body=_body_for(route)
        )
        assert status == 429, route.path
        assert int(headers["Retry-After"]) >= 1
        for who in ("c01", "integrator"):  # from the same address: served as their role allows
            status, _, _ = await caller.call(route, who, path, body=_body_for(route))
            assert status not in (401, 429), (route.path, who, status)
    record_property("security_guesses_before_429", GUESSES)


async def _snapshot(pool: asyncpg.Pool) -> dict[str, tuple[int, str]]:
    """Row count and a checksum of the rows of every table but the audit log."""
    tables = [
        r["tablename"]
        for r in await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        if r["tablename"] != "audit_log"
    ]
    found = {}
    for table in tables:
        row = await pool.fetchrow(
            f"SELECT count(*) AS n, coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') AS sum "
            f'FROM "{table}" t'
        )
        found[table] = (row["n"], row["sum"])
    return found


def _without_echo(text: str) -> str:
    for injected in sorted(INJECTIONS, key=len, reverse=True):
        for form in (json.dumps(injected)[1:-1], repr(injected)[1:-1], injected):
            text = text.replace(form, "")
    return text


def _injected_bodies(route: Route) -> Iterator[Any]:
    """The route's valid body with each string field replaced by each injection string."""
    if route.path == "/v1/events":
        valid = json.loads(encode_event(Patient("pt-inject").enrolled()))
        for text in INJECTIONS:
            for key in ("id", "source", "type", "subject", "time", "specversion"):
                yield [dict(valid, **{key: text})]
            yield [dict(valid, data={k: text for k in valid["data"]})]
        return
    body = _body_for(route)
    if body is None:
        yield None
        return
    for text in INJECTIONS:
        for key in body:
            yield dict(body, **{key: text})


async def test_sql_injection_in_every_parameter_changes_nothing_and_leaks_nothing(
    clinic: Clinic, record_property: Any
) -> None:
    _open_limiter(clinic)
    caller = Caller(clinic)
    before = await _snapshot(clinic.pool)
    sent = 0
    for route in ROUTES:
        who = "integrator" if route.path == "/v1/events" else "c01"
        # Path parameters, then query parameters, then body fields (aimed at another caseload's alert,
        # which must stay unchanged, so every table can be compared).
        segments = [quote(t, safe="") for t in INJECTIONS]  # one path segment each, as an attacker sends
        paths = [
            route.path.replace("{alert_id}", t).replace("{patient_id}", t).replace("{digest_id}", t)
            for t in segments
        ]
        attempts: list[tuple[str, dict[str, str] | None, Any]] = [
            (p, None, _body_for(route)) for p in paths if "{" in route.path
        ]
        for param in route.query:
            attempts += [(route.path, {param.name: t}, None) for t in INJECTIONS]
        target = _path(route, clinic, "pt-b1")
        attempts += [(target, None, b) for b in _injected_bodies(route) if b is not None]
        for path, params, body in attempts:
            status, text, _ = await caller.call(route, who, path, params=params, body=body)
            sent += 1
            label = (route.path, params, status, text[:300])
            assert status < 500, label
            shown = _without_echo(text)  # a 400 may quote the caller's own input back to them
            assert not LEAK_PATTERNS.search(shown), label
            assert "pt-b1" not in shown and "pt-a2" not in shown, label
    assert await _snapshot(clinic.pool) == before
    # Notes and reasons are data, stored verbatim on the caller's own alert and nothing else changes.
    own = clinic.alert_of["pt-a1"]
    acknowledge = next(r for r in ROUTES if r.path.endswith("/acknowledge"))
    status, _, _ = await caller.call(
        acknowledge, "c01", f"/v1/alerts/{own}/acknowledge", body={"note": INJECTIONS[1]}
    )
    assert status == 200
    assert (
        await clinic.pool.fetchval(
            "SELECT reason FROM alert_transitions WHERE alert_id = $1::uuid AND kind = 'acknowledged'", own
        )
        == INJECTIONS[1]
    )
    after = await _snapshot(clinic.pool)
    assert {t for t in after if after[t] != before[t]} <= {"alerts", "alert_transitions", "outbox"}
    assert {t: after[t][0] for t in ("alerts",)} == {t: before[t][0] for t in ("alerts",)}
    record_property("security_injection_requests", sent)
    record_property("security_injection_audited", await caller.assert_audited())


# --- logs of real processes ----------------------------------------------------------------------


def _request(session: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None) -> Any:
    return session.request(method, url, headers={"Authorization": f"Bearer {token}"}, json=body)


async def test_logs_of_real_processes_hold_no_tokens_and_no_free_text(
    endpoints: Endpoints, unique_topics: Settings, clean_db: str, tmp_path: Path, record_property: Any
) -> None:
    ensure_topics(endpoints.kafka_bootstrap, unique_topics)
    marker = f"MARK{uuid.uuid4().hex[:12]}"
    markers = [f"{marker}-{n}" for n in range(8)]
    connection = await asyncpg.connect(clean_db)
    try:
        tokens = {
            who: (await create_token(connection, role, subject, expires_at=None))[1]
            for who, role, subject in [
                ("counselor", "counselor", "staff-c01"),
                ("integrator", "integrator", "ehr.clinic-a"),
                ("revoked", "counselor", "staff-c02"),
            ]
        }
        revoked_id = tokens["revoked"].split("_")[1]
        await revoke_token(connection, revoked_id, datetime.now(UTC))
    finally:
        await connection.close()
    guesses = [f"iop_{uuid.uuid4().hex[:8]}_{marker}guess{n}" for n in range(3)]
    debug = {"IOPCARE_LOG_LEVEL": "DEBUG"}
    worker = WorkerProcess(
        endpoints.kafka_bootstrap,
        clean_db,
        unique_topics,
        tmp_path,
        app_id=f"test-logs-{uuid.uuid4().hex[:6]}",
        extra_env=debug,
    )
    api = ApiProcess(endpoints.kafka_bootstrap, clean_db, unique_topics, tmp_path, extra_env=debug)
    started = time.monotonic()
    try:
        await asyncio.gather(worker.wait_healthy(), api.wait_ready())
        patient = Patient("pt-logs1")
        now = datetime.now(UTC).replace(microsecond=0)
        events = [
            patient.enrolled(counselor="staff-c01", supervisor="staff-s01"),
            patient.checkin(now - timedelta(hours=2), craving=9),
            patient.checkin(now - timedelta(hours=1), craving=3, safety=True),
        ]
        good = [json.loads(encode_event(e)) for e in events]
        bad = [
            dict(good[1], id=markers[0], type=f"iop.{markers[1]}.v1"),
            dict(good[1], data=dict(good[1]["data"], note=markers[2])),
            {"subject": markers[3]},
        ]
        async with aiohttp.ClientSession() as session:
            for _ in range(50):  # the API's producer connects in the background
                async with _request(
                    session, "POST", f"{api.url}/v1/events", tokens["integrator"], good + bad
                ) as r:
                    status = r.status
                if status != 503:
                    break
                await asyncio.sleep(0.2)
            assert status == 207
            assert (
                await wait_for_count(
                    clean_db,
                    "SELECT count(*) FROM alerts WHERE patient_id = 'pt-logs1' AND severity = 'critical'",
                    1,
                    60,
                )
                >= 1
            )
            connection = await asyncpg.connect(clean_db)
            try:
                alert_ids = [
                    r["alert_id"]
                    for r in await connection.fetch(
                        "SELECT alert_id::text FROM alerts "
                        "WHERE patient_id = 'pt-logs1' AND severity = 'critical'"
                    )
                ]
            finally:
                await connection.close()
            counselor = tokens["counselor"]
            alert = alert_ids[0]
            actions = [
                ("GET", "/v1/alerts", None),
                ("GET", f"/v1/alerts/{alert}", None),
                ("GET", "/v1/patients/pt-logs1", None),
                ("POST", f"/v1/alerts/{alert}/acknowledge", {"note": markers[4]}),
                (
                    "POST",
                    f"/v1/alerts/{alert}/snooze",
                    {"until": "2000-01-01T00:00:00Z", "reason": markers[5]},
                ),
                ("POST", f"/v1/alerts/{alert}/snooze", {"until": "soon", "reason": markers[6]}),
                ("POST", f"/v1/alerts/{alert}/resolve", {"reason": markers[7]}),
            ]
            statuses = []
            for method, path, body in actions:
                async with _request(session, method, f"{api.url}{path}", counselor, body) as r:
                    statuses.append(r.status)
            assert statuses[:5] == [200, 200, 200, 200, 409] and statuses[5:] == [400, 200], statuses
            for token in [tokens["revoked"], *guesses]:
                async with _request(session, "GET", f"{api.url}/v1/me", token) as r:
                    assert r.status == 401
        await asyncio.sleep(2)  # the worker handles the acted-on alert's outbox before its log is read
    finally:
        api_code = api.stop()
        worker_code = worker.stop()
    assert api_code in (0, -15) and worker_code in (0, -15), (api.log()[-2000:], worker.log()[-2000:])
    logs = {path.name: path.read_text(errors="replace") for path in sorted(tmp_path.glob("*.log"))}  # noqa: ASYNC240
    assert set(logs) >= {"api.log", "worker-w1.log"} and all(logs.values())
    # The level took effect (the services log JSON lines: a level is `"level": "debug"`).
    assert all('"level": "debug"' in logs[name] for name in ("worker-w1.log", "api.log"))
    secrets = [*tokens.values(), *guesses, *markers]
    found = [(name, s[:20]) for name, text in logs.items() for s in secrets if s in text]
    found += [
        (name, "secret part")
        for name, text in logs.items()
        for t in tokens.values()
        if t.split("_", 2)[2] in text
    ]
    assert not found, found
    record_property("security_log_bytes_scanned", sum(len(t) for t in logs.values()))
    record_property("security_log_secrets_searched", len(secrets))
    record_property("security_log_seconds", round(time.monotonic() - started, 1))
