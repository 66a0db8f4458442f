"""``iopcare api``: the HTTP API for counselors, supervisors and integrating clinic systems.

An aiohttp application (aiohttp comes with faust). Every ``/v1`` route names the roles that may call
it; the route table (:data:`ROUTES`) also generates the OpenAPI document, so the two cannot drift.
Patient data is read and changed only inside the caller's caseload (:mod:`iopcare.api.caseload`),
and every such request writes audit rows (:mod:`iopcare.api.audit`) before it answers.

Errors are JSON problems (``{"error", "detail", "request_id"}``); every response carries
``X-Request-Id``, and JSON is never cached. Logs name routes, statuses and request ids, never tokens,
notes or clinical text. ``/inbox`` serves the counselor inbox page (:mod:`iopcare.api.inbox`'s static
files), which holds no data of its own: its script reads ``/v1`` with the counselor's token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from iopcare.api import caseload, metrics
from iopcare.api.audit import AuditEntry, Outcome, record_audit
from iopcare.api.client_address import client_address
from iopcare.api.models import (
    JSON_BODY_TYPES,
    MAX_ACTION_BYTES,
    MAX_BATCH,
    MAX_INGEST_BYTES,
    AcknowledgeDigestRequest,
    AcknowledgeRequest,
    AlertDetail,
    AlertPage,
    AlertSummary,
    DigestItemView,
    DigestPage,
    DigestView,
    Evidence,
    IngestResponse,
    IngestResult,
    Me,
    PatientSummary,
    Problem,
    ResolveRequest,
    RiskView,
    SnoozeRequest,
    TimelineEvent,
    Transition,
)
from iopcare.api.openapi import openapi_document
from iopcare.api.ratelimit import FailedAuthLimiter
from iopcare.api.tokens import Principal, Role, authenticate
from iopcare.contract import AlertState, InvalidEvent, Severity, check_event_time, decode_event, encode_event
from iopcare.domain.alerts import AlertError, Deadline, fixed_deadlines
from iopcare.domain.counselor import Acknowledge, CounselorAction, Resolve, Snooze
from iopcare.domain.digest import by_rule, headline
from iopcare.domain.rules import RulePack
from iopcare.health import readiness
from iopcare.logs import bind as bind_log_context
from iopcare.networks import Network
from iopcare.store.counselor_actions import AlertNotFound, apply_action
from iopcare.store.digests import Digest, digest, digests_of, mark_acknowledged
from iopcare.store.patients import case_summary_fields, read_summaries
from iopcare.tracing import current_trace, new_trace, parse_traceparent, tracing

log = logging.getLogger(__name__)

SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")
STATES: tuple[AlertState, ...] = ("open", "acknowledged", "snoozed", "resolved")
CARE_ROLES: frozenset[Role] = frozenset({"counselor", "supervisor"})
ALL_ROLES: frozenset[Role] = frozenset({"counselor", "supervisor", "integrator", "ops"})

REQUEST_ID = web.RequestKey("request_id", str)
# A caller's X-Request-ID is kept when it is a UUID, with or without dashes (nginx's $request_id is 32
# hex digits), so one id follows the request through the proxy's logs, ours and the audit rows (a
# uuid column); it is answered in the canonical dashed form. Anything else is replaced, not echoed.
_REQUEST_ID = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})$")
AUDITED = web.RequestKey("audited", bool)
"""Set once a request's audit rows are written; a patient-data request refused before that gets one."""

Handler = Callable[["ApiService", web.Request, Principal], Awaitable[web.Response]]


