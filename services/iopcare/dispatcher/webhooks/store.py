"""Webhook endpoints and deliveries in Postgres (migration 0009): the dispatcher's durable queue.

A delivery row is the unit of work: written when an alert event is taken in from ``iop.alerts.v1``
(before the consumer commits its offset), claimed by a sender with ``FOR UPDATE SKIP LOCKED`` and a
lease (so two dispatchers never POST the same row at once, and a row whose sender died is tried again
when the lease runs out), and closed as delivered or failed. Decisions (routing, coalescing, backoff,
disabling) come from the pure :mod:`iopcare.dispatcher.webhooks.policy`; this module only reads and writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from iopcare.dispatcher.webhooks.policy import (
    DEFAULT_EVENT_KINDS,
    DeliveryPlan,
    ExistingDelivery,
    Notice,
    OwnerKind,
    Subscription,
)

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Executor = Connection | asyncpg.Pool

ENDPOINT_DISABLED = "endpoint_disabled"  # last_error of deliveries dropped because their endpoint was


# -- endpoints ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookEndpoint:
    """An endpoint as operators see it: everything but the secret."""

    id: int
    owner_kind: OwnerKind
    owner_id: str
    url: str
    event_kinds: tuple[str, ...]
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    consecutive_failures: int
    last_success_at: datetime | None
    pending: int  # deliveries waiting
    created_at: datetime


async def add_endpoint(
    db: Executor,
    owner_kind: OwnerKind,
    owner_id: str,
    url: str,
    sealed_secret: str,
    event_kinds: Sequence[str] = DEFAULT_EVENT_KINDS,
) -> int:
    """Register an endpoint with its signing secret encrypted (``SecretBox.seal``); returns its id."""
    endpoint_id = await db.fetchval(
        """
        INSERT INTO webhook_endpoints (owner_kind, owner_id, url, secret, event_kinds)
        VALUES ($1, $2, $3, $4, $5::text[]) RETURNING id
        """,
        owner_kind,
        owner_id,
        url,
        sealed_secret,
        list(event_kinds),
    )
    return int(endpoint_id)


async def list_endpoints(db: Executor) -> list[WebhookEndpoint]:
    """Every endpoint with its health, in id order (no secrets)."""
    rows = await db.fetch(
        """
        SELECT e.id, e.owner_kind, e.owner_id, e.url, e.event_kinds, e.enabled, e.disabled_at,
               e.disabled_reason, e.consecutive_failures, e.last_success_at, e.created_at,
               (SELECT count(*) FROM webhook_deliveries d
                WHERE d.endpoint_id = e.id AND d.state = 'pending') AS pending
        FROM webhook_endpoints e ORDER BY e.id
        """
    )
    return [
        WebhookEndpoint(
            id=r["id"],
            owner_kind=r["owner_kind"],
            owner_id=r["owner_id"],
            url=r["url"],
            event_kinds=tuple(r["event_kinds"]),
            enabled=r["enabled"],
            disabled_at=r["disabled_at"],
            disabled_reason=r["disabled_reason"],
            consecutive_failures=r["consecutive_failures"],
            last_success_at=r["last_success_at"],
            pending=r["pending"],
            created_at=r["created_at"],
        )
        for r in rows
    ]


async def enable_endpoint(db: Executor, endpoint_id: int) -> bool:
    """Enable an endpoint and forget its failure streak; False if there is no such endpoint.
    Deliveries dropped while it was disabled stay dropped (the inbox has those alerts)."""
    status = await db.execute(
        """
        UPDATE webhook_endpoints SET enabled = true, disabled_at = NULL, disabled_reason = NULL,
            consecutive_failures = 0, failing_since = NULL, updated_at = now()
        WHERE id = $1
        """,
        endpoint_id,
    )
    return status != "UPDATE 0"


async def disable_endpoint(connection: Connection, endpoint_id: int, reason: str) -> bool:
    """Disable an endpoint and fail its pending deliveries; True if it was enabled until now."""
    async with connection.transaction():
        disabled = await connection.fetchval(
            """
            UPDATE webhook_endpoints SET enabled = false, disabled_at = now(), disabled_reason = $2,
                updated_at = now()
            WHERE id = $1 AND enabled RETURNING id
            """,
            endpoint_id,
            reason,
        )
        if disabled is None:
            return False
        await connection.execute(
            """
            UPDATE webhook_deliveries SET state = 'failed', last_error = $2
            WHERE endpoint_id = $1 AND state = 'pending'
            """,
            endpoint_id,
            ENDPOINT_DISABLED,
        )
        return True


async def rotate_secret(db: Executor, endpoint_id: int, sealed_secret: str, overlap_seconds: float) -> bool:
    """Make ``sealed_secret`` the endpoint's signing secret; the one it replaces stays active beside
    it for ``overlap_seconds`` (0: at once retired). False if there is no such endpoint."""
    status = await db.execute(
        """
        UPDATE webhook_endpoints
        SET previous_secret = CASE WHEN $3 > 0 THEN secret END,
            previous_secret_expires_at = CASE WHEN $3 > 0 THEN now() + make_interval(secs => $3) END,
            secret = $2, updated_at = now()
        WHERE id = $1
        """,
        endpoint_id,
        sealed_secret,
        float(overlap_seconds),
    )
    return status != "UPDATE 0"


async def reseal_secrets(connection: Connection, reseal: Callable[[str], str]) -> int:
    """Rewrite every stored secret with ``reseal`` (``SecretBox.reseal``: plaintext encrypted, the
    rest re-encrypted under the newest key), in one transaction; returns how many rows changed."""
    changed = 0
    async with connection.transaction():
        rows = await connection.fetch(
            "SELECT id, secret, previous_secret FROM webhook_endpoints ORDER BY id FOR UPDATE"
        )
        for row in rows:
            secret = reseal(row["secret"])
            previous = None if row["previous_secret"] is None else reseal(row["previous_secret"])
            if (secret, previous) != (row["secret"], row["previous_secret"]):
                await connection.execute(
                    "UPDATE webhook_endpoints SET secret = $2, previous_secret = $3 WHERE id = $1",
                    row["id"],
                    secret,
                    previous,
                )
                changed += 1
    return changed


async def endpoint_exists(db: Executor, endpoint_id: int) -> bool:
    """Whether an endpoint with this id exists."""
    return bool(
        await db.fetchval("SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1)", endpoint_id)
    )


# -- taking in alert events ---------------------------------------------------------------------


async def subscriptions(connection: Connection, owner_ids: Sequence[str]) -> list[Subscription]:
    """The enabled endpoints owned by any of these staff ids (counselors and supervisors)."""
    rows = await connection.fetch(
        """
        SELECT id, owner_kind, owner_id, event_kinds FROM webhook_endpoints
        WHERE enabled AND owner_id = ANY($1::text[])
        """,
        list(owner_ids),
    )
    return [Subscription(r["id"], r["owner_kind"], r["owner_id"], frozenset(r["event_kinds"])) for r in rows]


async def lock_deliveries(connection: Connection, pairs: Sequence[tuple[int, str]]) -> list[ExistingDelivery]:
    """The delivery rows of these (endpoint, notification group) pairs, locked until the caller's
    transaction ends (a sender claiming one meanwhile is waited for, so ``open`` is accurate)."""
    if not pairs:
        return []
    rows = await connection.fetch(
        """
        SELECT d.id, d.endpoint_id, d.notification_group, d.part,
               ARRAY(SELECT n ->> 'event_id' FROM jsonb_array_elements(d.notices) AS n) AS event_ids,
               d.state = 'pending' AND d.attempts = 0 AS is_open
        FROM webhook_deliveries d
        JOIN unnest($1::bigint[], $2::text[]) AS p(endpoint_id, notification_group)
          ON d.endpoint_id = p.endpoint_id AND d.notification_group = p.notification_group
        ORDER BY d.id
        FOR UPDATE OF d
        """,
        [endpoint for endpoint, _ in pairs],
        [group for _, group in pairs],
    )
    return [
        ExistingDelivery(
            r["id"],
            r["endpoint_id"],
            r["notification_group"],
            r["part"],
            frozenset(r["event_ids"]),
            r["is_open"],
        )
        for r in rows
    ]


async def apply_plan(connection: Connection, plan: DeliveryPlan, coalesce_seconds: float) -> None:
    """Write a :func:`~iopcare.dispatcher.webhooks.plan_deliveries` result: notices appended to open
    rows, new rows due after ``coalesce_seconds`` (so the rest of a burst can still join them).
    Raises ``asyncpg.UniqueViolationError`` if another consumer created a row of the same
    (endpoint, group, part) meanwhile; the caller retries and then finds it."""
    if plan.appends:
        await connection.execute(
            """
            UPDATE webhook_deliveries d SET notices = d.notices || u.more
            FROM unnest($1::bigint[], $2::jsonb[]) AS u(id, more) WHERE d.id = u.id
            """,
            list(plan.appends),
            [_notices_json(notices) for notices in plan.appends.values()],
        )
    if plan.creates:
        await connection.execute(
            """
            INSERT INTO webhook_deliveries
                (endpoint_id, notification_group, part, patient_id, notices, next_attempt_at)
            SELECT e, g, p, pid, n, now() + make_interval(secs => $6)
            FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::jsonb[]) AS u(e, g, p, pid, n)
            """,
            [c.endpoint_id for c in plan.creates],
            [c.notification_group for c in plan.creates],
            [c.part for c in plan.creates],
            [c.patient_id for c in plan.creates],
            [_notices_json(c.notices) for c in plan.creates],
            coalesce_seconds,
        )


def _notices_json(notices: Sequence[Notice]) -> str:
    return json.dumps([n.stored_json() for n in notices])


# -- sending ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueDelivery:
    """A delivery claimed for one attempt, with what is needed to POST it."""

    id: int
    delivery_id: str
    endpoint_id: int
    attempt: int  # this attempt's number, from 1
    notification_group: str
    patient_id: str | None  # None for a digest
    notices: tuple[Notice, ...]
    created_at: datetime
    url: str
    sealed_secrets: tuple[str, ...]  # the active signing secrets, encrypted, newest first
    digest: dict[str, Any] | None = None  # a counselor's daily digest instead of alert notices


async def claim_due(pool: asyncpg.Pool, limit: int, lease_seconds: float) -> list[DueDelivery]:
    """Claim up to ``limit`` due deliveries of enabled endpoints for one attempt each.

    ``SKIP LOCKED``: rows another dispatcher is claiming are left to it. The claim counts the attempt
    and pushes ``next_attempt_at`` a lease ahead, so the row is not due again while it is being sent;
    if this process dies mid-POST the row becomes due again when the lease ends (at least once).
    """
    rows = await pool.fetch(
        """
        WITH due AS (
            SELECT d.id FROM webhook_deliveries d
            JOIN webhook_endpoints e ON e.id = d.endpoint_id
            WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND e.enabled
            ORDER BY d.next_attempt_at
            LIMIT $1
            FOR UPDATE OF d SKIP LOCKED
        )
        UPDATE webhook_deliveries d
        SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
        FROM due, webhook_endpoints e
        WHERE d.id = due.id AND e.id = d.endpoint_id
        RETURNING d.id, d.delivery_id::text AS delivery_id, d.endpoint_id, d.attempts,
                  d.notification_group, d.patient_id, d.notices::text AS notices, d.created_at,
                  d.digest::text AS digest, e.url, e.secret,
                  CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END AS previous_secret
        """,
        limit,
        lease_seconds,
    )
    return [
        DueDelivery(
            id=r["id"],
            delivery_id=r["delivery_id"],
            endpoint_id=r["endpoint_id"],
            attempt=r["attempts"],
            notification_group=r["notification_group"],
            patient_id=r["patient_id"],
            notices=tuple(Notice.from_json(n) for n in json.loads(r["notices"])),
            created_at=r["created_at"],
            url=r["url"],
            sealed_secrets=(r["secret"],) + ((r["previous_secret"],) if r["previous_secret"] else ()),
            digest=json.loads(r["digest"]) if r["digest"] is not None else None,
        )
        for r in sorted(rows, key=lambda r: r["id"])
    ]


async def record_delivered(pool: asyncpg.Pool, delivery: DueDelivery, status: int) -> None:
    """Close a delivery as delivered and end its endpoint's failure streak."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            """
            UPDATE webhook_deliveries SET state = 'delivered', delivered_at = now(), last_status = $2,
                last_error = NULL
            WHERE id = $1
            """,
            delivery.id,
            status,
        )
        await connection.execute(
            """
            UPDATE webhook_endpoints SET consecutive_failures = 0, failing_since = NULL,
                last_success_at = now(), updated_at = now()
            WHERE id = $1
            """,
            delivery.endpoint_id,
        )


@dataclass(frozen=True)
class FailureStreak:
    """An endpoint's failures since its last success, after one more."""

    consecutive_failures: int
    failing_since: datetime
    now: datetime


