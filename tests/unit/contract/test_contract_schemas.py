"""The published contract in schemas/: generated, deterministic, and checked for drift."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from iopcare.api.app import openapi
from iopcare.contract import EVENT_TYPES, DeadLetterHeaders, decode_event, encode_event
from iopcare.contract.examples import example_event
from iopcare.contract.schemas import check, export, render

RENDER_DIGEST = (
    "import hashlib, json; from iopcare.contract.schemas import render; "
    "print(hashlib.sha256(json.dumps(render(), sort_keys=True).encode()).hexdigest())"
)


def asyncapi_doc(files: dict[str, str]) -> dict[str, Any]:
    text = files["asyncapi.yaml"]
    assert text.startswith("# ")
    doc: dict[str, Any] = json.loads(text.split("\n", 1)[1])  # JSON is YAML: parse the body as JSON
    return doc


def test_render_is_deterministic_within_a_process() -> None:
    assert render() == render()


def test_render_is_deterministic_across_hash_seeds() -> None:
    # Set iteration order depends on PYTHONHASHSEED; the output must not.
    digests = set()
    for seed in ["0", "1", "12345"]:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", RENDER_DIGEST], env=env, capture_output=True, text=True, check=True
        )
        digests.add(result.stdout.strip())
    local = hashlib.sha256(json.dumps(render(), sort_keys=True).encode()).hexdigest()
    assert digests == {local}


def test_render_has_one_schema_per_event_type_plus_alerts_dlq_asyncapi_and_openapi() -> None:
    expected = {f"events/{t}.schema.json" for t in EVENT_TYPES} | {
        "alerts/alert-event.schema.json",
        "dead-letter-headers.schema.json",
        "asyncapi.yaml",
        "events.md",
    }
    assert set(render()) == expected
    # The API's document is the API's to build; `iopcare schemas export` publishes it alongside.
    assert set(render({"openapi.json": openapi()})) == expected | {"openapi.json"}


def test_the_event_reference_lists_every_type_and_every_data_field() -> None:
    reference = render()["events.md"]
    for event_type, cls in EVENT_TYPES.items():
        section = reference.split(f"## `{event_type}`\n", 1)[1].split("\n## ", 1)[0]
        data_model = cls.model_fields["data"].annotation
        for name in data_model.model_fields:
            assert f"| `{name}` |" in section, (event_type, name)
    assert "| `craving` | integer 0-10 | yes | Craving, 0 (none) to 10 (strongest). |" in reference


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_event_schema_describes_its_type(event_type: str) -> None:
    path = f"events/{event_type}.schema.json"
    text = render()[path]
    assert text.endswith("}\n") and '\n  "$defs"' in text  # 2-space indent, trailing newline
    schema = json.loads(text)
    assert schema["$id"].endswith("/schemas/" + path)
    assert schema["properties"]["type"]["const"] == event_type
    assert set(schema["required"]) >= {"specversion", "id", "source", "type", "time", "subject", "data"}
    assert schema["additionalProperties"] is False
    assert list(schema) == sorted(schema)


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_example_in_asyncapi_is_a_valid_event(event_type: str) -> None:
    doc = asyncapi_doc(render())
    message = doc["components"]["messages"][EVENT_TYPES[event_type].__name__]
    assert message["name"] == event_type
    example = message["examples"][0]["payload"]
    event = decode_event(json.dumps(example).encode(), key=example["subject"])
    assert event == example_event(event_type)
    assert json.loads(encode_event(event)) == example


def test_dead_letter_headers_schema_names_the_kafka_headers() -> None:
    schema = json.loads(render()["dead-letter-headers.schema.json"])
    headers = {
        "iopcare-dlq-reason",
        "iopcare-dlq-detail",
        "iopcare-dlq-source-topic",
        "iopcare-dlq-source-partition",
        "iopcare-dlq-source-offset",
        "iopcare-dlq-failed-at",
    }
    assert set(schema["required"]) == headers
    # Only on a dead letter whose value was cut to the contract's limit.
    assert set(schema["properties"]) == headers | {"iopcare-dlq-original-bytes"}
    assert set(schema["properties"]["iopcare-dlq-reason"]["enum"]) == {
        "undecodable",
        "invalid_json",
        "not_an_object",
        "unknown_type",
        "schema_violation",
        "key_mismatch",
        "oversized",
        "future_time",
        "store_rejected",
        "processing_failed",
    }
    assert {field.alias for field in DeadLetterHeaders.model_fields.values()} == set(schema["properties"])


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(doc: dict[str, Any], pointer: str) -> Any:
    node: Any = doc
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_asyncapi_document_is_3_0_and_every_reference_resolves() -> None:
    files = render()
    doc = asyncapi_doc(files)
    assert doc["asyncapi"] == "3.0.0"
    assert {c["address"] for c in doc["channels"].values()} == {
        "iop.events.v1",
        "iop.alerts.v1",
        "iop.events.v1.dlq",
    }
    refs = _refs(doc)
    assert refs
    for ref in refs:
        if ref.startswith("#/"):
            _resolve(doc, ref)
        else:
            assert ref.removeprefix("./") in files, ref


def test_asyncapi_operations_receive_events_and_send_alerts_and_dead_letters() -> None:
    doc = asyncapi_doc(render())
    actions = {
        _resolve(doc, op["channel"]["$ref"])["address"]: op["action"] for op in doc["operations"].values()
    }
    assert actions == {"iop.events.v1": "receive", "iop.alerts.v1": "send", "iop.events.v1.dlq": "send"}
    inbound = doc["channels"]["events"]["messages"]
    assert {m["$ref"].rsplit("/", 1)[1] for m in inbound.values()} == {
        c.__name__ for c in EVENT_TYPES.values()
    }
    operation = doc["operations"]["processEvents"]
    # AsyncAPI 3: an operation's messages are references into its channel's messages.
    assert all(m["$ref"].startswith("#/channels/events/messages/") for m in operation["messages"])
    assert len(operation["messages"]) == len(EVENT_TYPES)


def test_export_then_check_is_clean(tmp_path: Path) -> None:
    written = export(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(render())
    assert check(tmp_path) == []


def test_check_reports_a_modified_file(tmp_path: Path) -> None:
    export(tmp_path)
    target = tmp_path / "events" / "iop.checkin.submitted.schema.json"
    target.write_text(target.read_text().replace('"maximum": 10', '"maximum": 11'))
    problems = check(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("stale: events/iop.checkin.submitted.schema.json")


def test_check_reports_a_removed_file(tmp_path: Path) -> None:
    export(tmp_path)
    (tmp_path / "asyncapi.yaml").unlink()
    assert check(tmp_path) == ["missing: asyncapi.yaml"]


def test_check_reports_everything_missing_in_an_empty_directory(tmp_path: Path) -> None:
    assert len(check(tmp_path)) == len(render())
    assert all(problem.startswith("missing: ") for problem in check(tmp_path))


def test_check_reports_an_obsolete_schema_and_export_removes_it(tmp_path: Path) -> None:
    export(tmp_path)
    obsolete = tmp_path / "events" / "iop.checkin.v0.schema.json"
    obsolete.write_text("{}\n")
    unrelated = tmp_path / "README.md"
    unrelated.write_text("hand-written notes\n")
    problems = check(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("extra: events/iop.checkin.v0.schema.json")
    export(tmp_path)
    assert not obsolete.exists()
    assert unrelated.exists()
    assert check(tmp_path) == []


def test_export_overwrites_stale_files(tmp_path: Path) -> None:
    export(tmp_path)
    (tmp_path / "alerts" / "alert-event.schema.json").write_text("{}\n")
    export(tmp_path)
    assert check(tmp_path) == []
