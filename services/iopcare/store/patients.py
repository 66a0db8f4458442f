"""The patients' rows: ``patient_state`` (the processor's state of each patient) and
``patient_summary`` (the read model: what the API shows about a patient).

``patient_state.state`` is the processor's own document (``domain/state_document.py``), read only by
the processor, replays and rebuilds. The API reads ``patient_summary``, which the processor writes in
the same transaction from :func:`~iopcare.domain.summary.summarize`, and the few columns of
``patient_state`` written beside the document (care team, level of care, latest event). Every state
row is read under its row lock (:func:`lock_patient_states`), in patient-id order.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import fields

import asyncpg
from pydantic_core import to_json

from iopcare.domain.engagement import PatientState
from iopcare.domain.state_document import STATE_VERSION, dump_state, load_state
from iopcare.domain.summary import CaseSummary

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class StateCache:
    """The states this worker wrote last, by patient, with the row version they were written as.

    A patient's events all go to one partition, owned by one worker at a time, so the worker that
    writes a state is nearly always the next to read it: the cache spares parsing the JSON document
    again. Postgres stays the truth: an entry is used only if the row's ``xmin`` (which changes with
    every rewrite, by any worker) still matches. Bounded, least recently used out first.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[str, PatientState]] = OrderedDict()

    def get(self, patient_id: str, version: str) -> PatientState | None:
        entry = self._entries.get(patient_id)
        if entry is None or entry[0] != version:
            return None
        self._entries.move_to_end(patient_id)
        return entry[1]

    def put(self, patient_id: str, version: str, state: PatientState) -> None:
        if self._size <= 0:
            return
        self._entries[patient_id] = (version, state)
        self._entries.move_to_end(patient_id)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, patient_ids: set[str]) -> None:
        for patient_id in patient_ids:
            self._entries.pop(patient_id, None)


def parse_state(patient_id: str, document: str, version: int) -> PatientState:
    """A ``patient_state`` row's state: ``'{}'`` is a row created but never written (its patient
    has had only held reports), else a document of ``version`` (``domain/state_document.py``)."""
    return PatientState(patient_id=patient_id) if document == "{}" else load_state(document, version)


async def lock_patient_states(
    connection: Connection, patient_ids: list[str], *, create: bool = True, cache: StateCache | None = None
) -> dict[str, PatientState]:
    """Lock the patients' ``patient_state`` rows (in id order) and read their states.

    ``create``: insert the missing rows first, so that every state is read under a row lock (two
    transactions that both "create" a patient would otherwise each start from empty and one would
    lose); else patients without a row are left out. ``cache``: read the document only where the
    cached copy is stale (``xmin`` changes whenever any transaction rewrites the row).
    """
    if create:
        await connection.execute(
            """
            INSERT INTO patient_state (patient_id, state)
            SELECT id, '{}'::jsonb FROM unnest($1::text[]) AS id
            ON CONFLICT (patient_id) DO NOTHING
            """,
            patient_ids,
        )
    versions = await connection.fetch(
        "SELECT patient_id, xmin::text AS version FROM patient_state "
        "WHERE patient_id = ANY($1::text[]) ORDER BY patient_id FOR UPDATE",
        patient_ids,
    )
    states: dict[str, PatientState] = {}
    stale: list[str] = []
    for row in versions:
        cached = cache.get(row["patient_id"], row["version"]) if cache is not None else None
        if cached is None:
            stale.append(row["patient_id"])
        else:
            states[row["patient_id"]] = cached
    if stale:
        for row in await connection.fetch(
            "SELECT patient_id, state::text AS state, state_version FROM patient_state "
            "WHERE patient_id = ANY($1::text[])",
            stale,
        ):
            states[row["patient_id"]] = parse_state(row["patient_id"], row["state"], row["state_version"])
    return states


async def write_states(
    connection: Connection, states: list[PatientState], *, unassigned_supervisor: str | None = None
) -> dict[str, str]:
    """Write the states (their rows locked by the caller) in the current document version, with the
    columns read without parsing it; returns each row's new version (``xmin``, for the cache). A
    patient with no care team yet is in ``unassigned_supervisor``'s caseload (the intake queue)."""
    rows = await connection.fetch(
        """
        UPDATE patient_state AS p SET
            state = u.state, state_version = $10, counselor_id = u.counselor_id,
            supervisor_id = u.supervisor_id, level_of_care = u.level_of_care, high_water = u.high_water,
            last_checkin_at = u.last_checkin_at, events_applied = u.events_applied,
            late_events = u.late_events, updated_at = now()
        FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                    $7::timestamptz[], $8::bigint[], $9::bigint[])
            AS u(patient_id, state, counselor_id, supervisor_id, level_of_care, high_water,
                 last_checkin_at, events_applied, late_events)
        WHERE p.patient_id = u.patient_id
        RETURNING p.patient_id, p.xmin::text AS version
        """,
        [s.patient_id for s in states],
        [dump_state(s) for s in states],
        [s.care_team[0] if s.care_team else None for s in states],
        [s.care_team[1] if s.care_team else unassigned_supervisor for s in states],
        [s.level_of_care for s in states],
        [s.high_water for s in states],
        [s.last_checkin_at for s in states],
        [s.events_applied for s in states],
        [s.late_events for s in states],
        STATE_VERSION,
    )
    return {row["patient_id"]: row["version"] for row in rows}


