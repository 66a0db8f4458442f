"""The published contract in `schemas/`, generated from the models in this package.

`render()` computes every file; `export()` writes them and `check()` reports where a directory
differs from them (CI runs it, so a model change without regenerated schemas fails the build).
Output is deterministic: sorted keys, fixed examples, no timestamps.

Layout (relative to the schemas directory):

- `events/<type>.schema.json`: one JSON Schema (2020-12) per inbound event type;
- `alerts/alert-event.schema.json`: the outbound alert event;
- `dead-letter-headers.schema.json`: the Kafka headers on the dead-letter topic;
- `openapi.json`: the HTTP API's OpenAPI 3.1 document (built by `iopcare.api`, passed in as ``extra``);
- `events.md`: the data fields of every inbound event type, for people (``contract/reference.py``);
- `asyncapi.yaml`: an AsyncAPI 3.0.0 document tying channels, messages and operations together.
  It is JSON, which is valid YAML, so no YAML library is needed to write it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from iopcare.contract.alerts import AlertEvent
from iopcare.contract.envelope import CONTRACT_VERSION
from iopcare.contract.events import EVENT_TYPES, DeadLetterHeaders, encode_event
from iopcare.contract.examples import example_alert_event, example_event
from iopcare.contract.reference import event_reference

__all__ = [
    "ALERTS_CHANNEL",
    "DLQ_CHANNEL",
    "EVENTS_CHANNEL",
    "SCHEMA_BASE_URI",
    "check",
    "export",
    "render",
]

EVENTS_CHANNEL = "iop.events.v1"
ALERTS_CHANNEL = "iop.alerts.v1"
DLQ_CHANNEL = "iop.events.v1.dlq"

# `.example` is reserved for documentation (RFC 2606): a placeholder until the schemas are hosted.
SCHEMA_BASE_URI = "https://iopcare.example/schemas/"
_JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

ALERT_SCHEMA_PATH = "alerts/alert-event.schema.json"
DLQ_HEADERS_SCHEMA_PATH = "dead-letter-headers.schema.json"
ASYNCAPI_PATH = "asyncapi.yaml"
OPENAPI_PATH = "openapi.json"
EVENT_REFERENCE_PATH = "events.md"


def event_schema_path(event_type: str) -> str:
    """Path of an inbound event type's JSON Schema, relative to the schemas directory."""
    return f"events/{event_type}.schema.json"


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _schema_text(model: type[BaseModel], relative_path: str) -> str:
    schema = model.model_json_schema(by_alias=True)
    schema["$schema"] = _JSON_SCHEMA_DIALECT
    schema["$id"] = SCHEMA_BASE_URI + relative_path
    return json_text(schema)


def _patient_key_schema() -> dict[str, Any]:
    subject = AlertEvent.model_json_schema()["properties"]["subject"]
    return {"type": "string", "pattern": subject["pattern"], "description": subject["description"]}


def _summary(model: type[BaseModel]) -> str:
    return (model.__doc__ or "").strip().splitlines()[0]


def _kafka_message_binding() -> dict[str, Any]:
    return {"kafka": {"key": _patient_key_schema(), "bindingVersion": "0.5.0"}}


def _kafka_channel_binding(topic: str) -> dict[str, Any]:
    return {"kafka": {"topic": topic, "bindingVersion": "0.5.0"}}


