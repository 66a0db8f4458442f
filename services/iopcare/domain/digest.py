"""The counselor's daily digest: the digest-tier alerts gathered into one summary a day. Pure.

A digest-tier alert (a family no-show, a short week of meetings, a step-down to consider) is worth
knowing but not an interruption (docs/rules.md, "Tiers"). Once a day, at the clinic's hour
(``[calendar] digest_hour`` in the clinic's zone), each counselor with such alerts still live and
not yet in a digest gets one digest listing them: one inbox item and one webhook POST, acknowledged
in one step. An alert raised after a day's digest was made waits for the next day's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from iopcare.domain.rules.wording import count


@dataclass(frozen=True)
class DigestItem:
    """One alert in a digest, as the summary lists it."""

    alert_id: str
    patient_id: str
    rule_id: str
    title: str


def digest_time(day: date, hour: int, zone: tzinfo) -> datetime:
    """When ``day``'s digest is made: ``hour`` o'clock local time (on a day the clocks change, the
    zone decides what that hour is)."""
    return datetime.combine(day, time(hour), zone)


def due_day(now: datetime, hour: int, zone: tzinfo) -> date:
    """The latest local day whose digest time is at or before ``now``: today once the hour has come,
    else yesterday."""
    today = now.astimezone(zone).date()
    return today if digest_time(today, hour, zone) <= now else today - timedelta(days=1)


def headline(day: date, items: Sequence[DigestItem]) -> str:
    """``Daily summary for Mon 7 Dec: 5 items about 3 patients``."""
    patients = len({item.patient_id for item in items})
    return (
        f"Daily summary for {day.strftime('%a')} {day.day} {day.strftime('%b')}: "
        f"{count(len(items), 'item')} about {count(patients, 'patient')}"
    )


def by_rule(items: Sequence[DigestItem]) -> list[tuple[str, int]]:
    """How many items each rule contributed, most first (then by rule id)."""
    return sorted(Counter(item.rule_id for item in items).items(), key=lambda kv: (-kv[1], kv[0]))


__all__ = ["DigestItem", "by_rule", "digest_time", "due_day", "headline"]
