"""Webhooks, the pure part: who is told about an alert change, what they are told, how it is signed,
when a failed POST is tried again and when an endpoint that keeps failing is switched off.

No I/O here: the consumer and the sender (``consumer.py``, ``delivery.py``) call these functions
with rows they read and write the decisions back, so every rule below is testable by itself.

What a receiver gets is the *minimum necessary* (HIPAA): which alert changed, how, how urgent, for
which pseudonymous patient, and a link to the inbox. Never the rule, title, explanation, evidence or
recommended action: in a substance-use program even "reported use" is Part 2 information, and the
inbox, behind authentication and the audit log, is where it is read.

Signatures follow Standard Webhooks (standardwebhooks.com), made with its reference library:
``webhook-id`` (the delivery's id, the same on every retry: receivers dedupe by it),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``: ``v1,<base64
HMAC-SHA256>`` over ``id.timestamp.body`` with the endpoint's ``whsec_`` secret, one signature per
active secret (two while a rotated secret's overlap lasts). A receiver verifies with the same
library (``standardwebhooks.Webhook(secret).verify(body, headers)``; docs/webhooks.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from iopcare.contract import AlertEvent, AlertEventKind

__all__ = [
    "ATTEMPT_HEADER",
    "DEFAULT_EVENT_KINDS",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DeliveryPlan",
    "DisablePolicy",
    "ExistingDelivery",
    "NewDelivery",
    "Notice",
    "OwnerKind",
    "RetryPolicy",
    "Routed",
    "Subscription",
    "check_url",
    "digest_body",
    "notice_of",
    "notification_body",
    "origin",
    "plan_deliveries",
    "recipients",
    "sign",
    "signed_headers",
]

ID_HEADER = "webhook-id"  # the delivery's id, the same on every retry of it: receivers dedupe by it
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
ATTEMPT_HEADER = "X-Iopcare-Attempt"

NOTIFICATION_TYPE = "iop.alert.notification"
DIGEST_TYPE = "iop.digest.notification"

OwnerKind = Literal["counselor", "team"]

DEFAULT_EVENT_KINDS: tuple[AlertEventKind, ...] = (
    "created",
    "acknowledged",
    "snoozed",
    "escalated",
    "resolved",
)
"""Kinds an endpoint hears about unless told otherwise. ``updated`` (a repeat trigger of an open
alert) is left out: a repeat must not page again (alert fatigue, docs/rules.md)."""


# -- what the receiver is told ------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """One alert change as a webhook receiver sees it: codes, ids and a link, no clinical text."""

    event_id: str  # the alert event's CloudEvent id
    kind: str  # created, acknowledged, snoozed, escalated, resolved (or updated)
    alert_id: str
    severity: str
    state: str
    escalated: bool
    time: str  # when the change happened, RFC 3339
    url: str  # the alert in the counselor inbox
    # The alert event's trace (W3C traceparent): the POST continues it in its traceparent header.
    # Stored with the notice, never put in the body.
    traceparent: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON object of this notice in a notification body."""
        return {
            "event_id": self.event_id,
            "kind": self.kind,
            "alert_id": self.alert_id,
            "severity": self.severity,
            "state": self.state,
            "escalated": self.escalated,
            "time": self.time,
            "url": self.url,
        }

    def stored_json(self) -> dict[str, Any]:
        """The notice as the deliveries table keeps it: the body's fields and the trace."""
        return {**self.as_json(), "traceparent": self.traceparent}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Notice:
        """The notice stored by :meth:`stored_json` (rows written before traces have none)."""
        return cls(**{name: value[name] for name in cls.__dataclass_fields__ if name in value})


def notice_of(event: AlertEvent, public_url: str) -> Notice:
    """The notice for an alert event; ``public_url`` is where the inbox is served."""
    data = event.data
    return Notice(
        event_id=event.id,
        kind=event.kind,
        alert_id=data.alert_id,
        severity=data.severity,
        state=data.state,
        escalated=data.escalated,
        time=_rfc3339(event.time),
        url=f"{public_url.rstrip('/')}/inbox#alert-{data.alert_id}",
        traceparent=event.traceparent,
    )