async def write_summaries(connection: Connection, summaries: Sequence[CaseSummary]) -> None:
    """Write the patients' case summaries (the read model), replacing what was there."""
    await connection.execute(
        """
        INSERT INTO patient_summary AS s
            (patient_id, as_of, level_of_care, program_start, discharged, last_event_at,
             last_checkin_at, last_craving, consecutive_unexcused_misses, this_week, risk)
        SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::date[], $5::boolean[],
                             $6::timestamptz[], $7::timestamptz[], $8::int[], $9::int[], $10::jsonb[],
                             $11::jsonb[])
        ON CONFLICT (patient_id) DO UPDATE SET
            as_of = EXCLUDED.as_of, level_of_care = EXCLUDED.level_of_care,
            program_start = EXCLUDED.program_start, discharged = EXCLUDED.discharged,
            last_event_at = EXCLUDED.last_event_at, last_checkin_at = EXCLUDED.last_checkin_at,
            last_craving = EXCLUDED.last_craving,
            consecutive_unexcused_misses = EXCLUDED.consecutive_unexcused_misses,
            this_week = EXCLUDED.this_week, risk = EXCLUDED.risk, updated_at = now()
        """,
        [s.patient_id for s in summaries],
        [s.as_of for s in summaries],
        [s.level_of_care for s in summaries],
        [s.program_start for s in summaries],
        [s.discharged for s in summaries],
        [s.last_event_at for s in summaries],
        [s.last_checkin_at for s in summaries],
        [s.last_craving for s in summaries],
        [s.consecutive_unexcused_misses for s in summaries],
        [None if s.this_week is None else to_json(s.this_week).decode() for s in summaries],
        [None if s.risk is None else to_json(s.risk).decode() for s in summaries],
    )


CASE_SUMMARY_COLUMNS = (
    "s.as_of, s.level_of_care, s.program_start, s.discharged, s.last_event_at, s.last_checkin_at, "
    "s.last_craving, s.consecutive_unexcused_misses, s.this_week::text AS this_week, s.risk::text AS risk"
)
"""The ``patient_summary s`` columns :func:`case_summary_fields` reads."""


CASE_SUMMARY_FIELDS = tuple(f.name for f in fields(CaseSummary) if f.name != "patient_id")


def case_summary_fields(row: asyncpg.Record) -> dict[str, object]:
    """A ``patient_summary`` row (selected with :data:`CASE_SUMMARY_COLUMNS`) as plain values, its JSON
    columns parsed: the fields of :class:`~iopcare.domain.summary.CaseSummary` but the patient id."""
    values = {name: row[name] for name in CASE_SUMMARY_FIELDS}
    for name in ("this_week", "risk"):
        values[name] = None if row[name] is None else json.loads(row[name])
    return values


async def read_summaries(connection: Connection, patient_ids: Sequence[str]) -> dict[str, dict[str, object]]:
    """The stored case summaries of these patients (patients without one are left out)."""
    rows = await connection.fetch(
        f"SELECT s.patient_id, {CASE_SUMMARY_COLUMNS} FROM patient_summary s "
        "WHERE s.patient_id = ANY($1::text[])",
        list(patient_ids),
    )
    return {row["patient_id"]: case_summary_fields(row) for row in rows}


async def load_states(
    connection: Connection | asyncpg.Pool, patient_ids: Sequence[str] | None = None
) -> dict[str, PatientState]:
    """Current states (all, or the given patients), without locking: for tests, replays' comparisons."""
    if patient_ids is None:
        rows = await connection.fetch(
            "SELECT patient_id, state::text AS state, state_version FROM patient_state"
        )
    else:
        rows = await connection.fetch(
            "SELECT patient_id, state::text AS state, state_version FROM patient_state "
            "WHERE patient_id = ANY($1::text[])",
            list(patient_ids),
        )
    # A row still '{}' is a patient the course has seen but not changed (only a held report).
    return {r["patient_id"]: parse_state(r["patient_id"], r["state"], r["state_version"]) for r in rows}


__all__ = [
    "CASE_SUMMARY_COLUMNS",
    "CASE_SUMMARY_FIELDS",
    "StateCache",
    "case_summary_fields",
    "load_states",
    "lock_patient_states",
    "parse_state",
    "read_summaries",
    "write_states",
    "write_summaries",
]
