"""What ``make demo`` shows: a synthetic cohort streaming through a real worker into Postgres.

Starts (or reuses) the embedded runtime, creates topics and schema, runs one processor worker, the
API and the webhook dispatcher as subprocesses, prints the counselor inbox's address and a demo
counselor token, registers the counselor's webhook to a receiver in this process, publishes a
deterministic 90-day cohort week by week, and after each week prints how some patients' engagement
state changed and which alerts fired, as a counselor would read them. A few malformed messages are
mixed in to show them dead-lettered while the rest flows on. At the end it reads the counselor's
inbox through the API, acknowledges an alert, and reports the signed webhook POSTs received.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from kafka import KafkaProducer
from standardwebhooks import Webhook, WebhookVerificationError

from iopcare.api.tokens import create_token
from iopcare.contract import CloudEvent, SoberLivingReported, encode_event, new_event
from iopcare.dispatcher.webhooks.secrets import SecretBox, new_key, new_signing_secret
from iopcare.dispatcher.webhooks.store import add_endpoint, disable_endpoint, list_endpoints
from iopcare.domain.alerts import SYSTEM
from iopcare.domain.engagement import PatientState
from iopcare.domain.measures import (
    ProgramCalendar,
    consecutive_unexcused_misses,
    use_signals_within,
    week_attendance,
)
from iopcare.embedded.runtime import EmbeddedRuntime, free_port
from iopcare.endpoints import Endpoints
from iopcare.publish import EventPublisher
from iopcare.settings import Settings
from iopcare.simulation import cohort_roster, generate_cohort
from iopcare.store.patients import parse_state
from iopcare.store.roles import Service, as_role
from iopcare.tracing import new_trace

Say = Callable[[str], None]


def _row(state: PatientState, archetype: str, calendar: ProgramCalendar) -> str:
    if state.enrollment is None or state.high_water is None:
        return f"  {state.patient_id:<14} {archetype:<12} (not enrolled yet)"
    week = max(1, calendar.week_number(state.enrollment.program_start, state.high_water))
    attended = week_attendance(state, week, calendar)
    plan = state.enrollment.weekly_plan
    craving = state.checkins[-1].craving if state.checkins else "-"
    misses = len(consecutive_unexcused_misses(state))
    uses = len(use_signals_within(state, state.high_water, 14))
    status = "discharged" if state.discharge else f"level {state.level_of_care}"
    return (
        f"  {state.patient_id:<14} {archetype:<12} wk {week:>2}  groups {attended.group_sessions}/"
        f"{plan.group_sessions}  indiv {attended.individual_sessions}/{plan.individual_sessions}  "
        f"hours {attended.hours:4.1f}/{plan.hours:g}  misses-in-row {misses}  craving {craving!s:>2}  "
        f"use-signals(14d) {uses}  {status}"
    )


async def _show_states(
    database_url: str, featured: dict[str, str], calendar: ProgramCalendar, say: Say
) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT patient_id, state::text AS state, state_version FROM patient_state "
            "WHERE patient_id = ANY($1::text[]) ORDER BY patient_id",
            list(featured),
        )
    finally:
        await connection.close()
    for row in rows:
        say(
            _row(
                parse_state(row["patient_id"], row["state"], row["state_version"]),
                featured[row["patient_id"]],
                calendar,
            )
        )


def _as(env: dict[str, str], service: Service, settings: Settings) -> dict[str, str]:
    """The service's environment, connecting as its own database role (docs/operations.md,
    "Database roles"): on the embedded Postgres always; elsewhere when the settings give the role's
    password, else as the given URL's user."""
    password = settings.service_database_passwords()[service]
    if settings.database_url is None or password:
        return env | {"IOPCARE_DATABASE_URL": as_role(env["IOPCARE_DATABASE_URL"], service, password)}
    return env


async def _count(database_url: str, query: str, *args: Any) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval(query, *args))
    finally:
        await connection.close()