async def record_failed_attempt(
    pool: asyncpg.Pool,
    delivery: DueDelivery,
    error: str,
    status: int | None,
    retry_in: float | None,
) -> FailureStreak | None:
    """Record a failed attempt: retry in ``retry_in`` seconds, or (None) fail the delivery for good.
    Returns the endpoint's failure streak (None if the endpoint is gone)."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            """
            UPDATE webhook_deliveries
            SET state = CASE WHEN $2::float8 IS NULL THEN 'failed' ELSE 'pending' END,
                next_attempt_at = CASE WHEN $2::float8 IS NULL THEN next_attempt_at
                                       ELSE now() + make_interval(secs => $2::float8) END,
                last_error = $3, last_status = $4
            WHERE id = $1 AND state = 'pending'
            """,
            delivery.id,
            retry_in,
            error,
            status,
        )
        row = await connection.fetchrow(
            """
            UPDATE webhook_endpoints
            SET consecutive_failures = consecutive_failures + 1,
                failing_since = coalesce(failing_since, now()), updated_at = now()
            WHERE id = $1
            RETURNING consecutive_failures, failing_since, now() AS now
            """,
            delivery.endpoint_id,
        )
    if row is None:
        return None
    return FailureStreak(row["consecutive_failures"], row["failing_since"], row["now"])


async def pending_count(db: Executor) -> int:
    """Deliveries waiting to be sent (or being sent)."""
    return int(await db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"))
