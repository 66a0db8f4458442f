"""The counselor inbox end to end, in a real headless Chromium (Debian's, driven by playwright).

Everything on the path is real: the embedded broker and Postgres, an ``iopcare worker`` subprocess,
the API's aiohttp app on a port, a token from ``iopcare tokens create``. The counselor signs in, a
crisis check-in is published to Kafka, the processor raises the critical alert, the page shows it
without a reload, the counselor acknowledges it, and Postgres records who did. A screenshot of the
inbox showing the alert is written to ``test-artifacts/inbox.png``.

Chromium comes from ``make browser`` (run by ``make test`` and ``make integration``); playwright
never downloads one of its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, async_playwright, expect

from iopcare.api.app import ApiService
from iopcare.contract import (
    CheckInSubmitted,
    CloudEvent,
    ConsentGranted,
    PatientEnrolled,
    SoberLivingReported,
    new_event,
)
from iopcare.endpoints import Endpoints
from iopcare.publish import EventPublisher
from iopcare.rulepacks import DEFAULT_PACK
from iopcare.settings import Settings
from iopcare.store.digests import gather_digests
from tests.databases import service_url
from tests.integration.workers import WorkerProcess, wait_for_count

pytestmark = pytest.mark.integration

CHROMIUM = Path(os.environ.get("IOPCARE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
# An event id is any printable ASCII without spaces, so it can carry markup; the page must show it
# as text and never run it.
MARKUP = "<img/src=x/onerror=window.__injected=1>"


@pytest.fixture
def chromium() -> Path:
    """Debian's chromium; failing (not skipping) without it, as the inbox is not tested otherwise."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test-tools` (it installs Debian's chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    return CHROMIUM


@dataclass
class Inbox:
    url: str
    pool: asyncpg.Pool


@pytest.fixture
async def inbox(clean_db: str, endpoints: Endpoints, topics: Settings) -> AsyncIterator[Inbox]:
    """The API (real app, real port) on this test's database and topics."""
    pool = await asyncpg.create_pool(clean_db, min_size=1, max_size=4)
    api_pool = await asyncpg.create_pool(service_url(clean_db, "api"), min_size=1, max_size=4)
    assert pool is not None and api_pool is not None
    service = ApiService(
        pool=api_pool,
        pack=DEFAULT_PACK,
        kafka_bootstrap=endpoints.kafka_bootstrap,
        events_topic=topics.events_topic,
    )
    server = TestServer(service.application(), host="127.0.0.1")
    await server.start_server()
    try:
        yield Inbox(str(server.make_url("/inbox")), pool)
    finally:
        await server.close()
        await api_pool.close()
        await pool.close()


def _create_token(endpoints: Endpoints, database_url: str, subject: str) -> str:
    """A counselor token, the way an operator makes one: ``iopcare tokens create``."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "iopcare.cli",
            "tokens",
            "create",
            "--role",
            "counselor",
            "--subject",
            subject,
        ],
        env=dict(
            os.environ, IOPCARE_DATABASE_URL=database_url, IOPCARE_KAFKA_BOOTSTRAP=endpoints.kafka_bootstrap
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _crisis(patient_id: str, counselor: str) -> tuple[PatientEnrolled, CheckInSubmitted]:
    """An enrollment in this counselor's caseload today, then a check-in reporting a safety concern."""
    now = datetime.now(UTC)
    enrolled = new_event(
        PatientEnrolled,
        subject=patient_id,
        source="ehr.clinic-a",
        data={
            "level_of_care": "2.1",
            "program_start": now.date().isoformat(),
            "counselor_id": counselor,
            "supervisor_id": "staff-s01",
        },
        time=now,
    )
    crisis = new_event(
        CheckInSubmitted,
        subject=patient_id,
        source="checkin-app",
        id=f"checkin-{uuid.uuid4().hex[:8]}{MARKUP}",
        data={
            "craving": 4,
            "mood": 2,
            "sleep_hours": 4.5,
            "substance_use_reported": False,
            "safety_concern": True,
        },
        time=now,
    )
    return enrolled, crisis


def _curfew_violation(patient_id: str) -> tuple[ConsentGranted, SoberLivingReported]:
    """The patient's consent for their sober-living house, then the house reports a missed curfew:
    a digest-tier alert (docs/rules.md, "Tiers")."""
    now = datetime.now(UTC)
    consent = new_event(
        ConsentGranted,
        subject=patient_id,
        source="ehr.clinic-a",
        data={
            "recipient_kind": "sober_living_house",
            "recipient_id": "house-maple",
            "scope": ["attendance", "housing", "toxicology"],
            "expires_at": (now + timedelta(days=180)).isoformat(),
            "consent_form_id": "cf-house-maple",
        },
        time=now,
    )
    report = new_event(
        SoberLivingReported,
        subject=patient_id,
        source="house.house-maple",
        data={"house_id": "house-maple", "kind": "curfew_violation", "observed_at": now.isoformat()},
        time=now + timedelta(seconds=1),
    )
    return consent, report