async def _wait_until(
    database_url: str, query: str, expected: int, within: float, *args: Any, at_most: bool = False
) -> int:
    """Poll a count until it reaches ``expected`` (falls to it, with ``at_most``) or time runs out."""
    deadline = time.monotonic() + within

    def waiting(value: int) -> bool:
        return value > expected if at_most else value < expected

    value = await _count(database_url, query, *args)
    while waiting(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        value = await _count(database_url, query, *args)
    return value


# Counts this run's events in the log, so a rerun (same seed, so the same event ids, already
# logged) waits for the worker to catch up instead of for new rows that will never come.
_LOGGED = (
    "SELECT count(*) FROM event_log WHERE (source, event_id) IN "
    "(SELECT * FROM unnest($1::text[], $2::text[]))"
)


def run_demo(
    settings: Settings,
    endpoints: Endpoints,
    *,
    patients: int = 48,
    seed: int = 7,
    say: Say = print,
    keep_serving: bool = False,
) -> None:
    """Run the demo end to end; raises if the worker fails to keep up or state is missing. With
    ``keep_serving`` the worker and the API stay up afterwards, until Ctrl-C."""
    start = date.today() - timedelta(days=91)
    say(f"\n== Generating a synthetic cohort: {patients} patients over 90 days (seed {seed})")
    started = time.perf_counter()
    events: list[CloudEvent[Any]] = generate_cohort(patients, seed=seed, start=start)
    roster = {p.patient_id: p.archetype for p in cohort_roster(patients, seed=seed)}
    say(f"   {len(events):,} events in {time.perf_counter() - started:.1f}s")

    # One patient of each archetype, to follow week by week.
    featured: dict[str, str] = {}
    for patient_id, archetype in roster.items():
        if archetype not in featured.values():
            featured[patient_id] = archetype

    log_dir = settings.state_dir / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        IOPCARE_KAFKA_BOOTSTRAP=endpoints.kafka_bootstrap,
        IOPCARE_DATABASE_URL=endpoints.database_url,
        IOPCARE_PROCESSOR_APP_ID=f"iopcare-demo-{os.getpid()}",
        # 90 program days stream by in a minute: absence is judged by event time
        # (docs/architecture.md, "Absence sweeps").
        IOPCARE_CLOCK="stream",
        IOPCARE_SWEEP_INTERVAL_SECONDS="1",
        # The services' logs go to files: JSON lines, as in production (docs/operations.md, "Logs").
        IOPCARE_LOG_FORMAT=os.environ.get("IOPCARE_LOG_FORMAT", "json"),
    )
    worker_port, api_port, dispatcher_port = free_port(), free_port(), free_port()
    api_metrics_port = free_port()
    env |= {
        "IOPCARE_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "IOPCARE_API_METRICS_PORT": str(api_metrics_port),
        "IOPCARE_DISPATCHER_GROUP_ID": f"iopcare-demo-dispatcher-{os.getpid()}",
        "IOPCARE_DISPATCHER_WEB_PORT": str(dispatcher_port),
        # The cohort's weeks pass in a minute: look for due digests every 2 s, not every minute.
        "IOPCARE_DIGEST_POLL_SECONDS": "2",
    }
    counselor = next(p.counselor_id for p in cohort_roster(patients, seed=seed) if p.patient_id in featured)
    # The dispatcher decrypts the webhook secret with the key the demo sealed it with: the demo's
    # own unless IOPCARE_WEBHOOK_SECRET_KEYS names one; its receiver is on this machine.
    keys = settings.webhook_secret_keys.get_secret_value() if settings.webhook_secret_keys else new_key()
    env |= {"IOPCARE_WEBHOOK_SECRET_KEYS": keys, "IOPCARE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"}
    receiver = WebhookReceiver()
    token = asyncio.run(
        _prepare_counselor(endpoints.database_url, counselor, receiver, SecretBox(keys.split(",")))
    )
    say(f"\n== Starting a processor worker (log, JSON lines: {log_dir / 'worker.log'})")
    say(f"   metrics: http://127.0.0.1:{worker_port}/metrics")
    say(
        f"== Starting the API (log: {log_dir / 'api.log'}), metrics: http://127.0.0.1:{api_metrics_port}/metrics"
    )
    say(f"== Starting the webhook dispatcher (log: {log_dir / 'dispatcher.log'})")
    say(f"   {counselor}'s webhook goes to a receiver in this process: {receiver.url}")
    commands: list[tuple[str, Service, str, int]] = [
        ("worker", "processor", "--web-port", worker_port),
        ("api", "api", "--port", api_port),
        ("dispatcher", "dispatcher", "--web-port", dispatcher_port),
    ]
    services = [
        _start([name, option, str(port)], _as(env, service, settings), log_dir / f"{name}.log")
        for name, service, option, port in commands
    ]
    try:
        say(f"\n== Counselor inbox: http://127.0.0.1:{api_port}/inbox")
        say(f"   sign in as counselor {counselor} with this token (valid 1 day):")
        say(f"   {token}")
        say("   Alerts of their caseload appear there live as the cohort streams.")
        asyncio.run(_stream(settings, endpoints, events, featured, start, say))
        asyncio.run(_show_lifecycle(endpoints.database_url, say))
        asyncio.run(_show_inbox(f"http://127.0.0.1:{api_port}", token, counselor, say))
        receiver.report(say)
        if keep_serving:
            say(f"\nThe inbox stays up at http://127.0.0.1:{api_port}/inbox: press Ctrl-C to stop.")
            say(f"Inspect the state meanwhile: psql {endpoints.database_url} -c 'TABLE patient_state'")
            with contextlib.suppress(KeyboardInterrupt):
                while all(s.poll() is None for s in services):
                    time.sleep(1)
    finally:
        receiver.close()
        for service in services:
            service.terminate()
        for service in services:
            try:
                service.wait(30)
            except subprocess.TimeoutExpired:
                service.kill()


