"""The daily digest, the pure part: which day's digest is due, its headline and its parts by rule;
and its webhook body, which names no patient and no rule."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from iopcare.dispatcher.webhooks.policy import digest_body
from iopcare.domain.digest import DigestItem, by_rule, digest_time, due_day, headline

CHICAGO = ZoneInfo("America/Chicago")


def test_the_digest_of_a_day_is_due_from_the_clinics_hour_in_its_zone() -> None:
    # 08:00 in Chicago on 7 Dec is 14:00 UTC.
    assert digest_time(date(2026, 12, 7), 8, CHICAGO) == datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    assert due_day(datetime(2026, 12, 7, 13, 59, tzinfo=UTC), 8, CHICAGO) == date(2026, 12, 6)
    assert due_day(datetime(2026, 12, 7, 14, 0, tzinfo=UTC), 8, CHICAGO) == date(2026, 12, 7)
    # 02:00 UTC on 8 Dec is still 7 Dec in Chicago.
    assert due_day(datetime(2026, 12, 8, 2, 0, tzinfo=UTC), 8, CHICAGO) == date(2026, 12, 7)


def test_the_headline_counts_items_and_patients_and_the_parts_go_by_rule() -> None:
    items = [
        DigestItem("a1", "pt-1", "family_no_show", "Nobody came to family therapy"),
        DigestItem("a2", "pt-1", "fellowship_shortfall", "Week 3 below the meetings plan"),
        DigestItem("a3", "pt-2", "family_no_show", "Nobody came to family therapy"),
    ]
    assert headline(date(2026, 12, 7), items) == "Daily summary for Mon 7 Dec: 3 items about 2 patients"
    assert headline(date(2026, 12, 7), items[:1]) == "Daily summary for Mon 7 Dec: 1 item about 1 patient"
    assert by_rule(items) == [("family_no_show", 2), ("fellowship_shortfall", 1)]


def test_the_digest_webhook_says_how_many_and_where_never_who_or_why() -> None:
    summary = {
        "digest_id": "d-1",
        "counselor_id": "staff-c01",
        "for_day": "2026-12-07",
        "items": 3,
        "patients": 2,
        "url": "https://iop.example/inbox#digest-d-1",
        "ignored": "pt-1 family_no_show",
    }
    body = digest_body("delivery-1", datetime(2026, 12, 7, 14, tzinfo=UTC), summary)
    assert json.loads(body) == {
        "type": "iop.digest.notification",
        "id": "delivery-1",
        "created_at": "2026-12-07T14:00:00Z",
        "digest_id": "d-1",
        "counselor_id": "staff-c01",
        "for_day": "2026-12-07",
        "items": 3,
        "patients": 2,
        "url": "https://iop.example/inbox#digest-d-1",
    }
    assert body == digest_body("delivery-1", datetime(2026, 12, 7, 14, tzinfo=UTC), summary)  # retries
