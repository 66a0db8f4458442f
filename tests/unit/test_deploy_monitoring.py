"""Prometheus configuration, alert rules and the Grafana dashboard, checked without a server:
promtool parses the config and the rules and runs the rules' unit tests; every metric a rule or a
panel names must be one a service defines, with the labels it has."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from tests.unit.deployment import ROOT, defined_metrics, metric_problems, promtool, run, selectors

from iopcare.processor import metrics as processor_metrics

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "iopcare.rules.yml"
RULE_TESTS = PROMETHEUS / "tests" / "iopcare.rules.test.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "iopcare.json"
OPERATIONS = ROOT / "docs" / "operations.md"

# Issue 5: what the dashboard must show, as the metric that shows it.
DASHBOARD_MUST_SHOW = {
    "throughput": "iopcare_events_processed_total",
    "processing latency": "iopcare_arrival_to_commit_seconds_bucket",
    "consumer lag (messages)": "iopcare_consumer_group_lag_messages",
    "consumer lag (seconds)": "iopcare_consumer_lag_seconds",
    "dead letters": "iopcare_dead_letters_total",
    "alerts open by severity": "iopcare_alerts_open",
    "time to acknowledge": "iopcare_alert_time_to_acknowledge_seconds_bucket",
    "escalations": "iopcare_alert_changes_total",
    "webhook deliveries": "iopcare_webhook_deliveries_total",
    "API requests by status": "iopcare_api_requests_total",
}

# Issue 5 and the deploy brief: the operations alerts that must exist.
REQUIRED_ALERTS = {
    "IopcareConsumerLagGrowing",
    "IopcareConsumerLagHigh",
    # Issue 18: health that tells the truth about the group.
    "IopcareConsumerGroupNotCommitting",
    "IopcarePartitionsUnassigned",
    "IopcareWorkerIdle",
    "IopcareDeadLetterRate",
    "IopcareCriticalAlertUnacknowledged",
    "IopcareWorkerDown",
    "IopcareWorkersMissing",
    "IopcareApiErrors",
    "IopcareWebhookEndpointDisabled",
    "IopcareWebhookDeliveryFailures",
    "IopcareOutboxRelayFailing",
    "IopcarePostgresRetries",
}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _recorded_labels() -> dict[str, frozenset[str]]:
    """Recording rules by name, with the labels their series keep (what `by (...)` leaves)."""
    recorded: dict[str, frozenset[str]] = {}
    for rule in _rules():
        if "record" in rule:
            outer = re.match(r"\s*\w+\s+by\s*\(([^)]*)\)", rule["expr"])
            recorded[rule["record"]] = frozenset(
                label.strip() for label in (outer.group(1).split(",") if outer else []) if label.strip()
            )
    return recorded


def _dashboard() -> dict[str, Any]:
    document = json.loads(DASHBOARD.read_text())
    assert isinstance(document, dict)
    return document


def _dashboard_queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def _without_grafana_variables(expr: str) -> str:
    """Grafana fills these in before Prometheus sees the query; promtool needs a real duration."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$environment", ".*")
        .replace("$instance", ".*")
    )


# -- the metric-name collector the other checks rely on ------------------------------------------


