"""Third-party reports held for want of consent, in Postgres (``quarantined_events``): held, released
by a grant. The consent gate decides (``domain/intake.py``); this module reads and writes."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from iopcare.contract import decode_event
from iopcare.domain.intake import Held, third_party_of

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


async def load_held(connection: Connection, patient_ids: list[str]) -> dict[str, list[Held]]:
    rows = await connection.fetch(
        """
        SELECT q.patient_id, q.reason, q.hold_until, e.payload::text AS payload
        FROM quarantined_events q JOIN event_log e USING (source, event_id)
        WHERE q.patient_id = ANY($1::text[]) AND q.released_at IS NULL
        """,
        patient_ids,
    )
    waiting: dict[str, list[Held]] = {}
    for row in rows:
        event = decode_event(row["payload"].encode())
        party = third_party_of(event)
        assert party is not None, "only third-party events are quarantined"
        waiting.setdefault(row["patient_id"], []).append(Held(event, party, row["reason"], row["hold_until"]))
    return waiting


async def hold(connection: Connection, held: Sequence[Held]) -> None:
    await connection.execute(
        """
        INSERT INTO quarantined_events
            (source, event_id, patient_id, event_type, event_time,
             party_kind, party_id, reason, hold_until)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                             $6::text[], $7::text[], $8::text[], $9::timestamptz[])
        ON CONFLICT (source, event_id) DO NOTHING
        """,
        [h.event.source for h in held],
        [h.event.id for h in held],
        [h.event.subject for h in held],
        [h.event.type for h in held],
        [h.event.time for h in held],
        [h.party.kind for h in held],
        [h.party.id for h in held],
        [h.reason for h in held],
        [h.hold_until for h in held],
    )


async def release(connection: Connection, released: Sequence[Held], by: Sequence[str]) -> None:
    await connection.execute(
        """
        UPDATE quarantined_events AS q SET released_at = now(), released_by = r.released_by
        FROM unnest($1::text[], $2::text[], $3::text[]) AS r(source, event_id, released_by)
        WHERE q.source = r.source AND q.event_id = r.event_id
        """,
        [h.event.source for h in released],
        [h.event.id for h in released],
        list(by),
    )


__all__ = ["hold", "load_held", "release"]