def demo_runtime(settings: Settings) -> EmbeddedRuntime:
    """The demo's own embedded runtime (not the ``iopcare dev`` one); its database outlives the demo
    until the next one starts (``iopcare state rebuild --demo`` reads it)."""
    return EmbeddedRuntime(settings.state_dir / "demo" / "runtime")


def fresh_runtime(settings: Settings) -> EmbeddedRuntime:
    """The demo's own embedded runtime, stopped and emptied: every demo streams the cohort into an
    empty broker and database."""
    runtime = demo_runtime(settings)
    runtime.down()
    shutil.rmtree(runtime.state_dir, ignore_errors=True)
    return runtime


async def _stream(
    settings: Settings,
    endpoints: Endpoints,
    events: list[CloudEvent[Any]],
    featured: dict[str, str],
    start: date,
    say: Say,
) -> None:
    url = endpoints.database_url
    calendar = ProgramCalendar()
    dead_before = await _count(url, "SELECT count(*) FROM dead_letters")
    week_starts = [
        datetime.combine(start, datetime.min.time(), tzinfo=UTC) + timedelta(days=7 * w) for w in range(14)
    ]
    sent = 0
    shown_until: datetime | None = None
    sources: list[str] = []
    ids: list[str] = []
    with EventPublisher(endpoints.kafka_bootstrap, settings.events_topic) as publisher:
        for week, (week_start, week_end) in enumerate(itertools.pairwise(week_starts), start=1):
            # The first week takes anything earlier (intake paperwork), the last anything later.
            low = None if week == 1 else week_start
            high = None if week == len(week_starts) - 1 else week_end
            chunk = [e for e in events if (low is None or e.time >= low) and (high is None or e.time < high)]
            # Each event as a clinic system would send it, with the trace (W3C traceparent) of the span
            # that produced it: the worker's alert and the dispatcher's webhook continue that trace.
            report = publisher.publish_all(
                (i, encode_event(e.model_copy(update={"traceparent": new_trace().traceparent})))
                for i, e in enumerate(chunk, start=1)
            )
            sent += report.sent
            sources.extend(e.source for e in chunk)
            ids.extend(e.id for e in chunk)
            if week == 3:
                _send_malformed(endpoints.kafka_bootstrap, settings.events_topic, next(iter(featured)))
                unconsented = _unconsented_report(next(iter(featured)), week_end - timedelta(days=1))
                publisher.publish(unconsented)
                sent += 1
                sources.append(unconsented.source)
                ids.append(unconsented.id)
            done = await _wait_until(url, _LOGGED, sent, 120, sources, ids)
            if done < sent:
                raise RuntimeError(
                    f"the worker logged {done} of {sent} events within 2 minutes; "
                    f"see {settings.state_dir / 'demo' / 'worker.log'}"
                )
            if week in (1, 3, 5, 8, 10, 13):
                say(f"\n-- after program week {week}: {sent:,} events logged")
                await _show_states(url, featured, calendar, say)
                await _show_alerts(url, featured, shown_until, week_end, say)
                shown_until = week_end
    dead = (
        await _wait_until(url, "SELECT count(*) FROM dead_letters", dead_before + 3, within=30) - dead_before
    )
    say(
        f"\n== Dead letters: {dead} malformed messages went to {settings.dead_letter_topic} "
        "with their reason;"
    )
    say("   the valid events around them were all applied:")
    connection = await asyncpg.connect(url)
    try:
        for row in await connection.fetch(
            "SELECT reason, detail, source_partition, source_offset FROM dead_letters "
            "ORDER BY id DESC LIMIT 3"
        ):
            say(
                f"   {row['reason']:<17} {row['detail']:<45} partition {row['source_partition']} "
                f"offset {row['source_offset']}"
            )
    finally:
        await connection.close()
    await _show_quarantine(url, say)
    say(
        f"\n== {sent:,} events -> {await _count(url, 'SELECT count(*) FROM patient_state')} "
        "patients' state in Postgres"
    )


