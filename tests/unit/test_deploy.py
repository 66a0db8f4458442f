"""The deployment files, checked statically (no Docker engine runs here): they must name real
commands and real settings, or the stack fails only when someone starts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click import Group

from iopcare.cli import main
from iopcare.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def _iopcare_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in _compose()["services"].items()
        if service.get("image") == "iopcare:dev"
    }


def test_every_iopcare_service_runs_a_real_cli_command() -> None:
    services = _iopcare_services()
    assert {"migrate", "worker"} <= set(services)
    assert isinstance(main, Group)
    for name, service in services.items():
        command = service["command"][0]
        assert command in main.commands, f"{name}: `iopcare {command}` does not exist"


def test_every_environment_variable_is_a_setting() -> None:
    fields = {f"IOPCARE_{name.upper()}" for name in Settings.model_fields}
    for name, service in _iopcare_services().items():
        unknown = set(service.get("environment", {})) - fields
        assert not unknown, f"{name}: {sorted(unknown)} are not iopcare settings"


def test_workers_are_two_replicas_probed_for_readiness_and_given_time_to_finish_a_batch() -> None:
    worker = _iopcare_services()["worker"]
    assert worker["deploy"]["replicas"] == 2
    probe = " ".join(worker["healthcheck"]["test"])
    port = worker["environment"]["IOPCARE_WORKER_WEB_PORT"]
    assert f"127.0.0.1:{port}/readyz" in probe
    assert worker["environment"]["IOPCARE_WORKER_WEB_HOST"] == "0.0.0.0"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["stop_grace_period"] == "30s"


def test_every_service_dependency_exists() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
