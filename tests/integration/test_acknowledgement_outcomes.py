"""Acknowledging with an outcome (contacted the patient, changed the plan, no action needed, false
alarm), on real Postgres through the API, and `iopcare evaluate --database` reading the counselors'
own verdict back: precision and override rate per rule. The note stays in the database: the alert
event on the topic carries the outcome's code only."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from iopcare.endpoints import Endpoints
from iopcare.rulepacks import DEFAULT_PACK_PATH
from tests.integration.clinic import NOW, Clinic

pytestmark = pytest.mark.integration


async def _evaluate_database(env: dict[str, str], *options: str) -> tuple[int, str, str]:
    """``iopcare evaluate --database`` over the week of the seeded alerts, as a process."""
    since, until = NOW.date() - timedelta(days=7), NOW.date() + timedelta(days=1)
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "iopcare.cli", "evaluate", "--database", *options),
        *("--since", since.isoformat(), "--until", until.isoformat()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, out.decode(), err.decode()


async def _alert(clinic: Clinic, patient_id: str, rule_id: str) -> str:
    alert_id = await clinic.pool.fetchval(
        "SELECT alert_id::text FROM alerts WHERE patient_id = $1 AND rule_id = $2", patient_id, rule_id
    )
    assert alert_id is not None, (patient_id, rule_id)
    return str(alert_id)


async def test_an_acknowledgement_records_its_outcome_and_evaluate_reads_the_counselors_verdict(
    clinic: Clinic, clean_db: str, endpoints: Endpoints, tmp_path: Path
) -> None:
    safety = await _alert(clinic, "pt-a1", "safety")
    craving = await _alert(clinic, "pt-a1", "craving_high")
    other = await _alert(clinic, "pt-a2", "craving_high")
    note = "reached her at home, safety plan reviewed"
    response = await clinic.client.post(
        f"/v1/alerts/{safety}/acknowledge",
        headers=clinic.auth("c01"),
        json={"outcome": "contacted_patient", "note": note},
    )
    assert response.status == 200, await response.text()
    summary = await response.json()
    assert summary["state"] == "acknowledged" and summary["acknowledgement_outcome"] == "contacted_patient"
    for alert_id, who, outcome in ((craving, "c01", "false_alarm"), (other, "s01", "no_action_needed")):
        response = await clinic.client.post(
            f"/v1/alerts/{alert_id}/acknowledge", headers=clinic.auth(who), json={"outcome": outcome}
        )
        assert response.status == 200, await response.text()
    bad = await clinic.client.post(
        f"/v1/alerts/{craving}/acknowledge", headers=clinic.auth("c01"), json={"outcome": "ignored"}
    )
    assert bad.status == 400

    detail = await (await clinic.client.get(f"/v1/alerts/{safety}", headers=clinic.auth("c01"))).json()
    (acknowledged,) = [t for t in detail["transitions"] if t["kind"] == "acknowledged"]
    assert acknowledged["outcome"] == "contacted_patient" and acknowledged["reason"] == note
    payloads = await clinic.pool.fetch(
        "SELECT payload::text AS payload FROM outbox WHERE kind = 'iop.alert.acknowledged' "
        "AND payload->'data'->>'alert_id' = $1",
        safety,
    )
    (payload,) = [row["payload"] for row in payloads]
    assert json.loads(payload)["data"]["acknowledgement_outcome"] == "contacted_patient"
    assert note not in payload and "safety plan reviewed" not in payload

    env = dict(os.environ, IOPCARE_DATABASE_URL=clean_db, IOPCARE_KAFKA_BOOTSTRAP=endpoints.kafka_bootstrap)
    code, out, err = await _evaluate_database(env, "--json")
    assert code == 0, err
    verdict = json.loads(out)
    rules = verdict["per_rule"]
    assert rules["craving_high"]["outcomes"] == {"false_alarm": 1, "no_action_needed": 1}
    assert rules["craving_high"]["override_rate"] == 1.0 and rules["craving_high"]["alerts"] == 3
    assert rules["safety"]["precision"] == 1.0 and rules["safety"]["acknowledged"] == 1
    assert rules["safety"]["median_hours_to_acknowledge"] > 0
    assert verdict["counselors"]["all"]["with_outcome"] == 3
    assert verdict["counselors"]["all"]["precision"] == pytest.approx(1 / 3)
    assert note not in out and "pt-a1" not in out  # codes and counts only

    code, table, err = await _evaluate_database(env)
    assert code == 0, err
    assert "3 acknowledged with an outcome" in table
    assert "no rule's override rate stays above 50%" in table  # too few outcomes to judge

    # A candidate pack without craving_high, beside the active one over the same logged events: it
    # would drop the 3 craving_high alerts, 2 of them overridden by the counselors.
    candidate = tmp_path / "candidate.toml"
    text = DEFAULT_PACK_PATH.read_text()
    text = re.sub(r'version = "default-[^"]+"', 'version = "candidate-1"', text, count=1)
    text = text.replace("[rules.craving_high]", "[rules.craving_high]\nenabled = false", 1)
    candidate.write_text(text)
    code, out, err = await _evaluate_database(env, "--json", "--compare", str(candidate))
    assert code == 0, err
    shifts = json.loads(out)["compare"]
    assert shifts["candidate"] == "candidate-1"
    craving = shifts["per_rule"]["craving_high"]
    assert (craving["active"], craving["candidate"], craving["dropped"]) == (3, 0, 3)
    assert (craving["dropped_judged"], craving["dropped_overridden"]) == (2, 2)
    assert shifts["per_rule"]["safety"]["kept"] == shifts["per_rule"]["safety"]["active"] == 3
