"""The Kubernetes manifests, rendered by `kubectl kustomize` as `kubectl apply -k` would (the
kubectl the dev extra installs), and checked against the Kubernetes API schemas (the
`kubernetes-validate` package) and against the code: real commands, real settings, the probes the
services answer, workers sized to the partitions."""

from __future__ import annotations

import base64
import os
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click import Group
from tests.unit.deployment import ROOT, kubectl_kustomize

from iopcare.cli import main
from iopcare.settings import Settings

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.31.0"
KUSTOMIZATIONS = ["base", "overlays/demo"]
# The port each service's web server listens on (/healthz, /readyz, /metrics).
WEB_PORTS = {"worker": 6066, "api": 8080, "dispatcher": 6067}
# Where /metrics is: the API keeps it off its public port.
METRICS_PORTS = WEB_PORTS | {"api": 6068}
# Prometheus job names the alert rules expect (deploy/prometheus/rules).
JOBS = {"iopcare-worker", "iopcare-api", "iopcare-dispatcher"}


@cache
def _rendered(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(kubectl_kustomize(K8S / name))


def _objects(name: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in _rendered(name) if o["kind"] == kind}


def _pod_specs(name: str) -> dict[str, dict[str, Any]]:
    specs = {n: d["spec"]["template"]["spec"] for n, d in _objects(name, "Deployment").items()}
    specs.update({n: j["spec"]["template"]["spec"] for n, j in _objects(name, "Job").items()})
    return specs


def _env(container: dict[str, Any], config: dict[str, str]) -> dict[str, Any]:
    env: dict[str, Any] = dict(config) if container.get("envFrom") else {}
    env.update({item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])})
    return env


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_object_is_valid_against_the_kubernetes_schema(name: str) -> None:
    kinds = set()
    for document in _rendered(name):
        kinds.add(document["kind"])
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(
                f"{document['kind']}/{document['metadata']['name']}: {error.message} at {list(error.path)}"
            )
    assert {"Namespace", "ConfigMap", "Job", "Deployment", "Service", "PodDisruptionBudget"} <= kinds


