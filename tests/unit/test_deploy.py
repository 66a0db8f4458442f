"""The deployment files, checked statically (no Docker engine runs here): they must name real
commands and real settings, or the stack fails only when someone starts it."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click import Group

from iopcare.cli import main
from iopcare.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# The Compose Specification's JSON Schema, vendored (source and licence in deploy_schemas/README.md).
COMPOSE_SCHEMA = Path(__file__).parent / "deploy_schemas" / "compose-spec.json"
# Each iopcare service's web server (/healthz, /readyz, /metrics): the port setting and its value.
WEB_PORTS = {
    "worker": ("IOPCARE_WORKER_WEB_PORT", 6066),
    "api": ("IOPCARE_API_PORT", 8080),
    "dispatcher": ("IOPCARE_DISPATCHER_WEB_PORT", 6067),
}


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
    assert set(services) == {"migrate", "worker", "api", "dispatcher"}
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


@cache
def _compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def test_compose_file_follows_the_compose_specification() -> None:
    errors = sorted(_compose_validator().iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    ("service", "field", "value"),
    [
        ("worker", "deploy", {"replicas": 2, "replica": 2}),
        ("api", "healthcheck", {"test": 3}),
        ("kafka", "ports", "9094"),
    ],
)
def test_the_compose_schema_check_rejects_a_broken_service(service: str, field: str, value: Any) -> None:
    document = _compose()
    document["services"][service][field] = value
    assert list(_compose_validator().iter_errors(document))


def test_the_stack_has_everything_issue_5_names() -> None:
    services = _compose()["services"]
    assert set(services) == {
        "kafka",
        "postgres",
        "migrate",
        "worker",
        "api",
        "dispatcher",
        "prometheus",
        "grafana",
    }
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


@pytest.mark.parametrize("name", sorted(WEB_PORTS))
def test_every_long_running_service_listens_for_probes_and_is_checked_for_readiness(name: str) -> None:
    service = _iopcare_services()[name]
    setting, port = WEB_PORTS[name]
    environment = service["environment"]
    assert int(environment[setting]) == port
    host_setting = setting.replace("_PORT", "_HOST")
    assert environment[host_setting] == "0.0.0.0", "bound to loopback, Prometheus could not scrape it"
    assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert service["restart"] == "unless-stopped"


def test_the_api_is_published_where_the_inbox_links_point() -> None:
    api = _iopcare_services()["api"]
    assert api["ports"] == ["8080:8080"]
    assert api["environment"]["IOPCARE_PUBLIC_URL"] == "http://localhost:8080"
    assert _iopcare_services()["dispatcher"]["environment"]["IOPCARE_PUBLIC_URL"] == "http://localhost:8080"


def test_prometheus_and_grafana_mount_files_that_exist() -> None:
    services = _compose()["services"]
    mounts = {
        mount.split(":")[1]: mount.split(":")[0]
        for name in ("prometheus", "grafana")
        for mount in services[name]["volumes"]
        if mount.startswith("./")
    }
    assert mounts == {
        "/etc/prometheus": "./deploy/prometheus",
        "/etc/grafana/provisioning": "./deploy/grafana/provisioning",
        "/var/lib/grafana/dashboards": "./deploy/grafana/dashboards",
    }
    for source in mounts.values():
        assert (ROOT / source).is_dir(), source
    command = services["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    assert (ROOT / "deploy" / "prometheus" / "prometheus.yml").is_file()
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "deploy" / "grafana" / "dashboards" / Path(home).name).is_file()


def _listeners(value: str) -> dict[str, str]:
    """``NAME://host:port,...`` as {NAME: "host:port"}."""
    return dict(item.split("://", 1) for item in value.split(","))


def test_kafka_answers_the_containers_and_a_publisher_on_the_host_each_at_an_address_it_can_reach() -> None:
    services = _compose()["services"]
    kafka = services["kafka"]["environment"]
    listeners = _listeners(kafka["KAFKA_LISTENERS"])
    advertised = _listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(advertised) <= set(listeners) == set(protocols)
    # The containers bootstrap from a listener that advertises the service name ...
    for name, service in _iopcare_services().items():
        bootstrap = service["environment"]["IOPCARE_KAFKA_BOOTSTRAP"]
        (inside,) = [n for n, address in advertised.items() if address == bootstrap]
        assert bootstrap.startswith("kafka:"), name
    # ... and the host reaches, through the published port, one that advertises localhost.
    (published,) = services["kafka"]["ports"]
    host_port, container_port = published.split(":")
    (outside,) = [n for n, address in listeners.items() if address.endswith(f":{container_port}")]
    assert advertised[outside] == f"localhost:{host_port}"
    assert outside != inside and kafka["KAFKA_INTER_BROKER_LISTENER_NAME"] == inside


def test_each_compose_service_connects_as_its_own_role_with_the_password_setup_gives_it() -> None:
    from urllib.parse import urlsplit

    services = _iopcare_services()
    migrate = services["migrate"]["environment"]
    assert urlsplit(migrate["IOPCARE_DATABASE_URL"]).username == "iopcare"  # the owner: migrations
    for name, role in (("worker", "processor"), ("api", "api"), ("dispatcher", "dispatcher")):
        url = urlsplit(services[name]["environment"]["IOPCARE_DATABASE_URL"])
        assert url.username == f"iopcare_{role}", name
        assert url.password == migrate[f"IOPCARE_{role.upper()}_DATABASE_PASSWORD"], name
