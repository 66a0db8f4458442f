"""What the counselors did about the alerts, as ``iopcare evaluate --database`` reads it: each alert
raised in a period with its first acknowledgement and the latest outcome recorded
(:mod:`iopcare.evaluation.acknowledgements` judges them). Codes and times only: no note is read."""

from __future__ import annotations

from datetime import datetime

from iopcare.contract import AcknowledgementOutcome
from iopcare.evaluation.acknowledgements import AcknowledgementRecord
from iopcare.store.alerts import Connection


async def acknowledgement_records(
    connection: Connection, since: datetime, until: datetime
) -> list[AcknowledgementRecord]:
    """Every alert raised in ``[since, until)``, oldest first, with how it was acknowledged."""
    rows = await connection.fetch(
        """
        SELECT a.rule_id, a.tier, a.raised_at, a.acknowledgement_outcome,
               (SELECT min(t.at) FROM alert_transitions t
                 WHERE t.alert_id = a.alert_id AND t.kind = 'acknowledged') AS acknowledged_at
        FROM alerts a
        WHERE a.raised_at >= $1 AND a.raised_at < $2
        ORDER BY a.raised_at, a.alert_id
        """,
        since,
        until,
    )
    return [
        AcknowledgementRecord(
            rule_id=row["rule_id"],
            tier=row["tier"],
            raised_at=row["raised_at"],
            acknowledged_at=row["acknowledged_at"],
            outcome=row["acknowledgement_outcome"],
        )
        for row in rows
    ]


async def outcomes_by_dedup_key(
    connection: Connection, since: datetime, until: datetime
) -> dict[str, AcknowledgementOutcome | None]:
    """The latest outcome of every alert raised in ``[since, until)``, by dedup key (how a replayed
    alert is matched to the live one)."""
    rows = await connection.fetch(
        "SELECT dedup_key, acknowledgement_outcome FROM alerts WHERE raised_at >= $1 AND raised_at < $2",
        since,
        until,
    )
    return {r["dedup_key"]: r["acknowledgement_outcome"] for r in rows}


__all__ = ["acknowledgement_records", "outcomes_by_dedup_key"]
