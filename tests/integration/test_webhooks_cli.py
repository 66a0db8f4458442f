"""The real ``iopcare dispatcher`` and ``iopcare webhooks`` commands, as subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook

from iopcare.dispatcher.service import Dispatcher
from iopcare.dispatcher.webhooks.secrets import SecretBox, is_sealed, new_key, secret_box
from iopcare.embedded.runtime import free_port
from iopcare.endpoints import Endpoints
from iopcare.settings import Settings
from tests.databases import service_url
from tests.integration.webhook_receiver import Receiver, eventually, produce
from tests.unit.dispatcher.factories import COUNSELOR, SUPERVISOR, alert

pytestmark = pytest.mark.integration


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


def _env(endpoints: Endpoints, database_url: str, topics: Settings) -> dict[str, str]:
    return dict(
        os.environ,
        IOPCARE_KAFKA_BOOTSTRAP=endpoints.kafka_bootstrap,
        IOPCARE_DATABASE_URL=database_url,
        IOPCARE_ALERTS_TOPIC=topics.alerts_topic,
        IOPCARE_DISPATCHER_GROUP_ID=f"test-dispatcher-{uuid.uuid4().hex[:6]}",
        IOPCARE_WEBHOOK_COALESCE_SECONDS="0.1",
        IOPCARE_WEBHOOK_POLL_INTERVAL_SECONDS="0.1",
    )


async def iopcare(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run ``iopcare ARGS`` to completion; returns (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "iopcare.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def dispatcher_process(
    endpoints: Endpoints, topics: Settings, clean_db: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port()
    log_path = tmp_path / "dispatcher.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "iopcare.cli", "dispatcher", "--web-port", str(port)],
            env=_env(endpoints, service_url(clean_db, "dispatcher"), topics),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    yield process, port, log_path
    if process.poll() is None:
        process.kill()
        process.wait()


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _metric(exposition: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


async def test_the_dispatcher_command_is_ready_delivers_serves_metrics_and_stops_on_sigterm(
    endpoints: Endpoints,
    topics: Settings,
    clean_db: str,
    receiver: Receiver,
    dispatcher_process: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, log_path = dispatcher_process
    env = _env(endpoints, clean_db, topics)
    code, out, _ = await iopcare(env, "webhooks", "add", "--counselor", COUNSELOR, "--url", receiver.url())
    assert code == 0, out
    secret = out.strip().splitlines()[-1]

    async def ready() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            status, body = await asyncio.to_thread(_get, port, "/readyz")
        except (urllib.error.URLError, ConnectionError):
            return False
        return status == 200 and json.loads(body)["checks"] == {
            "postgres": True,
            "broker": True,
            "running": True,
        }

    await eventually(ready, within=60, message="the dispatcher did not become ready")
    assert (await asyncio.to_thread(_get, port, "/healthz"))[0] == 200

    await produce(endpoints.kafka_bootstrap, topics.alerts_topic, [alert("created")], str(uuid.uuid4()))
    await eventually(lambda: receiver.requests, within=30, message="no POST from the dispatcher process")
    [request] = receiver.requests
    Webhook(secret).verify(request.body, dict(request.headers))

    async def delivered_metric() -> float:
        return _metric(
            (await asyncio.to_thread(_get, port, "/metrics"))[1],
            "iopcare_webhook_deliveries_total",
            outcome="delivered",
        )

    await eventually(lambda: delivered_metric(), message="delivered not counted")
    exposition = (await asyncio.to_thread(_get, port, "/metrics"))[1]
    assert _metric(exposition, "iopcare_dispatcher_alert_events_consumed_total", kind="created") == 1
    assert "iopcare_webhook_pending_deliveries" in exposition
    assert "iopcare_webhook_delivery_duration_seconds_count" in exposition
    assert COUNSELOR not in exposition and "pt-" not in exposition

    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 20) == 0, log_path.read_text()[-3000:]


async def test_readiness_names_the_broker_while_it_is_unreachable(
    endpoints: Endpoints, topics: Settings, clean_db: str
) -> None:
    settings = topics.model_copy(update={"dispatcher_web_port": 0})
    dispatcher = Dispatcher(
        settings, Endpoints(f"127.0.0.1:{free_port()}", service_url(clean_db, "dispatcher"), embedded=False)
    )
    starting = asyncio.create_task(dispatcher.start())
    try:
        await eventually(lambda: dispatcher.web_port, message="web server not up")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{dispatcher.web_port}/readyz") as response:
                assert response.status == 503
                body = await response.json()
            async with session.get(f"http://127.0.0.1:{dispatcher.web_port}/healthz") as response:
                assert response.status == 200
        assert body["checks"]["broker"] is False
        assert body["checks"]["running"] is False
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await dispatcher.stop(grace_seconds=1)


async def test_webhook_commands_add_list_disable_and_enable_without_showing_secrets(
    endpoints: Endpoints, topics: Settings, clean_db: str
) -> None:
    env = _env(endpoints, clean_db, topics)
    url = "https://hooks.example.org/services/T0001/B0002/tokenInThePath?key=alsoSecret"
    code, out, _ = await iopcare(env, "webhooks", "add", "--team", SUPERVISOR, "--url", url)
    assert code == 0
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert "tokenInThePath" not in out
    endpoint_id = out.split()[1].rstrip(":")

    code, out, _ = await iopcare(env, "webhooks", "list")
    assert code == 0
    assert f"team {SUPERVISOR}" in out and "enabled" in out and "https://hooks.example.org" in out
    assert secret not in out and "tokenInThePath" not in out and "alsoSecret" not in out

    assert (await iopcare(env, "webhooks", "disable", endpoint_id))[0] == 0
    code, out, _ = await iopcare(env, "webhooks", "list")
    assert "DISABLED" in out and "disabled by an operator" in out
    assert (await iopcare(env, "webhooks", "enable", endpoint_id))[0] == 0
    code, out, _ = await iopcare(env, "webhooks", "list")
    assert "DISABLED" not in out

    code, _, err = await iopcare(env, "webhooks", "enable", "999999")
    assert code == 1 and "no webhook endpoint 999999" in err


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--counselor", COUNSELOR, "--team", SUPERVISOR, "--url", "https://x.example/h"], "exactly one"),
        (["--url", "https://x.example/h"], "exactly one"),
        (["--counselor", COUNSELOR, "--url", "ftp://x.example/h"], "http(s)"),
        (["--counselor", "Jane Roe", "--url", "https://x.example/h"], "staff id"),
        (["--counselor", COUNSELOR, "--url", "https://x.example/h", "--kinds", "created,paged"], "kinds"),
    ],
)
async def test_a_bad_webhook_registration_is_refused_and_says_why(
    endpoints: Endpoints, topics: Settings, clean_db: str, args: list[str], complaint: str
) -> None:
    code, _, err = await iopcare(_env(endpoints, clean_db, topics), "webhooks", "add", *args)
    assert code == 2 and complaint in err
    connection = await asyncpg.connect(clean_db)
    try:
        assert await connection.fetchval("SELECT count(*) FROM webhook_endpoints") == 0
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://2852039166/hook", "cloud metadata"),  # 169.254.169.254 as one number
        ("http://10.0.0.8/hook", "private"),
        ("http://[::1]:8080/hook", "loopback"),
    ],
)
async def test_a_target_on_a_private_or_metadata_address_is_refused(
    endpoints: Endpoints, topics: Settings, clean_db: str, url: str, complaint: str
) -> None:
    env = _env(endpoints, clean_db, topics) | {"IOPCARE_WEBHOOK_ALLOWED_NETWORKS": ""}
    code, _, err = await iopcare(env, "webhooks", "add", "--counselor", COUNSELOR, "--url", url)
    assert code == 2 and complaint in err, err
    connection = await asyncpg.connect(clean_db)
    try:
        assert await connection.fetchval("SELECT count(*) FROM webhook_endpoints") == 0
    finally:
        await connection.close()


async def test_secrets_are_stored_encrypted_rotated_with_an_overlap_and_reencrypted_under_a_new_key(
    endpoints: Endpoints, topics: Settings, clean_db: str
) -> None:
    env = _env(endpoints, clean_db, topics)
    code, out, _ = await iopcare(
        env, "webhooks", "add", "--counselor", COUNSELOR, "--url", "http://127.0.0.1:9/h"
    )
    assert code == 0, out
    first = out.strip().splitlines()[-1]
    endpoint_id = out.split()[1].rstrip(":")
    connection = await asyncpg.connect(clean_db)
    try:
        stored = await connection.fetchval("SELECT secret FROM webhook_endpoints")
        assert is_sealed(stored) and first not in stored and first.removeprefix("whsec_") not in stored
        box = secret_box(Settings())
        assert box.open(stored) == first

        code, out, _ = await iopcare(env, "webhooks", "rotate-secret", endpoint_id, "--overlap-hours", "2")
        assert code == 0, out
        second = out.strip().splitlines()[-1]
        row = await connection.fetchrow(
            "SELECT secret, previous_secret, previous_secret_expires_at - now() AS overlap "
            "FROM webhook_endpoints"
        )
        assert (box.open(row["secret"]), box.open(row["previous_secret"])) == (second, first)
        assert timedelta(hours=1, minutes=59) < row["overlap"] <= timedelta(hours=2)

        # A new key first, the old one after it: reencrypt, and the old key can go.
        newer = new_key()
        rotated_env = env | {"IOPCARE_WEBHOOK_SECRET_KEYS": f"{newer},{env['IOPCARE_WEBHOOK_SECRET_KEYS']}"}
        code, out, _ = await iopcare(rotated_env, "webhooks", "reencrypt")
        assert code == 0 and "1 endpoint(s) re-encrypted" in out, out
        row = await connection.fetchrow("SELECT secret, previous_secret FROM webhook_endpoints")
        only_new = SecretBox([newer])
        assert (only_new.open(row["secret"]), only_new.open(row["previous_secret"])) == (second, first)
    finally:
        await connection.close()


async def test_setup_encrypts_secrets_registered_in_plaintext_before_encryption(
    endpoints: Endpoints, topics: Settings, clean_db: str
) -> None:
    connection = await asyncpg.connect(clean_db)
    try:
        await connection.execute(
            "INSERT INTO webhook_endpoints (owner_kind, owner_id, url, secret) "
            "VALUES ('counselor', $1, 'https://hooks.example.org/x', 'whsec_plaintextFromAnOlderRelease')",
            COUNSELOR,
        )
        code, out, err = await iopcare(_env(endpoints, clean_db, topics), "setup")
        assert code == 0, err
        assert "encrypted 1 webhook secret(s) stored in plaintext" in out
        stored = await connection.fetchval("SELECT secret FROM webhook_endpoints")
        assert is_sealed(stored) and "plaintextFromAnOlderRelease" not in stored
        assert secret_box(Settings()).open(stored) == "whsec_plaintextFromAnOlderRelease"
        code, out, _ = await iopcare(_env(endpoints, clean_db, topics), "setup")
        assert code == 0 and "encrypted" not in out  # nothing left to do
    finally:
        await connection.close()
