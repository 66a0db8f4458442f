"""The event reference (``schemas/events.md``): every inbound event type's data fields, in Markdown,
generated from the same models and JSON Schemas as the rest of ``schemas/`` (so it cannot drift:
``iopcare schemas check`` fails when it is stale). A new event type or field appears here by itself.
"""

from __future__ import annotations

import json
from typing import Any

from iopcare.contract.events import EVENT_TYPES

_HEADER = """# Inbound events: data fields

Generated from `iopcare.contract` by `iopcare schemas export`; do not edit. Every event is a
CloudEvents 1.0 envelope (`specversion`, `id`, `source`, `type`, `subject` = the pseudonymous
patient id, `time`, `datacontenttype`); the fields below are its `data`. Unknown fields are
refused. The JSON Schema of each type is in `events/<type>.schema.json`; docs/contract.md explains
the envelope, ordering and the dead-letter topic.
"""


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return defs[ref.rsplit("/", 1)[1]] if isinstance(ref, str) else schema


def _type_of(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short, readable type: ``integer 0-10``, ``one of app, sms``, ``array of ...``, ``X or null``."""
    if "anyOf" in schema:
        kinds = [s for s in schema["anyOf"] if s.get("type") != "null"]
        nullable = len(kinds) < len(schema["anyOf"])
        text = " or ".join(_type_of(s, defs) for s in kinds)
        return f"{text} or null" if nullable else text
    if "$ref" in schema:
        target = _resolve(schema, defs)
        if "enum" in target:
            return _type_of(target, defs)
        return f"object ({target.get('title', 'see schema')})"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if kind == "array":
        items = _type_of(schema.get("items", {}), defs)
        unique = " (unique)" if schema.get("uniqueItems") else ""
        return f"array of {items}{unique}"
    text = str(kind)
    if "format" in schema:
        text += f" ({schema['format']})"
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        text += f" {low}-{high}"
    elif low is not None:
        text += f" >= {low}"
    elif high is not None:
        text += f" <= {high}"
    if "maxLength" in schema:
        text += f", at most {schema['maxLength']} characters"
    if "pattern" in schema:
        text += f", matching `{schema['pattern']}`"
    return text


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _fields(model: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    required = set(model.get("required", ()))
    rows = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for name, field in model.get("properties", {}).items():
        default = ""
        if name not in required and "default" in field:
            default = f" (default `{json.dumps(field['default'])}`)"
        rows.append(
            f"| `{name}` | {_cell(_type_of(field, defs))} | {'yes' if name in required else 'no'} "
            f"| {_cell(field.get('description', ''))}{default} |"
        )
    return rows


def event_reference() -> str:
    """The Markdown reference of every inbound event type's data, in type order."""
    parts = [_HEADER]
    for event_type in sorted(EVENT_TYPES):
        schema = EVENT_TYPES[event_type].model_json_schema(by_alias=True)
        defs = schema.get("$defs", {})
        data = _resolve(schema["properties"]["data"], defs)
        parts.append(f"## `{event_type}`\n")
        description = data.get("description") or schema.get("description", "")
        if description:
            parts.append(_cell(description) + "\n")
        parts.append("\n".join(_fields(data, defs)) + "\n")
        nested = sorted(
            {
                ref.rsplit("/", 1)[1]
                for field in data.get("properties", {}).values()
                for ref in _refs(field)
                if "properties" in defs.get(ref.rsplit("/", 1)[1], {})
            }
        )
        for name in nested:
            parts.append(f"`{defs[name].get('title', name)}`: {_cell(defs[name].get('description', ''))}\n")
            parts.append("\n".join(_fields(defs[name], defs)) + "\n")
    return "\n".join(parts)


def _refs(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        found = [schema["$ref"]] if isinstance(schema.get("$ref"), str) else []
        return found + [ref for value in schema.values() for ref in _refs(value)]
    if isinstance(schema, list):
        return [ref for value in schema for ref in _refs(value)]
    return []


__all__ = ["event_reference"]