async def _show_alerts(
    database_url: str, featured: dict[str, str], since: datetime | None, until: datetime, say: Say
) -> None:
    """The alerts counselors would see: counts by severity, and what changed for the featured patients
    since the last look, with the rules' own explanations."""
    # Let the sweeps catch up with the stream clock (they run every second in the demo).
    await _wait_until(
        database_url,
        "SELECT count(*) FROM absence_checks WHERE fired_at IS NULL AND due_at <= "
        "(SELECT least(min(event_time_high), $1) FROM stream_progress)",
        0,
        10,
        until,
        at_most=True,
    )
    connection = await asyncpg.connect(database_url)
    try:
        totals = await connection.fetch(
            "SELECT severity, count(*) FILTER (WHERE state <> 'resolved') AS live, count(*) AS total, "
            "count(*) FILTER (WHERE escalated) AS escalated FROM alerts GROUP BY severity"
        )
        changes = await connection.fetch(
            """
            SELECT a.patient_id, t.kind, t.at, a.severity, a.title, a.explanation, a.recommended_action,
                   a.risk_score, t.reason
            FROM alert_transitions t JOIN alerts a USING (alert_id)
            WHERE a.patient_id = ANY($1::text[]) AND t.kind IN ('created', 'escalated', 'resolved')
              AND ($2::timestamptz IS NULL OR t.at >= $2) AND t.at < $3
              AND a.severity IN ('critical', 'high')
            ORDER BY t.at, t.id LIMIT 6
            """,
            list(featured),
            since,
            until,
        )
    finally:
        await connection.close()
    order = ["critical", "high", "medium", "low", "info"]
    by_severity = {row["severity"]: row for row in totals}
    say(
        "   alerts (open / raised / escalated): "
        + ", ".join(
            f"{sev} {by_severity[sev]['live']}/{by_severity[sev]['total']}/{by_severity[sev]['escalated']}"
            for sev in order
            if sev in by_severity
        )
    )
    for row in changes:
        who = f"{row['patient_id']} ({featured[row['patient_id']]})"
        say(f"     {row['at']:%a %d %b} {row['kind']:<9} {row['severity']:<8} {who}: {row['title']}")
        if row["kind"] == "created":
            say(f"        why: {row['explanation']}")
            say(f"        do:  {row['recommended_action']}  (risk score {row['risk_score']})")
        elif row["reason"]:
            say(f"        {row['reason']}")


