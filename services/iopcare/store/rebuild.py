"""Rebuild patients' stored states from ``event_log``: find every difference, repair on request.

The event log holds every event the processor accepted, once; the state is a fold of them
(``domain/intake.py``), so it can always be computed again. :func:`rebuild_states` does that per
patient, under the patient's row lock (a batch for the same patient waits, and is then applied to the
repaired state), compares the result with the stored state field by field, and with ``apply``
writes the rebuilt state in the same transaction. The read model (``patient_summary``) is checked the
same way: the rebuilt state's summary, judged at the stored summary's time, must be what is stored.
It decides nothing itself: the fold is the
domain's, and the events are taken in the order the processor took them (the order they were
committed: ``received_at``, then partition and offset), so arrival-dependent counts (late events)
come out as they did live.

What it reports names patients (pseudonymous ids) and state fields, never a field's value.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from pydantic_core import to_json

from iopcare.contract import decode_event
from iopcare.domain.engagement import PatientState, Tuning
from iopcare.domain.intake import replay
from iopcare.domain.rules import RulePack
from iopcare.domain.summary import CaseSummary, summarize
from iopcare.rulepacks import DEFAULT_PACK
from iopcare.store.patients import lock_patient_states, read_summaries, write_states, write_summaries


@dataclass(frozen=True)
class StateDifference:
    """One patient whose stored state is not what its events fold to."""

    patient_id: str
    fields: tuple[str, ...]  # the state fields that differ ("(missing)": no stored state at all),
    # and "summary.<field>" for the read model's ("summary.(missing)": no summary stored)
    repaired: bool


@dataclass
class RebuildReport:
    patients: int = 0  # patients checked
    events: int = 0  # events folded
    differences: list[StateDifference] = dataclasses.field(default_factory=list)


def differing_fields(stored: PatientState | None, rebuilt: PatientState) -> tuple[str, ...]:
    """The state fields where ``stored`` and ``rebuilt`` differ (``(missing)`` when nothing is stored)."""
    if stored is None:
        return ("(missing)",)
    return tuple(
        f.name for f in dataclasses.fields(rebuilt) if getattr(stored, f.name) != getattr(rebuilt, f.name)
    )


def differing_summary_fields(stored: dict[str, object] | None, rebuilt: CaseSummary) -> tuple[str, ...]:
    """The read model's fields where the stored summary and the rebuilt one differ, as JSON values."""
    if stored is None:
        return ("summary.(missing)",)
    mine = json.loads(to_json(rebuilt))
    theirs = json.loads(to_json(stored))
    return tuple(f"summary.{name}" for name in theirs if theirs[name] != mine[name])


async def rebuild_states(
    pool: asyncpg.Pool,
    *,
    patient_ids: Sequence[str] | None = None,
    apply: bool = False,
    tuning: Tuning | None = None,
    pack: RulePack = DEFAULT_PACK,
    chunk: int = 50,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildReport:
    """Rebuild the states of ``patient_ids`` (default: every patient in the event log), ``chunk``
    patients per transaction; with ``apply``, write each rebuilt state (and summary) that differs."""
    report = RebuildReport()
    async with pool.acquire() as connection:
        if patient_ids is None:
            rows = await connection.fetch("SELECT DISTINCT patient_id FROM event_log ORDER BY patient_id")
            patient_ids = [row["patient_id"] for row in rows]
    ids = sorted(set(patient_ids))
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        async with pool.acquire() as connection, connection.transaction():
            stored = await lock_patient_states(connection, part, create=False)
            summaries = await read_summaries(connection, part)
            events = await connection.fetch(
                "SELECT payload::text AS payload FROM event_log WHERE patient_id = ANY($1::text[]) "
                "ORDER BY received_at, kafka_partition, kafka_offset, source, event_id",
                part,
            )
            report.events += len(events)
            rebuilt = replay(
                (decode_event(row["payload"].encode()) for row in events),
                pack.tuning if tuning is None else tuning,
            )
            repair: list[PatientState] = []
            resummarize: list[CaseSummary] = []
            for patient_id in part:
                state = rebuilt.get(patient_id)
                if state is None:
                    continue  # no events logged: nothing to rebuild from (an unknown id)
                report.patients += 1
                fields = differing_fields(stored.get(patient_id), state)
                if fields:
                    repair.append(state)
                was = summaries.get(patient_id)
                as_of = was["as_of"] if was is not None else state.high_water
                summary = summarize(state, as_of if isinstance(as_of, datetime) else None, pack)
                summary_fields = differing_summary_fields(was, summary)
                if summary_fields:
                    resummarize.append(summary)
                if fields or summary_fields:
                    report.differences.append(
                        StateDifference(patient_id, fields + summary_fields, repaired=apply)
                    )
            if apply and repair:
                missing = [s.patient_id for s in repair if s.patient_id not in stored]
                if missing:
                    await lock_patient_states(connection, missing, create=True)
                await write_states(connection, repair)
            if apply and resummarize:
                await write_summaries(connection, resummarize)
        if progress is not None:
            progress(min(start + chunk, len(ids)), len(ids))
    return report


__all__ = [
    "RebuildReport",
    "StateDifference",
    "differing_fields",
    "differing_summary_fields",
    "rebuild_states",
]