def notification_body(
    delivery_id: str,
    notification_group: str,
    patient_id: str,
    created_at: datetime,
    notices: Sequence[Notice],
) -> bytes:
    """The JSON body POSTed for one delivery. The same bytes on every retry (the timestamp header,
    not the body, says when an attempt was made), so a receiver may dedupe on the body's ``id``."""
    return json.dumps(
        {
            "type": NOTIFICATION_TYPE,
            "id": delivery_id,
            "notification_group": notification_group,
            "patient_id": patient_id,
            "created_at": _rfc3339(created_at),
            "alerts": [n.as_json() for n in notices],
        },
        separators=(",", ":"),
    ).encode()


def digest_body(delivery_id: str, created_at: datetime, digest: dict[str, Any]) -> bytes:
    """The JSON body POSTed for a counselor's daily digest: which digest, for which day, how many
    items about how many patients, and its link in the inbox. No patient id and no rule: the inbox
    says what they are. The same bytes on every retry."""
    return json.dumps(
        {
            "type": DIGEST_TYPE,
            "id": delivery_id,
            "created_at": _rfc3339(created_at),
            **{
                name: digest[name]
                for name in ("digest_id", "counselor_id", "for_day", "items", "patients", "url")
            },
        },
        separators=(",", ":"),
    ).encode()


def _rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# -- who is told --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    """An enabled endpoint, as routing sees it."""

    endpoint_id: int
    owner_kind: OwnerKind
    owner_id: str  # a staff id; for a team, the supervisor's
    event_kinds: frozenset[str] = frozenset(DEFAULT_EVENT_KINDS)


def recipients(event: AlertEvent, subscriptions: Iterable[Subscription]) -> list[int]:
    """Ids of the endpoints an alert event goes to, in ascending order.

    - a counselor's endpoint: the alerts addressed to that counselor;
    - a team's endpoint (owner = the supervisor): every alert whose supervisor it is;
    - a staff member's own endpoint also gets the alerts escalated to them as supervisor, from the
      escalation on (so they also hear when the escalated alert is acknowledged or resolved).
    Each endpoint hears only the kinds it subscribed to, and only of alerts that page: an inbox or a
    digest item is shown in the inbox, never pushed (docs/rules.md, "Tiers").
    """
    data = event.data
    chosen: set[int] = set()
    if data.tier != "page":
        return []
    for sub in subscriptions:
        if event.kind not in sub.event_kinds:
            continue
        if sub.owner_kind == "counselor":
            addressed = sub.owner_id == data.counselor_id
            escalated_to = data.escalated and sub.owner_id == data.supervisor_id
            if addressed or escalated_to:
                chosen.add(sub.endpoint_id)
        elif data.supervisor_id is not None and sub.owner_id == data.supervisor_id:
            chosen.add(sub.endpoint_id)
    return sorted(chosen)


# -- one POST per burst -------------------------------------------------------------------------


@dataclass(frozen=True)
class Routed:
    """A notice for one endpoint, with the notification group it belongs to."""

    endpoint_id: int
    notification_group: str
    patient_id: str
    notice: Notice


@dataclass(frozen=True)
class ExistingDelivery:
    """A delivery row already written for a (endpoint, notification group)."""

    id: int
    endpoint_id: int
    notification_group: str
    part: int
    event_ids: frozenset[str]
    open: bool  # pending and never attempted: later changes of its group may still join it


@dataclass(frozen=True)
class NewDelivery:
    """A delivery row to insert."""

    endpoint_id: int
    notification_group: str
    part: int
    patient_id: str
    notices: tuple[Notice, ...]


@dataclass
class DeliveryPlan:
    """What a batch of alert events does to the deliveries: notices added to open rows, new rows."""

    appends: dict[int, list[Notice]] = field(default_factory=dict)  # delivery row id -> notices
    creates: list[NewDelivery] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.appends and not self.creates


