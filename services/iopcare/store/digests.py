"""The daily digests in Postgres: gathering a day's digests (:func:`gather_digests`, run by the
dispatcher at the clinic's hour), reading them (the API) and acknowledging one in one step.

Gathering is idempotent and safe to run from two dispatchers at once: a digest is one row per
counselor and day (``ON CONFLICT DO NOTHING``), and an alert is claimed by the digest that sets its
``digest_id`` first (the update only takes alerts still without one, and skips rows locked by a
batch or a counselor's action at that moment: they wait for the next day's digest). The webhook
POST of a new digest is written in the same transaction, for each enabled endpoint of the
counselor's own (``owner_kind = 'counselor'``): codes and counts only, no patient
(docs/webhooks.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from iopcare.contract import AlertState
from iopcare.domain.digest import DigestItem
from iopcare.store.alerts import Connection


@dataclass(frozen=True)
class Digest:
    digest_id: str
    counselor_id: str
    for_day: date
    made_at: datetime
    items: tuple[DigestItem, ...]
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    states: Mapping[str, AlertState] = field(default_factory=dict)  # alert id -> its state now (when read)

    @property
    def alert_ids(self) -> list[str]:
        return [item.alert_id for item in self.items]


def digest_id_for(counselor_id: str, for_day: date) -> str:
    """A digest's id, the same wherever it is computed (two dispatchers make the same row)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"iopcare:digest:{counselor_id}:{for_day.isoformat()}"))


async def gather_digests(
    connection: Connection, for_day: date, cutoff: datetime, public_url: str
) -> list[Digest]:
    """Make ``for_day``'s digests: for each counselor, their live digest-tier alerts raised before
    ``cutoff`` and in no digest yet. Returns the digests made now (none if they exist already).
    Runs in the caller's transaction; with their webhook deliveries."""
    counselors = await connection.fetch(
        """
        SELECT DISTINCT counselor_id FROM alerts
        WHERE tier = 'digest' AND digest_id IS NULL AND state <> 'resolved' AND raised_at < $1
          AND counselor_id IS NOT NULL
        ORDER BY counselor_id
        """,
        cutoff,
    )
    made: list[Digest] = []
    for row in counselors:
        counselor_id = row["counselor_id"]
        digest_id = digest_id_for(counselor_id, for_day)
        created = await connection.fetchval(
            """
            INSERT INTO digests (digest_id, counselor_id, for_day, made_at, alert_ids)
            VALUES ($1, $2, $3, now(), '{}') ON CONFLICT DO NOTHING RETURNING digest_id
            """,
            digest_id,
            counselor_id,
            for_day,
        )
        if created is None:
            continue  # made already (by another dispatcher, or earlier today)
        # SKIP LOCKED: an alert a batch or a counselor is changing right now is left for the next
        # day's digest rather than waited for (the digest never holds up a batch, nor deadlocks one).
        items = await connection.fetch(
            """
            UPDATE alerts SET digest_id = $1
            WHERE alert_id IN (
                SELECT alert_id FROM alerts
                WHERE counselor_id = $2 AND tier = 'digest' AND digest_id IS NULL
                  AND state <> 'resolved' AND raised_at < $3
                ORDER BY alert_id
                FOR UPDATE SKIP LOCKED
            )
            RETURNING alert_id::text AS alert_id, patient_id, rule_id, title, raised_at
            """,
            digest_id,
            counselor_id,
            cutoff,
        )
        ordered = sorted(items, key=lambda r: (r["raised_at"], r["alert_id"]))
        made_at = await connection.fetchval(
            "UPDATE digests SET alert_ids = $2::uuid[] WHERE digest_id = $1 RETURNING made_at",
            digest_id,
            [r["alert_id"] for r in ordered],
        )
        digest = Digest(
            digest_id,
            counselor_id,
            for_day,
            made_at,
            tuple(DigestItem(r["alert_id"], r["patient_id"], r["rule_id"], r["title"]) for r in ordered),
        )
        await _deliveries(connection, digest, public_url)
        made.append(digest)
    return made


async def _deliveries(connection: Connection, digest: Digest, public_url: str) -> None:
    summary = {
        "digest_id": digest.digest_id,
        "counselor_id": digest.counselor_id,
        "for_day": digest.for_day.isoformat(),
        "items": len(digest.items),
        "patients": len({item.patient_id for item in digest.items}),
        "url": f"{public_url.rstrip('/')}/inbox#digest-{digest.digest_id}",
    }
    await connection.execute(
        """
        INSERT INTO webhook_deliveries (endpoint_id, notification_group, part, patient_id, notices, digest)
        SELECT id, $2, 0, NULL, '[]'::jsonb, $3::jsonb FROM webhook_endpoints
        WHERE enabled AND owner_kind = 'counselor' AND owner_id = $1
        ON CONFLICT DO NOTHING
        """,
        digest.counselor_id,
        f"digest:{digest.digest_id}",
        json.dumps(summary),
    )


async def digests_of(connection: Connection, counselor_ids: list[str], limit: int) -> list[Digest]:
    """The latest digests of these counselors, newest first, with their items as listed then."""
    rows = await connection.fetch(
        """
        SELECT d.digest_id::text AS digest_id, d.counselor_id, d.for_day, d.made_at, d.acknowledged_at,
               d.acknowledged_by, d.alert_ids::text[] AS alert_ids
        FROM digests d WHERE d.counselor_id = ANY($1::text[])
        ORDER BY d.for_day DESC, d.counselor_id LIMIT $2
        """,
        counselor_ids,
        limit,
    )
    return [await _with_items(connection, row) for row in rows]


async def digest(connection: Connection, digest_id: str) -> Digest | None:
    row = await connection.fetchrow(
        """
        SELECT digest_id::text AS digest_id, counselor_id, for_day, made_at, acknowledged_at,
               acknowledged_by, alert_ids::text[] AS alert_ids
        FROM digests WHERE digest_id = $1::uuid
        """,
        digest_id,
    )
    return None if row is None else await _with_items(connection, row)


async def _with_items(connection: Connection, row: Any) -> Digest:
    ids = list(row["alert_ids"])
    alerts = await connection.fetch(
        "SELECT alert_id::text AS alert_id, patient_id, rule_id, title, state FROM alerts "
        "WHERE alert_id = ANY($1::uuid[])",
        ids,
    )
    by_id = {a["alert_id"]: a for a in alerts}
    items = tuple(
        DigestItem(i, by_id[i]["patient_id"], by_id[i]["rule_id"], by_id[i]["title"])
        for i in ids
        if i in by_id
    )
    return Digest(
        row["digest_id"],
        row["counselor_id"],
        row["for_day"],
        row["made_at"],
        items,
        row["acknowledged_at"],
        row["acknowledged_by"],
        {i: by_id[i]["state"] for i in ids if i in by_id},
    )


async def mark_acknowledged(connection: Connection, digest_id: str, by: str, at: datetime) -> None:
    await connection.execute(
        "UPDATE digests SET acknowledged_at = $2, acknowledged_by = $3 WHERE digest_id = $1::uuid",
        digest_id,
        at,
        by,
    )


__all__ = ["Digest", "digest", "digest_id_for", "digests_of", "gather_digests", "mark_acknowledged"]
