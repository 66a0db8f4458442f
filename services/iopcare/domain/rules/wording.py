"""How the rules say things: dates as a counselor writes them ("Tue 4 Mar"), counts, short lists.

Locale-independent on purpose: the same state gives the same words on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, tzinfo

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def day(when: date | datetime, zone: tzinfo) -> str:
    """``Tue 4 Mar``: the local date of an instant (or a calendar date as it is)."""
    local = when.astimezone(zone).date() if isinstance(when, datetime) else when
    return f"{_WEEKDAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]}"


def day_time(when: datetime, zone: tzinfo) -> str:
    """``Tue 4 Mar 19:42`` in the clinic's time zone."""
    local = when.astimezone(zone)
    date_part = f"{_WEEKDAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]}"
    return f"{date_part} {local.hour:02d}:{local.minute:02d}"


def count(n: int | float, singular: str, plural: str | None = None) -> str:
    """``1 session``, ``2 sessions``, ``1.5 hours``."""
    shown = f"{n:g}" if isinstance(n, float) else str(n)
    return f"{shown} {singular if n == 1 else (plural or singular + 's')}"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def listing(items: Sequence[str], keep: int = 8) -> str:
    """``a, b and c``; a long list keeps its last ``keep`` items and says how many came before."""
    if len(items) > keep:
        return f"{', '.join(items[-keep:])} (and {len(items) - keep} earlier)"
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def fit(text: str, limit: int) -> str:
    """The text, cut to ``limit`` characters with an ellipsis if it is longer (contract limits)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