async def _show_lifecycle(database_url: str, say: Say) -> None:
    """How the alerts ended: none left live for a discharged patient but the safety alerts handed
    to the supervisor, and how many resolved themselves when their condition cleared (with an
    example of the reason each rule gives)."""
    connection = await asyncpg.connect(database_url)
    try:
        discharged = await connection.fetchval("SELECT count(*) FROM patient_summary WHERE discharged")
        left = await connection.fetch(
            """
            SELECT a.rule_id, a.escalated, count(*) AS n
            FROM alerts a JOIN patient_summary s USING (patient_id)
            WHERE s.discharged AND a.state <> 'resolved'
            GROUP BY a.rule_id, a.escalated ORDER BY a.rule_id
            """
        )
        ended = await connection.fetch(
            """
            SELECT a.rule_id, t.actor, t.reason
            FROM alert_transitions t JOIN alerts a USING (alert_id)
            WHERE t.kind = 'resolved' ORDER BY t.at, t.id
            """
        )
    finally:
        await connection.close()
    handed = sum(row["n"] for row in left if row["rule_id"] == "safety" and row["escalated"])
    others = sum(row["n"] for row in left) - handed
    say("\n== How the alerts ended")
    say(
        f"   {discharged} patients discharged; their live alerts: {handed} safety alerts handed to the "
        f"supervisor, {others} others"
    )
    kinds: dict[str, int] = {"cleared": 0, "discharge": 0, "superseded": 0, "by staff": 0}
    examples: dict[str, str] = {}
    for row in ended:
        reason = row["reason"] or ""
        if row["actor"] != SYSTEM:
            kinds["by staff"] += 1
        elif reason.startswith("patient discharged"):
            kinds["discharge"] += 1
        elif reason.startswith("superseded by"):
            kinds["superseded"] += 1
        else:
            kinds["cleared"] += 1
            examples.setdefault(row["rule_id"], reason)
    say(
        f"   {len(ended)} alerts resolved: {kinds['cleared']} when their condition cleared, "
        f"{kinds['discharge']} at discharge, {kinds['superseded']} summarized by a step-up, "
        f"{kinds['by staff']} by staff"
    )
    for rule_id, reason in sorted(examples.items()):
        say(f"     {rule_id}: {reason}")


async def _show_quarantine(database_url: str, say: Say) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT patient_id, event_type, party_kind, party_id, reason, status FROM quarantine_status "
            "ORDER BY held_at DESC LIMIT 3"
        )
    finally:
        await connection.close()
    say("\n== Consent gate: third-party reports held in quarantine (42 CFR Part 2), not applied:")
    for row in rows:
        say(
            f"   {row['patient_id']:<14} {row['event_type']:<27} from {row['party_kind']} {row['party_id']}: "
            f"{row['reason']} ({row['status']})"
        )


# The note the demo counselor writes when acknowledging: it stays in the database (audited), and a
# test checks it never reaches a log or a topic.
DEMO_NOTE = "Called after group: staying with her sister this week, agreed to come Thursday"


def _start(arguments: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "iopcare.cli", *arguments], env=env, stdout=log, stderr=subprocess.STDOUT
        )


async def _prepare_counselor(
    database_url: str, counselor_id: str, receiver: WebhookReceiver, box: SecretBox
) -> str:
    """A counselor token for the demo (valid for a day) and the counselor's webhook, pointed at
    ``receiver``; the webhooks of earlier demo runs (their receivers are gone) are disabled."""
    connection = await asyncpg.connect(database_url)
    try:
        _, token = await create_token(
            connection,
            "counselor",
            counselor_id,
            expires_at=datetime.now(UTC) + timedelta(days=1),
            label="make demo",
        )
        for endpoint in await list_endpoints(connection):
            if endpoint.enabled and endpoint.url.endswith(WebhookReceiver.PATH):
                await disable_endpoint(connection, endpoint.id, "replaced by a later make demo run")
        await add_endpoint(connection, "counselor", counselor_id, receiver.url, box.seal(receiver.secret))
    finally:
        await connection.close()
    return token