class Refusal(Exception):
    """Ends a request with a problem response (after any audit rows are written)."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


def _not_found() -> Refusal:
    return Refusal(404, "not_found", "no such alert or patient in your caseload")


@dataclass(frozen=True)
class QueryParam:
    name: str
    description: str
    schema: dict[str, Any]
    repeated: bool = False


@dataclass(frozen=True)
class Route:
    """One API operation: the router and the OpenAPI document are both built from these."""

    method: str
    path: str
    handler: Handler
    roles: frozenset[Role]
    summary: str
    response: type[BaseModel]
    request: type[BaseModel] | None = None
    query: tuple[QueryParam, ...] = ()
    statuses: tuple[int, ...] = ()  # documented error statuses besides 401, 403 and 429
    patient_data: bool = True  # audited
    action: str = ""  # the audit log's action for the route's requests

    @property
    def operation_id(self) -> str:
        return self.handler.__name__.lstrip("_")


@dataclass
class ApiService:
    """The API's dependencies; :meth:`application` builds the aiohttp app around them."""

    pool: asyncpg.Pool
    pack: RulePack
    kafka_bootstrap: str
    events_topic: str
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    limiter: FailedAuthLimiter = field(default_factory=FailedAuthLimiter)
    # The proxies whose X-Forwarded-For names the client (iopcare.api.client_address).
    trusted_proxies: tuple[Network, ...] = ()
    # Strict-Transport-Security's max-age on every response, where TLS terminates in front of the
    # API (its public URL is https); None sends none.
    hsts_max_age: int | None = None
    gauge_interval_seconds: float = 15.0
    producer: AIOKafkaProducer | None = None
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def deadline(self) -> Deadline:
        return fixed_deadlines(
            self.pack.response_targets_by_severity(), self.pack.response_targets.business_day_starts_at_hour
        )

    def application(self) -> web.Application:
        """The public app: ``/v1``, the inbox, the OpenAPI document and the probes. Bodies are read
        by the routes themselves, each up to its own limit (:func:`_read_body`)."""
        app = web.Application(middlewares=[self._observe], client_max_size=MAX_INGEST_BYTES)
        for route in ROUTES:
            app.router.add_route(route.method, route.path, self._guarded(route), name=route.operation_id)
        app.router.add_get("/healthz", _healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/openapi.json", _openapi)
        app.router.add_get("/inbox", _inbox_page)
        app.router.add_get("/inbox/{asset}", _inbox_asset)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        app.on_response_prepare.append(self._harden)
        return app

    def metrics_application(self) -> web.Application:
        """The operations app, on its own port (``IOPCARE_API_METRICS_PORT``), kept off the public
        one: ``/metrics`` and the probes."""
        app = web.Application(client_max_size=1024)
        app.router.add_get("/metrics", _metrics)
        app.router.add_get("/healthz", _healthz)
        app.router.add_get("/readyz", self._readyz)
        app.on_response_prepare.append(self._harden)
        return app

    async def _harden(self, _request: web.Request, response: web.StreamResponse) -> None:
        """No server software or version named; HSTS where the API is reached over TLS."""
        response.headers["Server"] = "iopcare"
        if self.hsts_max_age is not None:
            response.headers["Strict-Transport-Security"] = f"max-age={self.hsts_max_age}; includeSubDomains"

    # --- lifecycle -----------------------------------------------------------------------------

    async def _start(self, _app: web.Application) -> None:
        self._background.append(asyncio.create_task(self._connect_producer(), name="kafka-producer"))
        self._background.append(asyncio.create_task(self._refresh_gauges(), name="alert-gauges"))

    async def _stop(self, _app: web.Application) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.producer is not None:
            await self.producer.stop()

    async def _connect_producer(self) -> None:
        """Connect to the broker, retrying: the API serves reads while the broker is away."""
        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.kafka_bootstrap, acks="all", linger_ms=5, client_id="iopcare-api"
            )
            try:
                await producer.start()
            except Exception as exc:
                await producer.stop()
                log.warning("broker not reachable (%s); retry in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.producer = producer
            return

    async def _refresh_gauges(self) -> None:
        while True:
            try:
                await self.update_alert_gauges()
                async with self.pool.acquire() as connection:
                    await self.limiter.prune(connection)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("alert gauges not refreshed (%s)", type(exc).__name__)
            await asyncio.sleep(self.gauge_interval_seconds)

    async def update_alert_gauges(self) -> None:
        """Live alerts by severity and state, and the oldest unacknowledged age, from Postgres."""
        counts = await self.pool.fetch(
            "SELECT severity, state, count(*) AS n FROM alerts WHERE state <> 'resolved' GROUP BY 1, 2"
        )
        oldest = await self.pool.fetch(
            "SELECT severity, min(raised_at) AS raised_at FROM alerts "
            "WHERE state = 'open' AND inhibited_by IS NULL GROUP BY 1"
        )
        found = {(r["severity"], r["state"]): r["n"] for r in counts}
        for severity in SEVERITIES:
            for state in STATES[:3]:
                metrics.ALERTS_OPEN.labels(severity, state).set(found.get((severity, state), 0))
        ages = {r["severity"]: (self.now() - r["raised_at"]).total_seconds() for r in oldest}
        for severity in SEVERITIES:
            metrics.OLDEST_UNACKNOWLEDGED.labels(severity).set(max(0.0, ages.get(severity, 0.0)))

    # --- middleware and guard ------------------------------------------------------------------

    @web.middleware
    async def _observe(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Request id (the caller's ``X-Request-ID`` when it is a UUID, else a new one) and
        trace (the caller's ``traceparent`` continued, else a new one) bound to every log line of
        the request; one log line per request; metrics by route template; problems for every error."""
        request_id = _request_id(request.headers.get("X-Request-ID"))
        request[REQUEST_ID] = request_id
        parent = parse_traceparent(request.headers.get("traceparent"))
        trace = parent.child() if parent is not None else new_trace()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        started = time.perf_counter()
        with bind_log_context(request_id=request_id), tracing(trace):
            try:
                response = await handler(request)
            except Refusal as no:
                response = _problem(no.status, no.error, no.detail, request_id, no.headers)
            except web.HTTPException as exc:
                response = _problem(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason, request_id)
            except Exception:
                log.exception("request failed", extra={"method": request.method, "route": route})
                response = _problem(500, "internal", "the request failed; quote the request id", request_id)
            elapsed = time.perf_counter() - started
            # The route template, never the path: a path names the patient or alert it is about.
            # Probes and scrapes come every few seconds: at DEBUG, so they do not bury the requests.
            log.log(
                logging.DEBUG if route in _PROBES else logging.INFO,
                "request",
                extra={
                    "method": request.method,
                    "route": route,
                    "status": response.status,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
        response.headers["X-Request-ID"] = request_id
        response.headers["traceresponse"] = trace.traceparent
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.content_type == "application/json":
            response.headers.setdefault("Cache-Control", "no-store")  # patient data stays out of caches
        metrics.REQUESTS.labels(route, request.method, str(response.status)).inc()
        metrics.REQUEST_SECONDS.labels(route, request.method).observe(elapsed)
        return response

    def _guarded(self, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def guarded(request: web.Request) -> web.Response:
            principal = await self._authenticate(request)
            if principal.role not in route.roles:
                raise Refusal(403, "forbidden", f"the {principal.role} role may not call this route")
            try:
                return await route.handler(self, request, principal)
            except (Refusal, web.HTTPException):
                # A bad parameter or body is refused before the handler reaches its audited work; it
                # is still an attempt on patient data by an authenticated caller, so it is recorded.
                if route.patient_data and not request.get(AUDITED, False):
                    entry = self.entry(request, principal, route.action, "rejected")
                    async with self.pool.acquire() as connection:
                        await record_audit(connection, [entry])
                raise

        return guarded

    async def _authenticate(self, request: web.Request) -> Principal:
        """The token's principal. A bad token counts against the client (the address behind the
        trusted proxies), which past the limit is answered 429; a valid token is always served
        (iopcare.api.ratelimit says why)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        async with self.pool.acquire() as connection:
            if scheme.lower() == "bearer" and token:
                principal = await authenticate(connection, token.strip(), self.now())
                if principal is not None:
                    return principal
            client = client_address(
                request.remote, request.headers.getall("X-Forwarded-For", ()), self.trusted_proxies
            )
            retry_after = await self.limiter.failed(connection, client)
        metrics.AUTH_FAILURES.inc()
        if retry_after is not None:
            metrics.RATE_LIMITED.inc()
            raise Refusal(
                429,
                "too_many_failed_attempts",
                "too many failed authentication attempts from this address; try later",
                {"Retry-After": str(max(1, round(retry_after)))},
            )
        raise Refusal(
            401,
            "unauthenticated",
            "a valid bearer token is required",
            {"WWW-Authenticate": 'Bearer realm="iopcare"'},
        )

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready, checks = await readiness(self.pool, self.kafka_bootstrap)
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return web.json_response(body, status=200 if ready else 503)

    # --- helpers for handlers ------------------------------------------------------------------

    async def audited(
        self,
        request: web.Request,
        principal: Principal,
        work: Callable[[asyncpg.pool.PoolConnectionProxy], Awaitable[tuple[Any, Sequence[AuditEntry]]]],
    ) -> Any:
        """Run ``work`` in one transaction with the audit rows it returns; a Refusal returned as the
        result is raised only after the transaction (and so the audit of the refusal) committed."""
        async with self.pool.acquire() as connection, connection.transaction():
            result, entries = await work(connection)
            await record_audit(connection, entries)
        request[AUDITED] = True
        if isinstance(result, Refusal):
            raise result
        return result

    def entry(
        self,
        request: web.Request,
        principal: Principal,
        action: str,
        outcome: Outcome,
        patient_id: str | None = None,
        alert_id: str | None = None,
    ) -> AuditEntry:
        resource = request.match_info.route.resource
        return AuditEntry(
            request_id=request[REQUEST_ID],
            principal=principal,
            action=action,
            route=resource.canonical if resource is not None else request.path,
            outcome=outcome,
            patient_id=patient_id,
            alert_id=alert_id,
        )


# --- handlers ------------------------------------------------------------------------------------


async def _me(_api: ApiService, _request: web.Request, principal: Principal) -> web.Response:
    return _json(Me(token_id=principal.token_id, role=principal.role, subject=principal.subject))


async def _list_alerts(api: ApiService, request: web.Request, principal: Principal) -> web.Response:
    query = request.query
    states = tuple(query.getall("state", []))
    severities = tuple(query.getall("severity", []))
    if bad := [s for s in states if s not in STATES]:
        raise Refusal(400, "bad_request", f"unknown state {bad[0]!r}; expected one of {', '.join(STATES)}")
    if bad := [s for s in severities if s not in SEVERITIES]:
        raise Refusal(
            400, "bad_request", f"unknown severity {bad[0]!r}; expected one of {', '.join(SEVERITIES)}"
        )
    try:
        limit = int(query.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 200:
        raise Refusal(400, "bad_request", "limit must be a whole number from 1 to 200")
    counselor_id = query.get("counselor_id")
    if counselor_id and principal.role != "supervisor":
        raise Refusal(400, "bad_request", "only supervisors filter by counselor")
    filters = caseload.AlertFilter(
        states=states,
        severities=severities,
        patient_id=query.get("patient_id"),
        counselor_id=counselor_id,
        limit=limit,
        cursor=query.get("cursor"),
    )

    async def work(connection: Any) -> tuple[Any, list[AuditEntry]]:
        try:
            rows, next_cursor = await caseload.list_alerts(connection, principal, filters)
        except caseload.BadCursor as exc:
            return Refusal(400, "bad_request", str(exc)), [
                api.entry(request, principal, "alerts.list", "rejected")
            ]
        page = AlertPage(alerts=[_summary(r) for r in rows], next_cursor=next_cursor)
        return _conditional(api, request, principal, "alerts.list", page, (r["patient_id"] for r in rows))

    response: web.Response = await api.audited(request, principal, work)
    return response


def _conditional(
    api: ApiService,
    request: web.Request,
    principal: Principal,
    action: str,
    page: BaseModel,
    patients: Iterable[str],
) -> tuple[web.Response, list[AuditEntry]]:
    """A list as a response with its ETag, and its audit: when the caller holds this exact page
    (If-None-Match), a 304 that discloses nothing again, recorded as one "unchanged" row; else the
    page, one row per patient shown."""
    body = page.model_dump_json()
    etag = f'"{hashlib.sha256(body.encode()).hexdigest()[:32]}"'
    if etag in _entity_tags(request.headers.get("If-None-Match", "")):
        return web.Response(status=304, headers={"ETag": etag}), [
            api.entry(request, principal, action, "unchanged")
        ]
    shown = sorted(set(patients))
    entries = [api.entry(request, principal, action, "allowed", pid) for pid in shown] or [
        api.entry(request, principal, action, "allowed")
    ]
    return web.Response(text=body, content_type="application/json", headers={"ETag": etag}), entries


async def _visible_alert(
    api: ApiService,
    connection: Any,
    request: web.Request,
    principal: Principal,
    action: str,
    alert_id: str | None = None,
) -> tuple[asyncpg.Record | None, AuditEntry]:
    """The alert (named in the path unless given) if it is in the caller's caseload, and the audit
    entry: allowed, or denied (it exists, outside the caseload: the patient is recorded) or not found."""
    if alert_id is None:
        alert_id = _uuid_or_none(request.match_info["alert_id"])
    row, patient_id = (None, None)
    if alert_id is not None:
        row, patient_id = await caseload.alert_with_caseload(connection, principal, alert_id)
    if row is None:
        outcome: Outcome = "denied" if patient_id else "not_found"
        return None, api.entry(
            request, principal, action, outcome, patient_id, alert_id if patient_id else None
        )
    return row, api.entry(request, principal, action, "allowed", row["patient_id"], row["alert_id"])


async def _get_alert(api: ApiService, request: web.Request, principal: Principal) -> web.Response:
    async def work(connection: Any) -> tuple[Any, list[AuditEntry]]:
        row, audit = await _visible_alert(api, connection, request, principal, "alert.read")
        if row is None:
            return _not_found(), [audit]
        alert_id, patient_id = row["alert_id"], row["patient_id"]
        stored = (await read_summaries(connection, [patient_id])).get(patient_id)
        detail = AlertDetail(
            alert=_summary(row),
            evidence=Evidence(event_ids=list(row["event_ids"]), facts=json.loads(row["facts"])),
            transitions=[Transition(**dict(t)) for t in await caseload.transitions(connection, alert_id)],
            timeline=[_timeline_event(t) for t in await caseload.timeline(connection, patient_id)],
            risk=None
            if stored is None or stored["risk"] is None
            else RiskView.model_validate(stored["risk"]),
        )
        return detail, [audit]

    return _json(await api.audited(request, principal, work))


def _action_handler(action_name: str, body_model: type[BaseModel]) -> Handler:
    async def handle(api: ApiService, request: web.Request, principal: Principal) -> web.Response:
        body = await _body(request, body_model)
        now = api.now()
        action = _action(body, principal.subject, now)
        name = f"alert.{action_name}"

        async def work(connection: Any) -> tuple[Any, list[AuditEntry]]:
            row, audit = await _visible_alert(api, connection, request, principal, name)
            if row is None:
                return _not_found(), [audit]
            alert_id = row["alert_id"]
            try:
                async with connection.transaction():  # a savepoint: a refused action keeps its audit row
                    done = await apply_action(connection, alert_id, action, now=now, deadline=api.deadline)
            except (AlertError, AlertNotFound) as exc:
                refused = replace(audit, outcome="rejected")
                return Refusal(409, "conflict", str(exc) or "the alert is gone"), [refused]
            for change in done.changes:
                if change.kind == "acknowledged" and change.from_state == "open":
                    seconds = (change.at - change.alert.raised_at).total_seconds()
                    metrics.TIME_TO_ACKNOWLEDGE.labels(change.alert.severity).observe(max(0.0, seconds))
            updated, _ = await caseload.alert_with_caseload(connection, principal, alert_id)
            assert updated is not None  # in the caseload a moment ago, under the patient's lock
            return _summary(updated), [audit]

        return _json(await api.audited(request, principal, work))

    handle.__name__ = f"_{action_name}_alert"
    return handle


def _action(body: BaseModel, subject: str, now: datetime) -> CounselorAction:
    if isinstance(body, AcknowledgeRequest):
        return Acknowledge(subject, body.note, body.outcome)
    if isinstance(body, SnoozeRequest):
        if body.until.tzinfo is None:
            raise Refusal(400, "bad_request", "until must carry a UTC offset")
        try:
            until = body.until.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 with an offset that crosses the calendar's edge
            raise Refusal(400, "bad_request", "until is out of range") from None
        if until > now + timedelta(days=90):
            raise Refusal(400, "bad_request", "a snooze may last at most 90 days")
        return Snooze(subject, until, body.reason)
    assert isinstance(body, ResolveRequest)
    return Resolve(subject, body.reason)


async def _get_patient(api: ApiService, request: web.Request, principal: Principal) -> web.Response:
    patient_id = request.match_info["patient_id"]

    async def work(connection: Any) -> tuple[Any, list[AuditEntry]]:
        row, exists = await caseload.patient_with_caseload(connection, principal, patient_id)
        if row is None:
            outcome: Outcome = "denied" if exists else "not_found"
            return _not_found(), [
                api.entry(request, principal, "patient.read", outcome, patient_id if exists else None)
            ]
        summary = _patient_summary(row, await caseload.live_alerts(connection, patient_id))
        return summary, [api.entry(request, principal, "patient.read", "allowed", patient_id)]

    return _json(await api.audited(request, principal, work))


def _patient_summary(row: asyncpg.Record, alerts: Sequence[asyncpg.Record]) -> PatientSummary:
    """The API's view of a patient: the read model the processor wrote (``store/patients.py``)."""
    fields = case_summary_fields(row) if row["summarized"] else {}
    return PatientSummary(
        patient_id=row["patient_id"],
        counselor_id=row["counselor_id"],
        supervisor_id=row["supervisor_id"],
        as_of=fields.get("as_of"),
        level_of_care=fields.get("level_of_care"),
        program_start=fields.get("program_start"),
        discharged=bool(fields.get("discharged", False)),
        last_event_at=fields.get("last_event_at"),
        last_checkin_at=fields.get("last_checkin_at"),
        last_craving=fields.get("last_craving"),
        consecutive_unexcused_misses=fields.get("consecutive_unexcused_misses", 0),
        this_week=fields.get("this_week"),
        risk=fields.get("risk"),
        live_alerts=[_summary(a) for a in alerts],
    )


async def _ingest_events(api: ApiService, request: web.Request, principal: Principal) -> web.Response:
    try:
        document = json.loads(await _read_body(request, MAX_INGEST_BYTES))
    except (ValueError, UnicodeDecodeError, RecursionError):  # nesting past the parser's depth too
        raise Refusal(
            400, "bad_request", "the body is not JSON: send one event object or an array of them"
        ) from None
    items = document if isinstance(document, list) else [document]
    if len(items) > MAX_BATCH:
        raise Refusal(
            413, "too_large", f"at most {MAX_BATCH} events per request; publish larger loads to Kafka"
        )
    if not items:
        raise Refusal(400, "bad_request", "the array holds no events")
    producer = api.producer
    if producer is None:
        raise Refusal(503, "unavailable", "the broker is not reachable yet; retry", {"Retry-After": "5"})

    results: list[IngestResult | None] = [None] * len(items)
    sends: list[tuple[int, str, str, asyncio.Future[Any]]] = []
    for index, item in enumerate(items):
        try:
            event = decode_event(json.dumps(item, separators=(",", ":")).encode())
            # The processor would dead-letter it (on the wall clock, as here): say so now.
            check_event_time(event, datetime.now(UTC))
        except InvalidEvent as exc:
            results[index] = IngestResult(
                index=index, status="rejected", reason=exc.reason, detail=exc.detail
            )
            continue
        trace = current_trace()
        if event.traceparent is None and trace is not None:
            # Posted without a trace of its own: it continues this request's, to the alert and webhook.
            event = event.model_copy(update={"traceparent": trace.traceparent})
        future = await producer.send(api.events_topic, value=encode_event(event), key=event.subject.encode())
        sends.append((index, event.id, event.subject, future))
    entries: list[AuditEntry] = []
    for index, event_id, patient_id, future in sends:
        try:
            metadata = await asyncio.wait_for(future, timeout=30)
        except Exception as exc:
            results[index] = IngestResult(
                index=index,
                status="failed",
                event_id=event_id,
                reason="not_acknowledged",
                detail=type(exc).__name__,
            )
            continue
        results[index] = IngestResult(
            index=index,
            status="accepted",
            event_id=event_id,
            partition=metadata.partition,
            offset=metadata.offset,
        )
        entries.append(api.entry(request, principal, "events.ingest", "allowed", patient_id))
    final = [r for r in results if r is not None]
    accepted = sum(r.status == "accepted" for r in final)
    rejected = sum(r.status == "rejected" for r in final)
    failed = len(final) - accepted - rejected
    if rejected:
        entries.append(api.entry(request, principal, "events.ingest", "rejected"))
    async with api.pool.acquire() as connection:
        await record_audit(connection, entries)
    request[AUDITED] = True
    metrics.INGESTED.labels("accepted").inc(accepted)
    metrics.INGESTED.labels("rejected").inc(rejected)
    status = 503 if failed else 200 if not rejected else 207 if accepted else 422
    return _json(IngestResponse(accepted=accepted, rejected=rejected + failed, results=final), status)


# --- public routes -------------------------------------------------------------------------------


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@cache
def openapi() -> dict[str, Any]:
    """This app's OpenAPI document, built from its route table."""
    return openapi_document(ROUTES, INBOX_ASSETS)


async def _openapi(_request: web.Request) -> web.Response:
    return web.json_response(openapi())


# --- the counselor inbox page --------------------------------------------------------------------

INBOX_DIR = Path(__file__).with_name("inbox")
INBOX_ASSETS = frozenset({"inbox.js", "inbox.css"})
"""The page's only files besides ``index.html``: named, so no path from a request reaches the disk."""

INBOX_HEADERS = {
    # Script and style only from this origin, no inline script, data only from /v1 of this origin.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: a deploy's new script is picked up at once
}


async def _inbox_page(_request: web.Request) -> web.StreamResponse:
    return web.FileResponse(INBOX_DIR / "index.html", headers=INBOX_HEADERS)


async def _inbox_asset(request: web.Request) -> web.StreamResponse:
    asset = request.match_info["asset"]
    if asset not in INBOX_ASSETS:
        raise Refusal(404, "not_found", "no such file of the inbox page")
    return web.FileResponse(INBOX_DIR / asset, headers=INBOX_HEADERS)


# --- small helpers -------------------------------------------------------------------------------


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json")


_PROBES = frozenset({"/healthz", "/readyz"})


def _request_id(offered: str | None) -> str:
    if offered is not None and _REQUEST_ID.match(offered):
        return str(uuid.UUID(offered))
    return str(uuid.uuid4())


def _problem(
    status: int, error: str, detail: str, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    problem = Problem(error=error, detail=detail, request_id=request_id)
    return web.Response(
        text=problem.model_dump_json(), status=status, content_type="application/json", headers=headers
    )


def _summary(row: asyncpg.Record) -> AlertSummary:
    return AlertSummary(**caseload.summary_fields(row))


def _timeline_event(row: asyncpg.Record) -> TimelineEvent:
    data = row["data"]
    return TimelineEvent(
        event_id=row["event_id"],
        type=row["type"],
        time=row["time"],
        data=json.loads(data) if isinstance(data, str) else dict(data or {}),
    )


def _entity_tags(header: str) -> set[str]:
    """The entity tags of an ``If-None-Match`` header (weak ones compare by their opaque part)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _uuid_or_none(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    """The body, refused before it is read when it is not JSON (415) or says it is larger than
    ``max_bytes``, and as soon as it grows past that when it does not say (413)."""
    if request.body_exists:
        allowed = JSON_BODY_TYPES.get(request.path, frozenset({"application/json"}))
        if request.content_type not in allowed:
            raise Refusal(
                415,
                "unsupported_media_type",
                f"the body must be JSON: Content-Type {' or '.join(sorted(allowed))}",
            )
    too_large = Refusal(413, "too_large", f"the body is larger than this route takes ({max_bytes:,} bytes)")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    raw = bytearray()
    while chunk := await request.content.read(64 * 1024):
        raw += chunk
        if len(raw) > max_bytes:
            raise too_large
    return bytes(raw)


async def _body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    raw = await _read_body(request, MAX_ACTION_BYTES)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise Refusal(400, "bad_request", f"{where}: {first['msg']}") from None


# --- digests -----------------------------------------------------------------------------------


async def _visible_counselors(connection: Any, principal: Principal) -> list[str]:
    """Whose digests the caller may read: a counselor their own; a supervisor their own and those of
    the counselors of their team's patients."""
    if principal.role == "supervisor":
        team = await connection.fetch(
            "SELECT DISTINCT counselor_id FROM patient_state "
            "WHERE supervisor_id = $1 AND counselor_id IS NOT NULL",
            principal.subject,
        )
        return sorted({principal.subject, *(r["counselor_id"] for r in team)})
    return [principal.subject]


def _digest_view(made: Digest) -> DigestView:
    return DigestView(
        digest_id=made.digest_id,
        counselor_id=made.counselor_id,
        for_day=made.for_day,
        made_at=made.made_at,
        headline=headline(made.for_day, made.items),
        by_rule=dict(by_rule(made.items)),
        items=[
            DigestItemView(
                alert_id=i.alert_id,
                patient_id=i.patient_id,
                rule_id=i.rule_id,
                title=i.title,
                state=made.states.get(i.alert_id, "resolved"),
            )
            for i in made.items
        ],
        acknowledged_at=made.acknowledged_at,
        acknowledged_by=made.acknowledged_by,
    )


async def _list_digests(api: ApiService, request: web.Request, principal: Principal) -> web.Response:
    try:
        limit = int(request.query.get("limit", "14"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 90:
        raise Refusal(400, "bad_request", "limit must be a whole number from 1 to 90")

    async def work(connection: Any) -> tuple[Any, list[AuditEntry]]:
        found = await digests_of(connection, await _visible_counselors(connection, principal), limit)
        page = DigestPage(digests=[_digest_view(d) for d in found])
        patients = (item.patient_id for d in found for item in d.items)
        return _conditional(api, request, principal, "digests.list", page, patients)

    response: web.Response = await api.audited(request, principal, work)
    return response


async def _acknowledge_digest(api: ApiService, request: web.Request, principal: Principal) -> web.Response:
    body = await _body(request, AcknowledgeDigestRequest)
    assert isinstance(body, AcknowledgeDigestRequest)
    now = api.now()
    action = "digest.acknowledge"

    async def work(connection: Any) -> tuple[Any, list[AuditEntry]]:
        digest_id = _uuid_or_none(request.match_info["digest_id"])
        found = await digest(connection, digest_id) if digest_id else None
        if found is None:
            return Refusal(404, "not_found", "no such digest of yours"), [
                api.entry(request, principal, action, "not_found")
            ]
        if found.counselor_id not in await _visible_counselors(connection, principal):
            # Another caseload's: the same answer as none, and the patients it is about are recorded.
            patients = sorted({item.patient_id for item in found.items})
            return Refusal(404, "not_found", "no such digest of yours"), [
                api.entry(request, principal, action, "denied", pid) for pid in patients
            ] or [api.entry(request, principal, action, "denied")]
        entries = []
        for item in found.items:
            row, audit = await _visible_alert(api, connection, request, principal, action, item.alert_id)
            entries.append(audit)
            if row is None or row["state"] == "resolved":
                continue
            try:
                async with connection.transaction():  # a savepoint: one item resolved meanwhile is skipped
                    await apply_action(
                        connection,
                        item.alert_id,
                        Acknowledge(principal.subject, body.note, body.outcome),
                        now=now,
                        deadline=api.deadline,
                    )
            except (AlertError, AlertNotFound):
                continue
        await mark_acknowledged(connection, found.digest_id, principal.subject, now)
        after = await digest(connection, found.digest_id)
        assert after is not None
        return _json(_digest_view(after)), entries or [api.entry(request, principal, action, "allowed")]

    response: web.Response = await api.audited(request, principal, work)
    return response


_STATE_PARAM = QueryParam(
    "state",
    "Alert states to list (repeatable); default: every unresolved alert.",
    {"type": "string", "enum": list(STATES)},
    True,
)
_SEVERITY_PARAM = QueryParam(
    "severity", "Severities to list (repeatable).", {"type": "string", "enum": list(SEVERITIES)}, True
)


def _action_route(verb: str, body: type[BaseModel], summary: str) -> Route:
    """``POST /v1/alerts/{alert_id}/<verb>``: a counselor's action on an alert."""
    return Route(
        "POST",
        f"/v1/alerts/{{alert_id}}/{verb}",
        _action_handler(verb, body),
        CARE_ROLES,
        summary,
        AlertSummary,
        request=body,
        statuses=(400, 404, 409),
        action=f"alert.{verb}",
    )


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/me", _me, ALL_ROLES, "Who the token belongs to", Me, patient_data=False),
    Route(
        "GET",
        "/v1/alerts",
        _list_alerts,
        CARE_ROLES,
        "Alerts of my caseload (a supervisor: of my team), most severe first, then newest",
        AlertPage,
        query=(
            _STATE_PARAM,
            _SEVERITY_PARAM,
            QueryParam("patient_id", "Only this patient's alerts.", {"type": "string"}),
            QueryParam("counselor_id", "Supervisors: only this counselor's caseload.", {"type": "string"}),
            QueryParam(
                "limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
            ),
            QueryParam("cursor", "next_cursor of the previous page.", {"type": "string"}),
        ),
        statuses=(304, 400),
        action="alerts.list",
    ),
    Route(
        "GET",
        "/v1/alerts/{alert_id}",
        _get_alert,
        CARE_ROLES,
        "An alert with its evidence, its history and the patient's recent events",
        AlertDetail,
        statuses=(404,),
        action="alert.read",
    ),
    _action_route(
        "acknowledge", AcknowledgeRequest, "Acknowledge an alert (it stops escalating), with an optional note"
    ),
    _action_route("snooze", SnoozeRequest, "Snooze an alert until a time, with a reason; it reopens then"),
    _action_route("resolve", ResolveRequest, "Resolve an alert, with the reason"),
    Route(
        "GET",
        "/v1/digests",
        _list_digests,
        CARE_ROLES,
        "My daily digests (a supervisor: also my team's), newest first: the digest-tier alerts "
        "gathered at the clinic's hour",
        DigestPage,
        query=(
            QueryParam("limit", "How many.", {"type": "integer", "minimum": 1, "maximum": 90, "default": 14}),
        ),
        statuses=(304, 400),
        action="digests.list",
    ),
    Route(
        "POST",
        "/v1/digests/{digest_id}/acknowledge",
        _acknowledge_digest,
        CARE_ROLES,
        "Acknowledge a digest in one step: every live item of it, with an optional outcome",
        DigestView,
        request=AcknowledgeDigestRequest,
        statuses=(400, 404),
        action="digest.acknowledge",
    ),
    Route(
        "GET",
        "/v1/patients/{patient_id}",
        _get_patient,
        CARE_ROLES,
        "A patient's engagement summary: attendance this week, risk score and trend, live alerts",
        PatientSummary,
        statuses=(404,),
        action="patient.read",
    ),
    Route(
        "POST",
        "/v1/events",
        _ingest_events,
        frozenset({"integrator"}),
        "Publish one event or an array of up to 500, validated against the event contract",
        IngestResponse,
        statuses=(207, 400, 413, 422, 503),
        action="events.ingest",
    ),
)
