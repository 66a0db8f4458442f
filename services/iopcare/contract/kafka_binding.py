"""The CloudEvents Kafka protocol binding (version 1.0.2): how an event sits in a Kafka record.

- **Structured mode** (what iopcare publishes): the record's value is the whole event as JSON and
  its ``content-type`` header is ``application/cloudevents+json``. A record without a
  ``content-type`` header (what producers before the binding sent), or with another JSON media type
  (the CloudEvents SDK for Python labels structured records ``application/json``), is read as
  structured too.
- **Binary mode** (what the CloudEvents SDKs' Kafka binding sends by default): each attribute is a
  ``ce_<name>`` header with a UTF-8 value, the value is the ``data`` alone and the ``content-type``
  header is its media type (``datacontenttype``), which must be JSON here.

:func:`structured_value` turns a record of either mode into the structured document that
:func:`~iopcare.contract.decode_event` reads, so every check of the contract applies alike. The
record key is the partition key (the patient id), as the binding's ``partitionkey`` extension says.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from iopcare.contract.events import DEFAULT_MAX_BYTES, InvalidEvent

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
CONTENT_TYPE_HEADER = "content-type"
ATTRIBUTE_PREFIX = "ce_"

Headers = Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None


def structured_headers() -> list[tuple[str, bytes]]:
    """The headers of a structured-mode record (what iopcare's producers put on every event)."""
    return [(CONTENT_TYPE_HEADER, f"{STRUCTURED_CONTENT_TYPE}; charset=utf-8".encode())]


def header_pairs(headers: Headers) -> list[tuple[str, bytes]]:
    """A record's headers as (name, value) pairs, whether a client gives pairs or a mapping."""
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(name, value or b"") for name, value in items]


def _media_type(value: bytes) -> str:
    """``application/json`` of ``application/json; charset=utf-8``, lower-cased."""
    return value.decode("latin-1").split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def structured_value(value: bytes | None, headers: Headers, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The structured-mode JSON document of a record, whichever mode it came in. Raises
    :class:`InvalidEvent` for a record in neither mode; details name headers and kinds only, never
    values (they may hold PHI)."""
    raw = value or b""
    pairs = header_pairs(headers)
    by_name = {name.lower(): header for name, header in pairs}
    content_type = by_name.get(CONTENT_TYPE_HEADER)
    if "ce_specversion" not in by_name:
        # The CloudEvents SDK for Python labels its structured records with the data's media type
        # (application/json) rather than the binding's: any JSON type is read as structured.
        if content_type is not None and not _is_json(_media_type(content_type)):
            raise InvalidEvent(
                "undecodable",
                "content-type: neither a JSON document (structured mode) nor a binary-mode record"
                " (no ce_specversion header)",
            )
        return raw
    return _binary_to_structured(raw, pairs, content_type, max_bytes)


def _binary_to_structured(
    raw: bytes, pairs: list[tuple[str, bytes]], content_type: bytes | None, max_bytes: int
) -> bytes:
    if len(raw) > max_bytes:
        raise InvalidEvent("oversized", f"{len(raw)} bytes > max {max_bytes}")
    document: dict[str, Any] = {}
    for name, header in pairs:
        lowered = name.lower()
        if not lowered.startswith(ATTRIBUTE_PREFIX):
            continue
        attribute = lowered[len(ATTRIBUTE_PREFIX) :]
        if attribute in ("data", "data_base64"):
            raise InvalidEvent("schema_violation", f"{name}: the data is the record's value, not a header")
        try:
            document[attribute] = header.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent("undecodable", f"header {_safe(name)}: invalid utf-8") from None
    media_type = _media_type(content_type) if content_type is not None else "application/json"
    if not _is_json(media_type):
        raise InvalidEvent("schema_violation", "content-type: iopcare events carry JSON data")
    document["datacontenttype"] = "application/json"
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise InvalidEvent("undecodable", f"invalid utf-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise InvalidEvent(
            "invalid_json", f"data: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError):
        raise InvalidEvent("invalid_json", "data: not JSON") from None
    document["data"] = data
    return json.dumps(document, separators=(",", ":")).encode()


def _safe(name: str) -> str:
    return name if name.isascii() and name.replace("_", "").replace("-", "").isalnum() else "<name>"


__all__ = [
    "ATTRIBUTE_PREFIX",
    "CONTENT_TYPE_HEADER",
    "STRUCTURED_CONTENT_TYPE",
    "header_pairs",
    "structured_headers",
    "structured_value",
]