class WebhookReceiver:
    """A clinic's webhook endpoint, as the demo plays it: verifies each POST with the Standard
    Webhooks library (signature, and a timestamp within its 5-minute tolerance) and counts."""

    PATH = "/demo-webhook"

    def __init__(self) -> None:
        self.secret = new_signing_secret()
        verifier = Webhook(self.secret)
        self.posts = self.alerts = self.digests = self.bad_signatures = 0
        self.example: bytes | None = None
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    verifier.verify(body, dict(self.headers.items()))
                except WebhookVerificationError:
                    receiver.bad_signatures += 1
                    self.send_response(401)
                else:
                    receiver.posts += 1
                    document = json.loads(body)
                    if document["type"] == "iop.digest.notification":
                        receiver.digests += 1
                    else:
                        receiver.alerts += len(document["alerts"])
                        receiver.example = receiver.example or body
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:  # quiet: the demo prints its own summary
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.PATH}"
        threading.Thread(target=self._server.serve_forever, daemon=True, name="webhook-receiver").start()

    def report(self, say: Say) -> None:
        for _ in range(20):  # the dispatcher coalesces for half a second before it posts
            if self.posts:
                break
            time.sleep(0.5)
        say(
            f"\n== Webhook: {self.posts} signed POSTs carried {self.alerts} alert notices and "
            f"{self.digests} daily digest to the demo receiver; {self.bad_signatures} failed verification"
        )
        if self.example is not None:
            say("   one of them (ids, codes and a link only, never clinical text):")
            say("   " + self.example.decode()[:400])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


async def _show_inbox(base_url: str, token: str, counselor_id: str, say: Say) -> None:
    """What the counselor's inbox holds now, read through the API as the inbox page reads it."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url, headers=headers) as http:
        for _ in range(60):  # the API may still be starting
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get("/readyz") as ready:
                    if ready.status == 200:
                        break
            await asyncio.sleep(0.5)
        async with http.get("/v1/alerts", params={"limit": "200"}) as response:
            response.raise_for_status()
            page = await response.json()
        alerts = page["alerts"]
        say(f"\n== {counselor_id}'s inbox through the API (GET /v1/alerts): {len(alerts)} live alerts")
        for alert in alerts[:5]:
            say(f"   {alert['severity']:<8} {alert['patient_id']:<14} {alert['title']}")
        if alerts:
            first = alerts[0]
            async with http.post(
                f"/v1/alerts/{first['alert_id']}/acknowledge",
                json={"outcome": "contacted_patient", "note": DEMO_NOTE},
            ) as response:
                response.raise_for_status()
                acknowledged = await response.json()
                request_id = response.headers["X-Request-ID"]
            say(
                f"   acknowledged the first: state {acknowledged['state']}, outcome contacted_patient "
                f"(recorded with who and when; request {request_id})"
            )
        async with http.get("/v1/digests") as response:
            response.raise_for_status()
            digests = (await response.json())["digests"]
        if digests:
            latest = digests[0]
            parts = ", ".join(f"{rule} {n}" for rule, n in latest["by_rule"].items())
            say(f"   today's digest (GET /v1/digests): {latest['headline']} ({parts})")
        else:
            say("   no daily digest yet (the dispatcher makes it at the clinic's digest hour)")


def _unconsented_report(patient_id: str, at: datetime) -> CloudEvent[Any]:
    """A sober-living house the patient never consented to reports on them: it must be held."""
    return new_event(
        SoberLivingReported,
        subject=patient_id,
        source="house.house-unlisted",
        data={"house_id": "house-unlisted", "kind": "curfew_violation", "observed_at": at},
        time=at,
        id=f"demo-unconsented-{patient_id}",
    )


def _send_malformed(bootstrap: str, topic: str, patient_id: str) -> None:
    """Bytes no validator would let through, sent raw as a broken clinic system might."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        key = patient_id.encode()
        producer.send(topic, key=key, value=b"\xff\xfenot utf-8")
        producer.send(topic, key=key, value=b'{"specversion": "1.0", "type": "iop.checkin.submitted"')
        producer.send(topic, key=key, value=b'{"specversion": "1.0", "type": "iop.unheard.of", "id": "x"}')
        producer.flush()
    finally:
        producer.close()


__all__ = ["run_demo"]
