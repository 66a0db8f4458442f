"""Rule packs from files: reading a clinic's pack, importing its local rule modules, the packaged default.

The domain gets a parsed :class:`~iopcare.domain.rules.pack.RulePack` and reads nothing itself; this
package is where packs come from. ``default.toml`` beside this module is the default clinical table of
docs/rules.md and the template for a clinic's own pack (``iopcare rules show``, docs/rules.md).
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from iopcare.contract import EVENT_TYPES
from iopcare.domain.rules.pack import LocalRules, RulePack, RulePackError, validate_pack


def parse_pack(document: Mapping[str, Any], source: str = "<rule pack>") -> RulePack:
    """Validate a pack already read from TOML and import its ``local_rules`` modules; raises
    :class:`RulePackError` naming every problem."""
    pack = validate_pack(document, source)
    if pack.local_rules is not None:
        pack.attach_local_event_rules(_import_local_rules(pack.local_rules, source))
    return pack


def _import_local_rules(local: LocalRules, source: str) -> dict[type, tuple[Any, ...]]:
    """Import the ``local_rules`` modules and gather their ``EVENT_RULES``, or name every problem."""
    event_classes = set(EVENT_TYPES.values())
    gathered: dict[type, tuple[Any, ...]] = {}
    problems: list[str] = []
    for index, name in enumerate(local.modules):
        where = f"local_rules.modules[{index}]"
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            problems.append(f"{where}: cannot import {name!r}: {type(exc).__name__}: {exc}")
            continue
        rules = getattr(module, "EVENT_RULES", None)
        if not isinstance(rules, Mapping):
            problems.append(f"{where}: module {name!r} defines no EVENT_RULES mapping")
            continue
        for event_class, functions in rules.items():
            if event_class not in event_classes:
                problems.append(f"{where}: EVENT_RULES key {event_class!r} is not a contract event class")
            elif not isinstance(functions, tuple) or not all(callable(f) for f in functions):
                problems.append(f"{where}: EVENT_RULES[{event_class.__name__}] is not a tuple of rules")
            else:
                gathered[event_class] = gathered.get(event_class, ()) + functions
    if problems:
        raise RulePackError(source, problems)
    return gathered


def load_pack(path: str | Path) -> RulePack:
    """Read and validate a rule pack file (TOML).

    Raises :class:`RulePackError` with every problem and its location: a TOML syntax error, an
    unknown rule or field, a missing field, a bad threshold, an unknown severity or level.
    """
    path = Path(path)
    try:
        with path.open("rb") as stream:
            document = tomllib.load(stream)
    except tomllib.TOMLDecodeError as exc:
        raise RulePackError(str(path), [f"not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise RulePackError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    return parse_pack(document, str(path))


# Package data (pyproject: package-data).
_DEFAULT = resources.files("iopcare.rulepacks").joinpath("default.toml")

DEFAULT_PACK_PATH = Path(str(_DEFAULT))
"""Where the packaged default pack is (a template for a clinic's own)."""

DEFAULT_PACK: RulePack = parse_pack(
    tomllib.loads(_DEFAULT.read_text("utf-8")), "iopcare/rulepacks/default.toml"
)
"""The packaged default: the default clinical table of docs/rules.md."""


__all__ = ["DEFAULT_PACK", "DEFAULT_PACK_PATH", "RulePack", "RulePackError", "load_pack", "parse_pack"]