def _compose_environment(service: str) -> dict[str, str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return dict(compose["services"][service]["environment"])


def test_the_source_scan_finds_every_metric_the_processor_registers() -> None:
    registered = {family.name for family in REGISTRY.collect() if family.name.startswith("iopcare_")}
    scanned = {definition.name.removesuffix("_total") for definition in defined_metrics().values()}
    assert processor_metrics.EVENTS._name in registered  # the import registered the processor's metrics
    assert registered <= scanned
    events = defined_metrics()["iopcare_events_processed_total"]
    assert events.labels == {"type", "outcome"}


def test_an_unknown_metric_or_label_is_reported() -> None:
    assert (
        metric_problems('sum by (type) (rate(iopcare_events_processed_total{outcome="applied"}[5m]))', {})
        == []
    )
    assert metric_problems("rate(iopcare_no_such_metric_total[5m])", {}) == [
        "iopcare_no_such_metric_total is not defined by any service (or recording rule)"
    ]
    assert metric_problems('iopcare_dead_letters_total{patient="p-1"}', {}) == [
        "iopcare_dead_letters_total has no label(s) ['patient']"
    ]
    assert metric_problems("sum by (route) (iopcare_dead_letters_total)", {}) == [
        "groups by label(s) ['route'] that none of its metrics has"
    ]


# -- Prometheus -------------------------------------------------------------------------------------


def test_prometheus_config_and_rules_pass_promtool() -> None:
    checked = run(promtool(), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout and str(RULES.name) in checked.stdout


def test_prometheus_scrapes_every_iopcare_service_under_the_agreed_job_names() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"iopcare-worker", "iopcare-api", "iopcare-dispatcher"} <= set(jobs)
    # The workers are compose replicas: discovered by DNS so that `--scale worker=N` needs no edit.
    assert jobs["iopcare-worker"]["dns_sd_configs"] == [
        {"names": ["worker"], "type": "A", "port": 6066, "refresh_interval": "15s"}
    ]
    api = _compose_environment("api")
    assert int(api["IOPCARE_API_METRICS_PORT"]) == 6068 and api["IOPCARE_API_METRICS_HOST"] == "0.0.0.0"
    assert jobs["iopcare-api"]["static_configs"] == [{"targets": ["api:6068"]}]
    assert jobs["iopcare-dispatcher"]["static_configs"] == [{"targets": ["dispatcher:6067"]}]


def test_every_alert_says_how_urgent_it_is_what_it_means_and_where_its_runbook_is() -> None:
    alerts = _alerts()
    assert set(alerts) >= REQUIRED_ALERTS, f"missing alerts: {sorted(REQUIRED_ALERTS - set(alerts))}"
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for name, rule in alerts.items():
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: no `for:` duration"
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == "docs/operations.md", name
        assert anchor == name.lower(), f"{name}: runbook anchor {anchor!r}"
        assert anchor in headings, f"{name}: docs/operations.md has no section `### {name}`"


def test_alert_rules_use_only_metrics_and_labels_the_services_define() -> None:
    recorded = _recorded_labels()
    problems = {
        rule.get("alert") or rule["record"]: metric_problems(rule["expr"], recorded) for rule in _rules()
    }
    problems = {name: found for name, found in problems.items() if found}
    assert not problems, "rules naming metrics or labels no service defines:\n" + "\n".join(
        f"  {name}: {'; '.join(found)}" for name, found in problems.items()
    )


def test_alert_rules_fire_on_the_situations_they_describe_and_not_otherwise(tmp_path: Path) -> None:
    tested = {
        check["alertname"]
        for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert tested == set(_alerts()), f"alerts never seen firing in a test: {sorted(set(_alerts()) - tested)}"
    # Plain promtool on the shipped file, as an operator would run it: nothing added by the test.
    result = run(promtool(), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_tests_fail_when_a_threshold_moves(tmp_path: Path) -> None:
    """The rule tests can fail: with the lag threshold lowered, the 'not yet' expectations break."""
    rules = RULES.read_text()
    assert "iopcare:consumer_group_lag_messages:sum > 5000" in rules
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules" / RULES.name).write_text(
        rules.replace(
            "iopcare:consumer_group_lag_messages:sum > 5000", "iopcare:consumer_group_lag_messages:sum > 50"
        )
    )
    spec_path = tmp_path / "tests" / RULE_TESTS.name
    spec_path.write_text(RULE_TESTS.read_text())
    result = run(promtool(), "test", "rules", str(spec_path))
    assert result.returncode != 0
    assert "IopcareConsumerLagGrowing" in result.stdout + result.stderr


# -- Grafana ----------------------------------------------------------------------------------------


def test_grafana_provisions_a_prometheus_datasource_and_the_dashboard_picks_it_by_variable() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "iopcare.yml").read_text())
    (provider,) = providers["providers"]
    # docker-compose.yml mounts deploy/grafana/dashboards there.
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    variables = _variables()
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    # No uid of one Grafana: the dashboard imports into any Grafana with a Prometheus.
    assert f'"uid": "{source["uid"]}"' not in DASHBOARD.read_text()
    for panel in _dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def _variables() -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in _dashboard()["templating"]["list"]}


