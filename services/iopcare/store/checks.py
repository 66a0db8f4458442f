"""Absence checks in Postgres (``absence_checks``): the checks a patient's course scheduled, and when
each fired. The course decides (``domain/course.py``); this module reads and writes what it decided."""

from __future__ import annotations

import asyncpg

from iopcare.domain.absence import AbsenceCheck
from iopcare.domain.course import PROGRAM_CHECK_KINDS

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


async def load_checks(
    connection: Connection, patient_ids: list[str]
) -> dict[str, tuple[list[AbsenceCheck], list[str]]]:
    """Per patient: the checks scheduled and not fired, and the keys of fired program checks."""
    rows = await connection.fetch(
        "SELECT patient_id, check_key, kind, due_at, fired_at IS NOT NULL AS fired FROM absence_checks "
        "WHERE patient_id = ANY($1::text[]) AND (fired_at IS NULL OR kind = ANY($2::text[]))",
        patient_ids,
        sorted(PROGRAM_CHECK_KINDS),
    )
    checks: dict[str, tuple[list[AbsenceCheck], list[str]]] = {}
    for row in rows:
        pending, fired = checks.setdefault(row["patient_id"], ([], []))
        if row["fired"]:
            fired.append(row["check_key"])
        else:
            pending.append(AbsenceCheck(row["due_at"], row["check_key"], row["kind"]))
    return checks


async def write_checks(
    connection: Connection,
    added: list[tuple[str, AbsenceCheck]],
    dropped: list[tuple[str, AbsenceCheck]],
    fired: list[tuple[str, AbsenceCheck, bool]],
) -> None:
    """Add the checks the courses scheduled, mark those fired, and drop the unfired ones they
    cancelled (a check-in supersedes the pending silence checks)."""
    if added:
        await connection.execute(
            """
            INSERT INTO absence_checks (patient_id, check_key, kind, due_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
            ON CONFLICT (patient_id, check_key) DO NOTHING
            """,
            [pid for pid, _ in added],
            [c.key for _, c in added],
            [c.kind for _, c in added],
            [c.due_at for _, c in added],
        )
    if fired:
        await _mark_fired(connection, [(pid, c.key, signalled) for pid, c, signalled in fired])
    if dropped:
        await connection.execute(
            """
            DELETE FROM absence_checks AS a
            USING unnest($1::text[], $2::text[]) AS d(patient_id, check_key)
            WHERE a.patient_id = d.patient_id AND a.check_key = d.check_key AND a.fired_at IS NULL
            """,
            [pid for pid, _ in dropped],
            [c.key for _, c in dropped],
        )


async def _mark_fired(connection: Connection, fired: list[tuple[str, str, bool]]) -> None:
    await connection.execute(
        """
        UPDATE absence_checks AS a SET fired_at = now(), signalled = f.signalled
        FROM unnest($1::text[], $2::text[], $3::boolean[]) AS f(patient_id, check_key, signalled)
        WHERE a.patient_id = f.patient_id AND a.check_key = f.check_key
        """,
        [pid for pid, _, _ in fired],
        [key for _, key, _ in fired],
        [signalled for _, _, signalled in fired],
    )


__all__ = ["load_checks", "write_checks"]
