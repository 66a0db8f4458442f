"""A kustomize build in pure Python, for exactly the kustomize features ``deploy/k8s`` uses.

Why: the Kubernetes checks must run on any machine that can run ``make test``, and a recent
kustomize cannot be installed from the registries this project installs from (Debian's
``kubernetes-client`` embeds a kustomize too old for ``labels:`` and components). So the checks
render the manifests here, and ``kubectl kustomize``, where a recent one is installed, is a
cross-check that the rendering is the one the cluster would get (tests/unit/test_deploy_k8s.py).

What is supported, with kustomize v5's semantics:

- ``resources``: YAML files inside the kustomization's folder (kustomize's default load
  restriction), and folders holding a kustomization of their own, built on their own first;
- ``components``: folders holding a ``kind: Component`` kustomization, applied to what the
  including kustomization has accumulated and generated (the component's resources are added
  and its own transformers run over all of it), before the including one's transformers;
- ``secretGenerator``: ``name``, ``literals`` and ``options: {disableNameSuffixHash: true}``;
- ``patches``: RFC 6902 (JSON patch) operations written inline under ``patch``, aimed with a
  ``target`` of ``kind`` and ``name`` (a name is a regular expression, as in kustomize);
- ``namespace``: set on every namespaced object; a ``v1`` Namespace object is renamed to it
  (what kustomize does); cluster-scoped kinds are left alone;
- ``labels``: ``pairs`` added to every object's ``metadata.labels`` (``includeSelectors`` and
  ``includeTemplates`` false or absent);
- ``images``: ``name``, ``newName``, ``newTag``, in every ``containers``/``initContainers`` list.

A build runs in kustomize's order (since v5.1, which moved components after generators):
resources, generators, components, then the transformers patches, namespace, labels, images.
Output is in accumulation order (kustomize sorts by kind; callers compare by kind, namespace and
name).

Anything else in a kustomization raises :class:`UnsupportedKustomization` naming the file and the
field: a future manifest change must extend this renderer (and the kubectl cross-check will tell
whether the extension is right), never be silently mis-rendered. Where kustomize is lenient about
a likely mistake, this is stricter: a patch whose target matches no object is an error here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

# The same fields are allowed in a Component (whose transformers then act on what the including
# kustomization accumulated, which is what _build does).
_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "namespace",
        "labels",
        "resources",
        "components",
        "images",
        "secretGenerator",
        "patches",
    }
)
_API_VERSIONS = {
    "Kustomization": {"kustomize.config.k8s.io/v1beta1"},
    "Component": {"kustomize.config.k8s.io/v1alpha1"},
}

# Kinds the Kubernetes API serves without a namespace: the namespace transformer leaves them be.
# Any other kind (a custom resource included) is namespaced, as kustomize assumes.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ComponentStatus",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PodSecurityPolicy",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)

Resource = dict[str, Any]


class KustomizeError(ValueError):
    """A kustomization that kustomize itself would refuse, or a mistake it would let through."""


class UnsupportedKustomization(KustomizeError):
    """A kustomize feature this renderer does not implement (so it cannot render it faithfully)."""


def render(directory: Path) -> list[Resource]:
    """The objects ``kustomize build DIRECTORY`` (``kubectl kustomize``) produces."""
    kustomization, path = _load_kustomization(Path(directory))
    if kustomization["kind"] != "Kustomization":
        raise KustomizeError(f"{path}: a {kustomization['kind']} cannot be built on its own")
    return _build(path, kustomization, [], (path.parent.resolve(),))


def _load_kustomization(directory: Path) -> tuple[dict[str, Any], Path]:
    found = [directory / name for name in KUSTOMIZATION_FILES if (directory / name).is_file()]
    if not found:
        raise KustomizeError(f"{directory}: no {' or '.join(KUSTOMIZATION_FILES)} here")
    if len(found) > 1:
        raise KustomizeError(f"{directory}: more than one kustomization file: {[p.name for p in found]}")
    (path,) = found
    document = yaml.safe_load(path.read_text()) or {}
    if not isinstance(document, dict):
        raise KustomizeError(f"{path}: a kustomization is a mapping")
    kind = document.setdefault("kind", "Kustomization")
    if kind not in _API_VERSIONS:
        raise KustomizeError(f"{path}: kind {kind!r} is neither Kustomization nor Component")
    if "apiVersion" in document and document["apiVersion"] not in _API_VERSIONS[kind]:
        raise UnsupportedKustomization(f"{path}: apiVersion {document['apiVersion']!r} for a {kind}")
    unsupported = sorted(set(document) - _FIELDS)
    if unsupported:
        raise UnsupportedKustomization(
            f"{path}: {', '.join(unsupported)} not supported in a {kind} by this renderer "
            "(tests/unit/kustomize.py): extend it, and check it against `kubectl kustomize`"
        )
    return document, path


def _build(
    path: Path, kustomization: dict[str, Any], accumulated: list[Resource], building: tuple[Path, ...]
) -> list[Resource]:
    """Resources, generators, components, transformers: one kustomization over ``accumulated``."""
    root = path.parent
    resources = list(accumulated)
    for entry in _list_of(path, kustomization, "resources", str):
        for resource in _load_resource(path, root / entry, building):
            _add(path, resources, resource)
    for generator in _list_of(path, kustomization, "secretGenerator", dict):
        _add(path, resources, _secret(path, generator))
    for entry in _list_of(path, kustomization, "components", str):
        component_dir = root / entry
        component, component_path = _load_kustomization(component_dir)
        if component["kind"] != "Component":
            raise KustomizeError(f"{path}: components: {entry} is a {component['kind']}, not a Component")
        resources = _build(component_path, component, resources, _enter(path, component_dir, building))
    for patch in _list_of(path, kustomization, "patches", dict):
        _patch(path, patch, resources)
    if "namespace" in kustomization:
        _set_namespace(path, kustomization["namespace"], resources)
    for label in _list_of(path, kustomization, "labels", dict):
        _add_labels(path, label, resources)
    for image in _list_of(path, kustomization, "images", dict):
        _set_image(path, image, resources)
    return resources


def _list_of(path: Path, kustomization: dict[str, Any], field: str, kind: type) -> list[Any]:
    value = kustomization.get(field) or []
    if not isinstance(value, list) or not all(isinstance(item, kind) for item in value):
        raise KustomizeError(f"{path}: {field} must be a list of {kind.__name__}")
    return value


def _only(path: Path, where: str, mapping: dict[str, Any], allowed: set[str]) -> None:
    unsupported = sorted(set(mapping) - allowed)
    if unsupported:
        raise UnsupportedKustomization(
            f"{path}: {where}: {', '.join(unsupported)} not supported by this renderer "
            f"(supported: {', '.join(sorted(allowed))})"
        )


def _enter(path: Path, directory: Path, building: tuple[Path, ...]) -> tuple[Path, ...]:
    resolved = directory.resolve()
    if resolved in building:
        raise KustomizeError(f"{path}: {directory} includes itself (cycle)")
    return (*building, resolved)


def _load_resource(path: Path, target: Path, building: tuple[Path, ...]) -> list[Resource]:
    """A file's objects, or a folder's kustomization built on its own."""
    if target.is_dir():
        kustomization, sub_path = _load_kustomization(target)
        if kustomization["kind"] != "Kustomization":
            raise KustomizeError(f"{path}: resources: {target} is a {kustomization['kind']}; use components")
        return _build(sub_path, kustomization, [], _enter(path, target, building))
    if not target.is_file():
        raise KustomizeError(
            f"{path}: resources: {target} does not exist (remote resources are not supported)"
        )
    if not target.resolve().is_relative_to(path.parent.resolve()):
        # kustomize's default load restriction: files only from within the kustomization's folder.
        raise KustomizeError(f"{path}: resources: {target} is outside {path.parent}")
    objects = []
    for document in yaml.safe_load_all(target.read_text()):
        if document is None:
            continue
        if not isinstance(document, dict) or not document.get("kind") or not document.get("apiVersion"):
            raise KustomizeError(f"{target}: every document must be a Kubernetes object (apiVersion, kind)")
        if document["kind"].endswith("List"):
            raise UnsupportedKustomization(f"{target}: {document['kind']} objects are not supported")
        if not isinstance(document.get("metadata"), dict) or not document["metadata"].get("name"):
            raise KustomizeError(f"{target}: a {document['kind']} without metadata.name")
        objects.append(document)
    return objects


def _identity(resource: Resource) -> tuple[str, str, str, str]:
    metadata = resource["metadata"]
    return (resource["apiVersion"], resource["kind"], metadata.get("namespace", ""), metadata["name"])


def _add(path: Path, resources: list[Resource], resource: Resource) -> None:
    identity = _identity(resource)
    if any(_identity(existing) == identity for existing in resources):
        raise KustomizeError(f"{path}: {'/'.join(part for part in identity if part)} is defined twice")
    resources.append(resource)


def _secret(path: Path, generator: dict[str, Any]) -> Resource:
    """A ``secretGenerator`` entry: an Opaque Secret from ``key=value`` literals, under its own name."""
    _only(path, "secretGenerator", generator, {"name", "literals", "options"})
    options = generator.get("options") or {}
    _only(path, "secretGenerator options", options, {"disableNameSuffixHash"})
    if options.get("disableNameSuffixHash") is not True:
        # A hash suffix renames the Secret and every reference to it: not implemented here.
        raise UnsupportedKustomization(
            f"{path}: secretGenerator {generator.get('name')}: only disableNameSuffixHash: true is supported"
        )
    data = {}
    for literal in generator.get("literals") or []:
        key, equals, value = str(literal).partition("=")
        if not key or not equals:
            raise KustomizeError(f"{path}: secretGenerator literal {literal!r} is not key=value")
        if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]  # kustomize drops one pair of enclosing quotes
        data[key] = base64.b64encode(value.encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": generator["name"]},
        "type": "Opaque",
        "data": data,
    }


def _patch(path: Path, entry: dict[str, Any], resources: list[Resource]) -> None:
    """An inline JSON 6902 patch applied to every object its target selects (at least one)."""
    _only(path, "patches", entry, {"patch", "target"})
    target = entry.get("target")
    if not isinstance(target, dict) or not {"kind", "name"} <= set(target):
        raise UnsupportedKustomization(f"{path}: patches: only a target with kind and name is supported")
    _only(path, "patches target", target, {"kind", "name"})
    operations = yaml.safe_load(entry.get("patch") or "")
    if not isinstance(operations, list):
        raise UnsupportedKustomization(
            f"{path}: patches: only JSON 6902 operations (a list) are supported, not strategic merge"
        )
    try:
        name = re.compile(target["name"])
    except re.error as error:
        raise KustomizeError(f"{path}: patches: target name {target['name']!r}: {error}") from error
    selected = [
        index
        for index, resource in enumerate(resources)
        if resource["kind"] == target["kind"] and name.fullmatch(resource["metadata"]["name"])
    ]
    if not selected:
        raise KustomizeError(f"{path}: patches: target {target['kind']}/{target['name']} matches no object")
    for index in selected:
        try:
            resources[index] = jsonpatch.JsonPatch(operations).apply(resources[index])
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as error:
            where = f"{resources[index]['kind']}/{resources[index]['metadata']['name']}"
            raise KustomizeError(f"{path}: patches: cannot patch {where}: {error}") from error


def _set_namespace(path: Path, namespace: Any, resources: list[Resource]) -> None:
    if not isinstance(namespace, str) or not namespace:
        raise KustomizeError(f"{path}: namespace must be a name")
    for resource in resources:
        metadata = resource["metadata"]
        if resource["kind"] == "Namespace" and resource["apiVersion"] == "v1":
            metadata["name"] = namespace
        elif resource["kind"] in {"RoleBinding", "ClusterRoleBinding"} and resource.get("subjects"):
            # kustomize also rewrites the subjects' namespaces: not implemented here.
            raise UnsupportedKustomization(f"{path}: namespace with {resource['kind']} subjects")
        if resource["kind"] not in CLUSTER_SCOPED_KINDS:
            metadata["namespace"] = namespace


def _add_labels(path: Path, label: dict[str, Any], resources: list[Resource]) -> None:
    """``labels`` without selectors or templates: the objects' own ``metadata.labels`` only."""
    _only(path, "labels", label, {"pairs", "includeSelectors", "includeTemplates"})
    for flag in ("includeSelectors", "includeTemplates"):
        if label.get(flag, False) is not False:
            raise UnsupportedKustomization(f"{path}: labels: only {flag}: false is supported")
    pairs = label.get("pairs") or {}
    if not isinstance(pairs, dict) or not all(isinstance(v, str) for v in pairs.values()):
        # kustomize refuses a non-string value too (YAML's `true`, `8`): quote it.
        raise KustomizeError(f"{path}: labels: pairs must map names to strings, got {pairs!r}")
    for resource in resources:
        resource["metadata"].setdefault("labels", {}).update(pairs)


def _split_image(image: str) -> tuple[str, str]:
    """Name and tag (``""`` if none); a ``:`` before the first ``/`` is a registry port, not a tag."""
    slash = max(image.find("/"), 0)
    colon = image.find(":", slash)
    return (image, "") if colon < 0 else (image[:colon], image[colon + 1 :])


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container anywhere in an object (pod specs, templates, job templates)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"containers", "initContainers"} and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _set_image(path: Path, entry: dict[str, Any], resources: list[Resource]) -> None:
    _only(path, "images", entry, {"name", "newName", "newTag"})
    if not isinstance(entry.get("name"), str):
        raise KustomizeError(f"{path}: images: an entry without a name")
    for resource in resources:
        for container in _containers(resource):
            image = container.get("image")
            if not isinstance(image, str):
                continue
            if "@" in image:
                raise UnsupportedKustomization(f"{path}: images: image digests ({image}) are not supported")
            name, tag = _split_image(image)
            if name != entry["name"]:
                continue
            new_tag = str(entry["newTag"]) if "newTag" in entry else tag
            container["image"] = entry.get("newName", name) + (f":{new_tag}" if new_tag else "")