def plan_deliveries(routed: Sequence[Routed], existing: Sequence[ExistingDelivery]) -> DeliveryPlan:
    """Coalesce notices into deliveries: one per (endpoint, notification group) while it waits.

    A notice whose event id is already in a delivery of its (endpoint, group) is a redelivered
    Kafka record and adds nothing. Otherwise it joins the group's open delivery (not yet attempted),
    or a delivery this batch creates for the group, or starts a follow-up delivery (the next part)
    when the group's earlier one is already on its way. Order of notices = order of ``routed``.
    """
    rows: dict[tuple[int, str], list[ExistingDelivery]] = {}
    seen: dict[tuple[int, str], set[str]] = {}
    for row in existing:
        pair = (row.endpoint_id, row.notification_group)
        rows.setdefault(pair, []).append(row)
        seen.setdefault(pair, set()).update(row.event_ids)
    plan = DeliveryPlan()
    creating: dict[tuple[int, str], tuple[int, str, list[Notice]]] = {}
    for item in routed:
        pair = (item.endpoint_id, item.notification_group)
        already = seen.setdefault(pair, set())
        if item.notice.event_id in already:
            continue
        already.add(item.notice.event_id)
        open_row = next((r for r in rows.get(pair, ()) if r.open), None)
        if open_row is not None:
            plan.appends.setdefault(open_row.id, []).append(item.notice)
        elif pair in creating:
            creating[pair][2].append(item.notice)
        else:
            part = max((r.part for r in rows.get(pair, ())), default=-1) + 1
            creating[pair] = (part, item.patient_id, [item.notice])
    plan.creates = [
        NewDelivery(endpoint, group, part, patient, tuple(notices))
        for (endpoint, group), (part, patient, notices) in creating.items()
    ]
    return plan


# -- signing ------------------------------------------------------------------------------------


def sign(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """One ``webhook-signature`` entry: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``."""
    return Webhook(secret).sign(delivery_id, datetime.fromtimestamp(timestamp, UTC), body)


def signed_headers(
    secrets: Sequence[str], body: bytes, delivery_id: str, attempt: int, now: float
) -> dict[str, str]:
    """Every header of one attempt, signed with each active secret (newest first); the timestamp
    is the attempt's, so a retry is signed afresh."""
    timestamp = int(now)
    return {
        "Content-Type": "application/json",
        "User-Agent": "iopcare-dispatcher",
        ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(sign(secret, delivery_id, timestamp, body) for secret in secrets),
        ATTEMPT_HEADER: str(attempt),
    }


# -- retries and giving up ----------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, per delivery.

    After the n-th failed attempt the next one waits between half and all of
    ``min(max_seconds, base_seconds * 2**(n-1))`` ("equal jitter": retries of many deliveries spread
    out, yet none comes back sooner than half its step). After ``max_attempts`` the delivery fails.
    """

    base_seconds: float = 10.0
    max_seconds: float = 3600.0
    max_attempts: int = 12

    def ceiling(self, attempts: int) -> float:
        """The longest wait after ``attempts`` failed attempts (>= 1)."""
        return float(min(self.max_seconds, self.base_seconds * 2 ** min(max(attempts - 1, 0), 62)))

    def delay(self, attempts: int, jitter: float) -> float:
        """Seconds until the next attempt after ``attempts`` failed ones; ``jitter`` is in [0, 1)."""
        ceiling = self.ceiling(attempts)
        return ceiling / 2 + ceiling / 2 * jitter

    def gives_up(self, attempts: int) -> bool:
        """Whether a delivery that failed ``attempts`` times is failed for good."""
        return attempts >= self.max_attempts


@dataclass(frozen=True)
class DisablePolicy:
    """An endpoint is disabled once it failed ``after_failures`` attempts in a row *and* has been
    failing (no success) for ``after_seconds``: a burst of failures during a 30-second blip does
    not disable it, nor do rare failures of an endpoint that mostly works."""

    after_failures: int = 10
    after_seconds: float = 3600.0

    def reason(
        self, consecutive_failures: int, failing_since: datetime, now: datetime, last_error: str
    ) -> str | None:
        """Why the endpoint is to be disabled now, or None to keep it. Counts and codes only."""
        if consecutive_failures < self.after_failures:
            return None
        span = max((now - failing_since).total_seconds(), 0.0)
        if span < self.after_seconds:
            return None
        return (
            f"{consecutive_failures} consecutive failed attempts over {_duration(span)}; last: {last_error}"
        )


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


# -- urls ---------------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """The URL if it can receive webhooks (http or https with a host), else ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("a webhook URL must be http(s)://host[:port]/path")
    return url


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what logs and listings show. Paths and queries often carry
    tokens (chat-service webhook URLs do), so they are never printed."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"