def test_dashboard_filters_every_query_by_environment_and_instance() -> None:
    variables = _variables()
    for name in ("environment", "instance"):
        assert variables[name]["type"] == "query" and variables[name]["includeAll"], name
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert 'label_values(up{job=~"iopcare-.*"' in variables[name]["definition"]
    assert 'environment=~"$environment"' in variables["instance"]["definition"]
    for title, expr in _dashboard_queries():
        for selector in selectors(_without_grafana_variables(expr)):
            assert selector.matched_labels >= {"environment", "instance"}, f"{title}: {expr}"


# Gauges that every replica of a service reads from the same database: summing them over replicas
# counts each alert once per replica; the dashboard takes one copy (max) per environment first.
REPLICATED_GAUGES = ("iopcare_alerts_open", "iopcare_webhook_pending_deliveries")


@pytest.mark.parametrize("gauge", REPLICATED_GAUGES)
def test_gauges_every_replica_reports_are_counted_once(gauge: str) -> None:
    uses = [expr for _, expr in _dashboard_queries() if gauge in expr]
    assert uses
    for expr in uses:
        assert re.search(rf"max by \((?=[^)]*environment)[^)]*\) \({gauge}\{{", expr), expr


def test_the_environment_label_is_set_by_every_scrape_config() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        if job["job_name"].startswith("iopcare-"):
            assert {"target_label": "environment", "replacement": "compose"} in job["relabel_configs"]
    monitors = list(
        yaml.safe_load_all(
            (ROOT / "deploy/k8s/components/prometheus-operator/servicemonitors.yaml").read_text()
        )
    )
    assert monitors
    for monitor in monitors:
        for endpoint in monitor["spec"]["endpoints"]:
            assert {
                "sourceLabels": ["__meta_kubernetes_namespace"],
                "targetLabel": "environment",
            } in endpoint["relabelings"]


def test_dashboard_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = _dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_shows_what_operations_needs() -> None:
    queries = " ".join(expr for _, expr in _dashboard_queries())
    missing = {topic for topic, metric in DASHBOARD_MUST_SHOW.items() if metric not in queries}
    assert not missing, f"no panel shows {sorted(missing)}"
    assert 'kind="escalated"' in queries
    for quantile in ("0.5", "0.95", "0.99"):
        assert (
            f"histogram_quantile({quantile}, sum by (le) (rate(iopcare_arrival_to_commit_seconds_bucket"
            in queries
        )


def test_dashboard_queries_use_only_metrics_and_labels_the_services_define() -> None:
    problems = [
        f"  {title}: {'; '.join(found)}"
        for title, expr in _dashboard_queries()
        if (found := metric_problems(expr, {}))
    ]
    assert not problems, "panels naming metrics or labels no service defines:\n" + "\n".join(problems)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as if it were a recording rule (it has no query-only check)."""
    queries = _dashboard_queries()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": _without_grafana_variables(expr)}
                    for index, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run(promtool(), "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


@pytest.mark.parametrize(
    "broken", ["sum(rate(iopcare_events_processed_total[5m])", "histogram_quantile(0.5)"]
)
def test_promql_check_rejects_broken_queries(tmp_path: Path, broken: str) -> None:
    path = tmp_path / "broken.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "x:y", "expr": broken}]}]}))
    assert run(promtool(), "check", "rules", str(path)).returncode != 0