def test_the_schema_check_rejects_a_broken_manifest() -> None:
    deployment = dict(_objects("base", "Deployment")["iopcare-worker"])
    deployment["spec"] = {**deployment["spec"], "replicas": "two"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_everything_lands_in_the_iopcare_namespace(name: str) -> None:
    for document in _rendered(name):
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "iopcare", document["metadata"]["name"]


# Each pod reads the database credentials of its own role (docs/operations.md, "Database roles");
# only the setup Job connects as the tables' owner.
ROLE_OF = {"setup": "owner", "worker": "processor", "api": "api", "dispatcher": "dispatcher"}


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_container_runs_a_real_cli_command_with_real_settings(name: str) -> None:
    assert isinstance(main, Group)
    settings = {f"IOPCARE_{field.upper()}" for field in Settings.model_fields}
    (config,) = _objects(name, "ConfigMap").values()
    unknown = {key for key in config["data"] if key not in settings}
    assert not unknown, f"ConfigMap keys that are not settings: {sorted(unknown)}"
    commands = {}
    for pod, spec in _pod_specs(name).items():
        for container in spec["containers"]:
            assert "command" not in container, f"{pod}: keep the image's `iopcare` entrypoint"
            command = container["args"][0]
            assert command in main.commands, f"{pod}: `iopcare {command}` does not exist"
            commands[pod] = command
            env = _env(container, config["data"])
            unknown = {key for key in env if key not in settings}
            assert not unknown, f"{pod}: {sorted(unknown)} are not iopcare settings"
            secret = f"iopcare-database-{ROLE_OF[command]}"
            assert env["IOPCARE_DATABASE_URL"] == {"secretKeyRef": {"name": secret, "key": "url"}}
            if command == "setup":
                for service in ("processor", "api", "dispatcher"):
                    assert env[f"IOPCARE_{service.upper()}_DATABASE_PASSWORD"] == {
                        "secretKeyRef": {"name": f"iopcare-database-{service}", "key": "password"}
                    }
    assert commands == {
        "iopcare-setup": "setup",
        "iopcare-worker": "worker",
        "iopcare-api": "api",
        "iopcare-dispatcher": "dispatcher",
    }


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_services_are_probed_on_healthz_and_readyz_where_they_listen(name: str) -> None:
    (config,) = _objects(name, "ConfigMap").values()
    for deployment, spec in _pod_specs(name).items():
        if deployment == "iopcare-setup":
            continue
        role = deployment.removeprefix("iopcare-")
        (container,) = spec["containers"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        env = _env(container, config["data"])
        listen_port = (
            env.get("IOPCARE_WORKER_WEB_PORT")
            or env.get("IOPCARE_API_PORT")
            or env.get("IOPCARE_DISPATCHER_WEB_PORT")
        )
        assert int(listen_port) == WEB_PORTS[role]
        assert "0.0.0.0" in env.values(), f"{deployment}: listens only on loopback, probes cannot reach it"
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            http = container[probe]["httpGet"]
            assert http["path"] == path, f"{deployment} {probe}"
            assert ports[http["port"]] == WEB_PORTS[role], f"{deployment} {probe}"
        annotations = _objects(name, "Deployment")[deployment]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == METRICS_PORTS[role]
        assert METRICS_PORTS[role] in ports.values(), f"{deployment}: no such container port"
        assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_workers_are_sized_to_the_topic_partitions(name: str) -> None:
    (config,) = _objects(name, "ConfigMap").values()
    partitions = int(config["data"]["IOPCARE_TOPIC_PARTITIONS"])
    worker = _objects(name, "Deployment")["iopcare-worker"]["spec"]
    # More workers than partitions would idle; fewer than two leave no one to take over.
    assert 2 <= worker["replicas"] <= partitions
    assert worker["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert not _objects(name, "HorizontalPodAutoscaler"), "an HPA would scale workers past the partitions"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pods_run_unprivileged_on_a_read_only_root_with_resources_set(name: str) -> None:
    for pod, spec in _pod_specs(name).items():
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001, pod  # deploy/Dockerfile
        assert spec["automountServiceAccountToken"] is False, pod
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, pod
            assert context["allowPrivilegeEscalation"] is False, pod
            assert context["capabilities"]["drop"] == ["ALL"], pod
            resources = container["resources"]
            assert set(resources["requests"]) == {"cpu", "memory"}, pod
            assert set(resources["limits"]) == {"cpu", "memory"}, pod
            for mount in container.get("volumeMounts", []):
                assert "emptyDir" in volumes[mount["name"]], (
                    f"{pod}: {mount['mountPath']} is not scratch space"
                )
    # Faust writes its app folder in the working directory (the image's WORKDIR).
    (worker,) = _pod_specs(name)["iopcare-worker"]["containers"]
    assert "/home/iopcare" in {mount["mountPath"] for mount in worker["volumeMounts"]}
    assert "WORKDIR /home/iopcare" in (ROOT / "deploy" / "Dockerfile").read_text()


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity.removesuffix(suffix)) * factor
    return float(quantity) / 2**20


def test_worker_memory_limit_leaves_room_over_the_measured_peak() -> None:
    # docs/benchmarks.md: peak RSS 247 MiB catching up one program day of 10,000 patients.
    assert "peak\n  **247 MiB**" in (ROOT / "docs" / "benchmarks.md").read_text()
    (worker,) = _pod_specs("base")["iopcare-worker"]["containers"]
    limit = _mebibytes(worker["resources"]["limits"]["memory"])
    request = _mebibytes(worker["resources"]["requests"]["memory"])
    assert limit >= 2 * 247
    assert request >= 247


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_services_and_disruption_budgets_select_the_pods_they_mean(name: str) -> None:
    templates = {
        n: d["spec"]["template"]["metadata"]["labels"] for n, d in _objects(name, "Deployment").items()
    }

    def selected(selector: dict[str, str]) -> set[str]:
        return {n for n, labels in templates.items() if selector.items() <= labels.items()}

    for service_name, service in _objects(name, "Service").items():
        assert selected(service["spec"]["selector"]) == {service_name}
        (container,) = _objects(name, "Deployment")[service_name]["spec"]["template"]["spec"]["containers"]
        port_names = {port["name"] for port in container["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, service_name
    budgets = _objects(name, "PodDisruptionBudget")
    assert set(budgets) == {"iopcare-worker", "iopcare-api"}
    for budget_name, budget in budgets.items():
        assert selected(budget["spec"]["selector"]["matchLabels"]) == {budget_name}


def test_no_secret_is_committed_beyond_a_placeholder() -> None:
    assert _objects("overlays/demo", "Secret"), "the demo overlay generates the database Secret"
    for name in KUSTOMIZATIONS:
        for secret in _objects(name, "Secret").values():
            assert name != "base", "the base must not define the database Secret"
            values = {**secret.get("data", {}), **secret.get("stringData", {})}
            for value in values.values():
                assert "CHANGE_ME" in base64.b64decode(value).decode(), f"{name}: a real-looking secret"


def _demo_with_the_operator_component(directory: Path) -> Path:
    """The demo overlay plus the prometheus-operator component, as docs/deployment.md suggests."""
    # kustomize takes only relative paths: an overlay in a scratch folder pointing back here.
    overlay = directory / "with-operator"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(K8S / "overlays" / "demo", overlay)],
                "components": [os.path.relpath(K8S / "components" / "prometheus-operator", overlay)],
            }
        )
    )
    return overlay


def test_the_prometheus_operator_component_gives_the_agreed_job_names(tmp_path: Path) -> None:
    rendered = kubectl_kustomize(_demo_with_the_operator_component(tmp_path))
    monitors = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "ServiceMonitor"}
    services = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "Service"}
    # The operator names the job after the Service: the names the alert rules expect.
    assert set(monitors) == JOBS and set(services) == JOBS
    for name, monitor in monitors.items():
        assert monitor["metadata"]["namespace"] == "iopcare"
        service = services[name]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_container_runs_the_tagged_image_the_kustomization_names(name: str) -> None:
    (image,) = yaml.safe_load((K8S / name / "kustomization.yaml").read_text())["images"]
    assert image["name"] == "iopcare" and image["newTag"], "pin a tag: `latest` is not a release"
    for pod, spec in _pod_specs(name).items():
        for container in spec["containers"]:
            assert container["image"] == f"{image['newName']}:{image['newTag']}", pod
