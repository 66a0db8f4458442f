"""The Python kustomize build (tests/unit/kustomize.py) the Kubernetes checks render with.

It must render what kustomize renders, for every feature it accepts: a scratch kustomization that
exercises each of them in its less obvious corners is compared with the output kustomize v5.5.0
gave for it (and with `kubectl kustomize` itself where a recent kubectl is installed). And it must
refuse, with the file and the field named, everything it does not implement.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit import kustomize
from tests.unit.deployment import by_identity, kubectl_kustomize

# A base with its own namespace and image tag, included by an overlay with a component, a Secret
# generator, a patch aimed by a name pattern, labels and two more image rules.
CORNERS: dict[str, dict[str, Any] | list[dict[str, Any]]] = {
    "base/kustomization.yaml": {
        "resources": ["objects.yaml"],
        "namespace": "inner",
        "images": [{"name": "iopcare", "newTag": "t1"}],
    },
    "base/objects.yaml": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "reader"}},
        {
            "apiVersion": "example.org/v1",
            "kind": "Widget",
            "metadata": {"name": "widget-a", "namespace": "elsewhere"},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly"},
            "spec": {
                "schedule": "0 3 * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "metadata": {"labels": {"app": "nightly"}},
                            "spec": {
                                "initContainers": [{"name": "init", "image": "localhost:5000/iopcare:old"}],
                                "containers": [
                                    {"name": "main", "image": "iopcare:old"},
                                    {"name": "prefix", "image": "iopcarex"},
                                    {"name": "path", "image": "other/iopcare"},
                                    {"name": "tool", "image": "busybox"},
                                ],
                            },
                        }
                    }
                },
            },
        },
    ],
    "component/kustomization.yaml": {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1",
        "kind": "Component",
        "resources": ["extra.yaml"],
        "labels": [{"pairs": {"from-component": "yes"}}],
    },
    "component/extra.yaml": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra"}, "data": {"k": "v"}}
    ],
    "overlay/kustomization.yaml": {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../base"],
        "components": ["../component"],
        "namespace": "outer",
        "labels": [{"pairs": {"tier": "edge"}, "includeSelectors": False}],
        "images": [
            {"name": "localhost:5000/iopcare", "newName": "registry.example.org/iop"},
            {"name": "busybox", "newName": "bb", "newTag": "1.36"},
        ],
        "secretGenerator": [
            {
                "name": "creds",
                "literals": ["single='quoted'", 'double="quoted"', "url=a=b", "lone='"],
                "options": {"disableNameSuffixHash": True},
            }
        ],
        "patches": [
            {
                "target": {"kind": "Widget", "name": "widget-.*"},
                "patch": "- op: add\n  path: /spec\n  value: {size: 2}\n",
            }
        ],
    },
}

LABELS = {"from-component": "yes", "tier": "edge"}

# What `kustomize build overlay` (kubectl v1.32's, kustomize v5.5.0) printed for CORNERS.
KUSTOMIZE_RENDERED: list[dict[str, Any]] = [
    # A v1 Namespace takes the kustomization's namespace as its name.
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"labels": LABELS, "name": "outer"}},
    # Cluster-scoped: labelled, but given no namespace.
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"labels": LABELS, "name": "reader"},
    },
    # The component's own resource gets the overlay's namespace and labels too.
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "data": {"k": "v"},
        "metadata": {"labels": LABELS, "name": "extra", "namespace": "outer"},
    },
    # Generated before the component runs, so the component labels it; one pair of quotes dropped.
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "data": {"double": "cXVvdGVk", "lone": "Jw==", "single": "cXVvdGVk", "url": "YT1i"},
        "metadata": {"labels": LABELS, "name": "creds", "namespace": "outer"},
    },
    {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"labels": LABELS, "name": "nightly", "namespace": "outer"},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {
                "spec": {
                    "template": {
                        # includeSelectors false: the template's labels stay as they were.
                        "metadata": {"labels": {"app": "nightly"}},
                        "spec": {
                            "initContainers": [{"image": "registry.example.org/iop:old", "name": "init"}],
                            "containers": [
                                {"image": "iopcare:t1", "name": "main"},
                                {"image": "iopcarex", "name": "prefix"},
                                {"image": "other/iopcare", "name": "path"},
                                {"image": "bb:1.36", "name": "tool"},
                            ],
                        },
                    }
                }
            },
        },
    },
    # A custom resource is namespaced: its namespace is replaced.
    {
        "apiVersion": "example.org/v1",
        "kind": "Widget",
        "metadata": {"labels": LABELS, "name": "widget-a", "namespace": "outer"},
        "spec": {"size": 2},
    },
]


def _write(root: Path, files: dict[str, Any]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(content) if isinstance(content, list) else yaml.safe_dump(content))


def test_the_renderer_gives_what_kustomize_gave_in_each_corner(tmp_path: Path) -> None:
    _write(tmp_path, CORNERS)
    assert by_identity(kustomize.render(tmp_path / "overlay")) == by_identity(KUSTOMIZE_RENDERED)


def test_the_renderer_agrees_with_kubectl_kustomize_in_each_corner(tmp_path: Path) -> None:
    _write(tmp_path, CORNERS)
    theirs = by_identity(kubectl_kustomize(tmp_path / "overlay"))
    assert by_identity(kustomize.render(tmp_path / "overlay")) == theirs


# A minimal kustomization, made wrong in one way per case below.
_CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}


_REFUSALS = [
    ({"namePrefix": "x-"}, kustomize.UnsupportedKustomization, "namePrefix not supported"),
    ({"configMapGenerator": [{"name": "c"}]}, kustomize.UnsupportedKustomization, "configMapGenerator"),
    (
        {"labels": [{"pairs": {"a": "b"}, "includeSelectors": True}]},
        kustomize.UnsupportedKustomization,
        "only includeSelectors: false",
    ),
    ({"labels": [{"pairs": {"ready": True}}]}, kustomize.KustomizeError, "must map names to strings"),
    (
        {"images": [{"name": "iopcare", "digest": "sha256:00"}]},
        kustomize.UnsupportedKustomization,
        "images: digest not supported",
    ),
    (
        {"secretGenerator": [{"name": "s", "literals": ["a=b"]}]},
        kustomize.UnsupportedKustomization,
        "only disableNameSuffixHash: true",
    ),
    (
        {"patches": [{"target": {"kind": "ConfigMap", "name": "settings"}, "patch": "data: {a: '2'}"}]},
        kustomize.UnsupportedKustomization,
        "not strategic merge",
    ),
    (
        {"patches": [{"path": "patch.yaml", "target": {"kind": "ConfigMap", "name": "settings"}}]},
        kustomize.UnsupportedKustomization,
        "patches: path not supported",
    ),
    (
        {
            "patches": [
                {
                    "target": {"kind": "ConfigMap", "name": "settings", "namespace": "x"},
                    "patch": "[]",
                }
            ]
        },
        kustomize.UnsupportedKustomization,
        "patches target: namespace not supported",
    ),
    (
        {"patches": [{"target": {"kind": "ConfigMap", "name": "setting"}, "patch": "[]"}]},
        kustomize.KustomizeError,
        "matches no object",
    ),
    (
        {
            "patches": [
                {
                    "target": {"kind": "ConfigMap", "name": "settings"},
                    "patch": "- {op: replace, path: /data/missing, value: x}",
                }
            ]
        },
        kustomize.KustomizeError,
        "cannot patch ConfigMap/settings",
    ),
    ({"resources": ["settings.yaml", "settings.yaml"]}, kustomize.KustomizeError, "defined twice"),
    ({"resources": ["../outside.yaml"]}, kustomize.KustomizeError, "is outside"),
    ({"resources": ["missing.yaml"]}, kustomize.KustomizeError, "does not exist"),
    ({"components": ["."]}, kustomize.KustomizeError, "not a Component"),
]


@pytest.mark.parametrize(("change", "error", "message"), _REFUSALS, ids=[case[2] for case in _REFUSALS])
def test_the_renderer_refuses_what_it_does_not_implement_or_kustomize_would_not_build(
    tmp_path: Path, change: dict[str, Any], error: type[Exception], message: str
) -> None:
    (tmp_path / "outside.yaml").write_text(yaml.safe_dump(_CONFIG_MAP))
    app = tmp_path / "app"
    _write(
        app,
        {"settings.yaml": [_CONFIG_MAP], "kustomization.yaml": {"resources": ["settings.yaml"], **change}},
    )
    with pytest.raises(error, match=message) as raised:
        kustomize.render(app)
    assert str(app / "kustomization.yaml") in str(raised.value), "the error names the kustomization"


def test_the_minimal_kustomization_of_the_refusal_cases_renders(tmp_path: Path) -> None:
    """So each refusal above is due to its one change, not to the kustomization it starts from."""
    _write(tmp_path, {"settings.yaml": [_CONFIG_MAP], "kustomization.yaml": {"resources": ["settings.yaml"]}})
    assert kustomize.render(tmp_path) == [_CONFIG_MAP]


def test_a_kustomization_that_includes_itself_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, {"a/kustomization.yaml": {"resources": ["../b"]}})
    _write(tmp_path, {"b/kustomization.yaml": {"resources": ["../a"]}})
    with pytest.raises(kustomize.KustomizeError, match="cycle"):
        kustomize.render(tmp_path / "a")


def test_generated_secret_values_are_the_literals_base64_encoded(tmp_path: Path) -> None:
    url = "postgresql://iopcare:CHANGE_ME@postgres:5432/iopcare?sslmode=require"
    generator = {"name": "db", "literals": [f"url={url}"], "options": {"disableNameSuffixHash": True}}
    _write(tmp_path, {"kustomization.yaml": {"secretGenerator": [generator]}})
    (secret,) = kustomize.render(tmp_path)
    assert base64.b64decode(secret["data"]["url"]).decode() == url