def _publish(kafka: str, topic: str, events: tuple[CloudEvent[Any], ...]) -> None:
    with EventPublisher(kafka, topic) as publisher:
        for event in events:
            publisher.publish(event)


async def _sign_in(page: Page, url: str, token: str) -> None:
    await page.goto(url)
    await page.get_by_label("Bearer token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


async def test_the_inbox_page_is_served_with_strict_headers_and_only_its_own_files(inbox: Inbox) -> None:
    """No chromium needed: what the server answers for the page, its files, and the API's JSON."""
    async with aiohttp.ClientSession() as http:
        async with http.get(inbox.url) as page:
            assert page.status == 200 and page.content_type == "text/html"
            csp = page.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert "frame-ancestors 'none'" in csp
            assert page.headers["X-Frame-Options"] == "DENY"
            assert page.headers["Referrer-Policy"] == "no-referrer"
            assert page.headers["X-Content-Type-Options"] == "nosniff"
            html = await page.text()
            assert "<script>" not in html and 'src="/inbox/inbox.js"' in html
        for asset, kind in (("inbox.js", "javascript"), ("inbox.css", "text/css")):
            async with http.get(f"{inbox.url}/{asset}") as response:
                assert response.status == 200 and kind in response.content_type
                text = await response.text()
                for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
                    assert sink not in text, (asset, sink)  # data reaches the page as text only
        for stray in ("index.html", "..%2f..%2fapp.py", "app.py", "%2e%2e"):
            async with http.get(f"{inbox.url}/{stray}") as response:
                assert response.status == 404, stray
                assert (await response.json())["error"] == "not_found"
        async with http.get(inbox.url.replace("/inbox", "/v1/me")) as refused:
            assert refused.status == 401 and refused.headers["Cache-Control"] == "no-store"


async def test_a_counselor_sees_a_published_crisis_appear_and_acknowledges_it_in_chromium(
    inbox: Inbox,
    endpoints: Endpoints,
    topics: Settings,
    clean_db: str,
    worker: WorkerProcess,
    tmp_path: Path,
    chromium: Path,
) -> None:
    patient_id = f"pt-{uuid.uuid4().hex[:8]}"
    token, _ = await asyncio.gather(
        asyncio.to_thread(_create_token, endpoints, clean_db, "staff-c01"), worker.wait_healthy()
    )

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),  # fresh: no state from another run
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1000},
            locale="en-GB",
            timezone_id="UTC",
        )
        try:
            page = browser.pages[0] if browser.pages else await browser.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            await _sign_in(page, inbox.url, token)
            await expect(page.locator("#who")).to_have_text("Signed in as staff-c01 (counselor)")
            await expect(page.locator("#empty")).to_be_visible()
            assert token not in page.url
            assert await page.evaluate("sessionStorage.getItem('iopcare.inbox.token')") == token
            await page.evaluate("window.__sameDocument = true")  # gone if the page reloads

            await asyncio.to_thread(
                _publish, endpoints.kafka_bootstrap, topics.events_topic, _crisis(patient_id, "staff-c01")
            )
            raised = (
                f"SELECT count(*) FROM alerts WHERE patient_id = '{patient_id}' AND severity = 'critical'"
            )
            assert await wait_for_count(clean_db, raised, 1, within=30) == 1, worker.log()[-3000:]
            alert = await inbox.pool.fetchrow(
                "SELECT alert_id::text, title, explanation, event_ids FROM alerts "
                "WHERE patient_id = $1 AND severity = 'critical'",
                patient_id,
            )

            card = page.locator(f"#alert-{alert['alert_id']}")
            await expect(card).to_be_visible(timeout=15_000)  # the next poll brings it
            assert await page.evaluate("window.__sameDocument") is True
            await expect(card.locator(".badge.severity")).to_have_text("Critical")
            await expect(card.locator(".badge.state")).to_have_text("Open")
            await expect(card.locator(".badge.new")).to_be_visible()
            await expect(card.locator(".title")).to_have_text(alert["title"])
            await expect(card.locator(".explanation")).to_have_text(alert["explanation"])
            group = page.locator(f'section.patient[data-patient-id="{patient_id}"]')
            await expect(group.get_by_role("heading", name=f"Patient {patient_id}")).to_be_visible()

            await card.get_by_role("button", name="Show details").click()
            evidence = card.get_by_role("table", name="Evidence")
            await expect(evidence).to_be_visible()
            crisis_id = next(e for e in alert["event_ids"] if MARKUP in e)
            await expect(card.locator(".event-ids")).to_contain_text(crisis_id)  # shown, as text
            await expect(card.get_by_role("table", name="History")).to_contain_text("created")
            await expect(card.get_by_role("table", name="Recent events")).to_contain_text(
                "iop.checkin.submitted"
            )
            assert await page.evaluate("window.__injected") is None
            assert await page.locator("img").count() == 0

            shot = ARTIFACTS / "inbox.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"\ninbox screenshot: {shot}")

            # A snooze into the past is refused by the API; the page shows the problem it sent.
            await card.get_by_role("button", name="Snooze…").click()
            snooze = card.get_by_role("group", name="Snooze this alert")
            await snooze.get_by_label("Until").fill("2020-01-01T09:00")
            await snooze.get_by_label("Reason").fill("no answer")
            await snooze.get_by_role("button", name="Snooze alert").click()
            await expect(card.locator("p.problem")).to_contain_text("Could not snooze the alert")
            await expect(card.locator("p.problem")).to_contain_text("conflict")
            await snooze.get_by_role("button", name="Cancel").click()
            await expect(snooze).to_be_hidden()

            await card.get_by_label("What did you do?").select_option(label="Contacted the patient")
            await card.get_by_role("button", name="Acknowledge").click()
            await expect(card.locator(".badge.state")).to_have_text("Acknowledged")
            await expect(card.get_by_label("What did you do?")).to_be_hidden()
            await expect(card.get_by_role("button", name="Acknowledge")).to_be_hidden()
            await expect(card.get_by_role("table", name="History")).to_contain_text("staff-c01")
            await expect(card.get_by_role("button", name="Resolve…")).to_be_enabled()
            await expect(group.locator(".group-counts")).to_contain_text("0 open")
            await page.screenshot(path=str(ARTIFACTS / "inbox-acknowledged.png"), full_page=True)

            state = await inbox.pool.fetchval(
                "SELECT state FROM alerts WHERE alert_id = $1::uuid", alert["alert_id"]
            )
            acknowledged = await inbox.pool.fetch(
                "SELECT actor, outcome FROM alert_transitions "
                "WHERE alert_id = $1::uuid AND kind = 'acknowledged'",
                alert["alert_id"],
            )
            assert state == "acknowledged"
            assert [tuple(r) for r in acknowledged] == [("staff-c01", "contacted_patient")]

            # The house reports a missed curfew: a digest item. At the clinic's hour the dispatcher
            # gathers the day's digest (here called directly); the page shows it above the alerts
            # and acknowledges all of it in one step.
            await asyncio.to_thread(
                _publish, endpoints.kafka_bootstrap, topics.events_topic, _curfew_violation(patient_id)
            )
            digest_item = f"SELECT count(*) FROM alerts WHERE patient_id = '{patient_id}' AND tier = 'digest'"
            assert await wait_for_count(clean_db, digest_item, 1, within=30) == 1, worker.log()[-3000:]
            async with inbox.pool.acquire() as connection, connection.transaction():
                today = datetime.now(UTC)
                (made,) = await gather_digests(
                    connection, today.date(), today + timedelta(minutes=1), inbox.url
                )
            digest = page.get_by_role("region", name=re.compile(r"^Daily summary for "))
            await expect(digest).to_be_visible(timeout=15_000)
            await expect(digest).to_contain_text("1 item about 1 patient")
            await expect(digest).to_contain_text(f"Patient {patient_id}")
            await page.screenshot(path=str(ARTIFACTS / "inbox-digest.png"), full_page=True)
            await digest.get_by_role("button", name="Acknowledge the daily summary").click()
            await expect(digest).to_be_hidden()
            states = await inbox.pool.fetch(
                "SELECT state FROM alerts WHERE digest_id = $1::uuid", made.digest_id
            )
            assert [r["state"] for r in states] == ["acknowledged"]

            # A link to the alert (as webhook payloads carry) opens it, in a fresh load of the page.
            await page.goto(f"{inbox.url}#alert-{alert['alert_id']}")
            await expect(card.get_by_role("table", name="Evidence")).to_be_visible()
            await expect(card.get_by_role("button", name="Hide details")).to_be_focused()

            await page.get_by_role("button", name="Sign out").click()
            await expect(page.get_by_label("Bearer token")).to_be_visible()
            assert await page.evaluate("sessionStorage.getItem('iopcare.inbox.token')") is None
            await expect(page.locator("article.alert")).to_have_count(0)
            assert page_errors == []
        finally:
            await browser.close()