def _asyncapi() -> dict[str, Any]:
    event_messages: dict[str, Any] = {}
    for event_type, cls in EVENT_TYPES.items():
        example = example_event(event_type)
        event_messages[cls.__name__] = {
            "name": event_type,
            "title": cls.__name__,
            "summary": _summary(cls),
            "contentType": "application/cloudevents+json",  # structured mode (docs/contract.md)
            "payload": {"$ref": "./" + event_schema_path(event_type)},
            "bindings": _kafka_message_binding(),
            "examples": [
                {
                    "name": cls.__name__,
                    "payload": json.loads(encode_event(example)),  # as on the wire: unset attributes left out
                }
            ],
        }
    alert_example = example_alert_event()
    messages: dict[str, Any] = {
        **event_messages,
        "AlertEvent": {
            "name": "iop.alert",
            "title": "AlertEvent",
            "summary": _summary(AlertEvent),
            "contentType": "application/cloudevents+json",  # structured mode (docs/contract.md)
            "payload": {"$ref": "./" + ALERT_SCHEMA_PATH},
            "bindings": _kafka_message_binding(),
            "examples": [{"name": "created", "payload": json.loads(encode_event(alert_example))}],
        },
        "DeadLetter": {
            "name": "dead-letter",
            "title": "DeadLetter",
            "summary": "An inbound message that could not be decoded into a valid event.",
            "description": "The value is the original message bytes, unchanged; the key is the original key. "
            "Headers say why it failed and where it came from. Reprocess it after fixing the producer.",
            "contentType": "application/octet-stream",
            "headers": {"$ref": "./" + DLQ_HEADERS_SCHEMA_PATH},
            "payload": {"type": "string", "format": "binary", "description": "The original message value."},
        },
    }

    def refs(channel: str, names: list[str]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names]

    event_names = list(event_messages)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "iopcare event contract",
            "version": CONTRACT_VERSION,
            "description": "Events that clinic systems publish to iopcare, the alerts it publishes, and "
            "its dead-letter topic. Every message is keyed by the pseudonymous patient id, so one "
            "patient's messages stay in order on one partition. Events are CloudEvents 1.0 in "
            "structured JSON mode; `source` + `id` is the idempotency key. Payloads contain no free "
            "text and no direct identifiers (42 CFR Part 2). Generated from `iopcare.contract`.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "events": {
                "address": EVENTS_CHANNEL,
                "title": "Inbound events",
                "description": "Clinical and operational events about patients, keyed by patient id.",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in event_names},
                "bindings": _kafka_channel_binding(EVENTS_CHANNEL),
            },
            "alerts": {
                "address": ALERTS_CHANNEL,
                "title": "Alerts",
                "description": "Lifecycle changes of counselor alerts, keyed by patient id.",
                "messages": {"AlertEvent": {"$ref": "#/components/messages/AlertEvent"}},
                "bindings": _kafka_channel_binding(ALERTS_CHANNEL),
            },
            "deadLetters": {
                "address": DLQ_CHANNEL,
                "title": "Dead letters",
                "description": "Inbound messages that failed decoding, with the reason in headers.",
                "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
                "bindings": _kafka_channel_binding(DLQ_CHANNEL),
            },
        },
        "operations": {
            "processEvents": {
                "action": "receive",
                "channel": {"$ref": "#/channels/events"},
                "summary": "The processor consumes inbound events (at least once; effects are idempotent).",
                "messages": refs("events", event_names),
            },
            "publishAlerts": {
                "action": "send",
                "channel": {"$ref": "#/channels/alerts"},
                "summary": "The dispatcher relays alert lifecycle events from the outbox (at least once).",
                "messages": refs("alerts", ["AlertEvent"]),
            },
            "deadLetterEvents": {
                "action": "send",
                "channel": {"$ref": "#/channels/deadLetters"},
                "summary": "The processor forwards messages it cannot decode, instead of skipping them.",
                "messages": refs("deadLetters", ["DeadLetter"]),
            },
        },
        "components": {"messages": messages},
    }


def render(extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Every file of the published contract: relative path to exact text. ``extra``: documents
    published with it (relative path to JSON document), such as the API's ``openapi.json``."""
    files = {
        event_schema_path(event_type): _schema_text(cls, event_schema_path(event_type))
        for event_type, cls in EVENT_TYPES.items()
    }
    files[ALERT_SCHEMA_PATH] = _schema_text(AlertEvent, ALERT_SCHEMA_PATH)
    files[DLQ_HEADERS_SCHEMA_PATH] = _schema_text(DeadLetterHeaders, DLQ_HEADERS_SCHEMA_PATH)
    # JSON is YAML; the comment line is the only YAML-specific part.
    files[ASYNCAPI_PATH] = (
        "# Generated from iopcare.contract by `iopcare schemas export`; do not edit.\n"
        + json.dumps(_asyncapi(), indent=2, ensure_ascii=False)
        + "\n"
    )
    files[EVENT_REFERENCE_PATH] = event_reference()
    # Documents published beside the contract that embed it (the HTTP API's), from their own modules:
    # the contract imports nothing of what builds on it.
    files.update({path: json_text(document) for path, document in (extra or {}).items()})
    return files


def _generated_files_in(directory: Path) -> set[str]:
    # Only files this module could have written count as "extra"; anything else (a README, a
    # wrong directory argument) is left alone by both check() and export().
    found = [
        *directory.glob("events/*.schema.json"),
        *directory.glob("alerts/*.schema.json"),
        *directory.glob("*.schema.json"),
        *directory.glob(ASYNCAPI_PATH),
        *directory.glob(OPENAPI_PATH),
        *directory.glob(EVENT_REFERENCE_PATH),
    ]
    return {path.relative_to(directory).as_posix() for path in found if path.is_file()}


def export(directory: Path, extra: Mapping[str, Any] | None = None) -> list[Path]:
    """Write the contract into `directory` and delete generated files no longer in it.

    Returns the paths written, in `render()` order.
    """
    files = render(extra)
    for stale in sorted(_generated_files_in(directory) - files.keys()):
        (directory / stale).unlink()
    written = []
    for relative_path, text in files.items():
        path = directory / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        written.append(path)
    return written


def check(directory: Path, extra: Mapping[str, Any] | None = None) -> list[str]:
    """Differences between `directory` and the contract, one line each; empty when in sync."""
    files = render(extra)
    problems = []
    for relative_path, text in files.items():
        path = directory / relative_path
        if not path.is_file():
            problems.append(f"missing: {relative_path}")
        elif path.read_bytes() != text.encode("utf-8"):
            problems.append(f"stale: {relative_path} differs from the contract models")
    problems.extend(
        f"extra: {relative_path} is not part of the contract"
        for relative_path in sorted(_generated_files_in(directory) - files.keys())
    )
    return problems
