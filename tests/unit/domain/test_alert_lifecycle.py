"""The alert lifecycle: dedup, inhibition, supersession, escalation, snooze, resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from iopcare.contract import Severity
from iopcare.domain.alerts import DEFAULT_DEADLINES, SYSTEM, AlertError, PatientAlerts, alert_id_for
from iopcare.domain.signals import Clearance, Finding, Signal

PATIENT = "pt-alerts01"
NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)  # a Wednesday


def signal(
    rule: str, severity: Severity = "medium", episode: str = "e1", at: datetime = NOW, **extra: object
) -> Signal:
    return Signal(
        rule_id=rule,
        rule_version="1",
        severity=severity,
        episode=episode,
        title=f"{rule} title",
        explanation=f"{rule} explanation",
        recommended_action="call the patient",
        at=at,
        event_ids=(f"ev-{rule}-{at:%d%H%M%S}",),
        facts={"n": 1},
        **extra,  # type: ignore[arg-type]
    )


def take(alerts: PatientAlerts, *findings: Finding, now: datetime = NOW) -> list:
    return alerts.take(findings, pack_version="2026.1", now=now, deadline=DEFAULT_DEADLINES)


def test_a_burst_of_five_misses_in_one_episode_is_one_alert_updated_four_times() -> None:
    alerts = PatientAlerts(PATIENT)
    changes = [
        c
        for minute in range(5)
        for c in take(alerts, signal("missed_in_a_row", at=NOW + timedelta(days=minute)))
    ]
    assert [c.kind for c in changes] == ["created", "updated", "updated", "updated", "updated"]
    [alert] = alerts.alerts.values()
    assert alert.occurrences == 5
    assert alert.first_seen_at == NOW and alert.last_seen_at == NOW + timedelta(days=4)
    assert len(alert.event_ids) == 5
    # The deadline runs from the first trigger: repeats do not push it back.
    assert alert.escalate_at == NOW + timedelta(hours=24)


def test_a_new_episode_of_the_same_rule_is_a_new_alert() -> None:
    alerts = PatientAlerts(PATIENT)
    take(alerts, signal("missed_in_a_row", episode="run-1"), signal("missed_in_a_row", episode="run-2"))
    assert len(alerts.alerts) == 2


def test_a_pack_that_turns_inhibition_off_lets_lesser_alerts_notify_and_escalate() -> None:
    """``[lifecycle] critical_inhibits_lesser = false``: a critical alert leaves the others alone."""
    alerts = PatientAlerts(PATIENT)
    alerts.take(
        [signal("craving_high")], pack_version="x", now=NOW, deadline=DEFAULT_DEADLINES, inhibit=False
    )
    changes = alerts.take(
        [signal("safety", "critical")], pack_version="x", now=NOW, deadline=DEFAULT_DEADLINES, inhibit=False
    )
    assert [(c.kind, c.alert.rule_id) for c in changes] == [("created", "safety")]
    [later] = alerts.take(
        [signal("reported_use", "high")], pack_version="x", now=NOW, deadline=DEFAULT_DEADLINES, inhibit=False
    )
    assert later.alert.inhibited_by is None and later.alert.escalate_at == NOW + timedelta(hours=4)


def test_alert_ids_come_from_the_dedup_key_so_replays_agree() -> None:
    first, second = PatientAlerts(PATIENT), PatientAlerts(PATIENT)
    [a] = take(first, signal("craving_high"))
    [b] = take(second, signal("craving_high"), now=NOW + timedelta(hours=3))
    assert a.alert.alert_id == b.alert.alert_id == alert_id_for(f"{PATIENT}:craving_high:e1")


def test_an_open_critical_alert_inhibits_lesser_alerts_until_it_is_resolved() -> None:
    alerts = PatientAlerts(PATIENT)
    [craving] = take(alerts, signal("craving_high"))
    changes = take(alerts, signal("safety", "critical"))
    assert [(c.kind, c.alert.rule_id) for c in changes] == [
        ("created", "safety"),
        ("updated", "craving_high"),
    ]
    critical = changes[0].alert
    assert alerts.alerts[craving.alert.dedup_key].inhibited_by == critical.alert_id
    assert alerts.alerts[craving.alert.dedup_key].escalate_at is None
    [later] = take(alerts, signal("reported_use", "high"))
    assert later.alert.inhibited_by == critical.alert_id and later.alert.escalate_at is None

    # Nothing inhibited escalates, however long it waits.
    assert [c.alert.rule_id for c in alerts.due(NOW + timedelta(days=3), DEFAULT_DEADLINES)] == ["safety"]

    resolved_at = NOW + timedelta(days=3, hours=1)
    changes = alerts.resolve(
        critical.alert_id, "staff-c12", "safety plan reviewed", resolved_at, DEFAULT_DEADLINES
    )
    assert [c.kind for c in changes] == ["resolved", "updated", "updated"]
    assert all(c.alert.inhibited_by is None for c in changes[1:])
    use = alerts.alerts[later.alert.dedup_key]
    assert use.escalate_at == resolved_at + timedelta(hours=4)


def test_a_critical_alert_escalates_once_if_not_acknowledged_in_15_minutes() -> None:
    alerts = PatientAlerts(PATIENT)
    take(alerts, signal("safety", "critical"))
    assert alerts.due(NOW + timedelta(minutes=14, seconds=59), DEFAULT_DEADLINES) == []
    [escalation] = alerts.due(NOW + timedelta(minutes=20), DEFAULT_DEADLINES)
    assert (escalation.kind, escalation.actor, escalation.alert.escalated) == ("escalated", SYSTEM, True)
    assert escalation.at == NOW + timedelta(minutes=15)  # when it fell due, not when the sweep ran
    assert escalation.alert.state == "open"
    assert alerts.due(NOW + timedelta(hours=5), DEFAULT_DEADLINES) == []


def test_acknowledging_stops_escalation_and_repeats_only_count() -> None:
    alerts = PatientAlerts(PATIENT)
    [created] = take(alerts, signal("safety", "critical"))
    ack = alerts.acknowledge(created.alert.alert_id, "staff-c12", NOW + timedelta(minutes=5))
    assert (ack.kind, ack.actor, ack.from_state, ack.alert.state) == (
        "acknowledged",
        "staff-c12",
        "open",
        "acknowledged",
    )
    assert alerts.due(NOW + timedelta(hours=1), DEFAULT_DEADLINES) == []
    [repeat] = take(alerts, signal("safety", "critical", at=NOW + timedelta(minutes=30)))
    assert (repeat.kind, repeat.alert.state, repeat.alert.occurrences) == ("updated", "acknowledged", 2)


def test_a_snoozed_alert_comes_back_open_with_a_fresh_deadline() -> None:
    alerts = PatientAlerts(PATIENT)
    [created] = take(alerts, signal("reported_use", "high"))
    until = NOW + timedelta(hours=2)
    snooze = alerts.snooze(created.alert.alert_id, "staff-c12", until, "patient in session", NOW)
    assert (snooze.alert.state, snooze.reason) == ("snoozed", "patient in session")
    assert alerts.due(NOW + timedelta(hours=1), DEFAULT_DEADLINES) == []
    [back] = alerts.due(until, DEFAULT_DEADLINES)
    assert (back.kind, back.alert.state, back.alert.escalate_at) == (
        "updated",
        "open",
        until + timedelta(hours=4),
    )
    with pytest.raises(AlertError):
        alerts.snooze(created.alert.alert_id, "staff-c12", NOW, "already over", NOW + timedelta(hours=3))


def test_a_step_up_recommendation_resolves_the_engagement_alerts_it_summarizes() -> None:
    alerts = PatientAlerts(PATIENT)
    take(alerts, signal("reported_use", "high"), signal("missed_often", "high"), signal("craving_high"))
    changes = take(alerts, signal("step_up", "high", supersedes=("reported_use", "missed_often")))
    assert [(c.kind, c.alert.rule_id) for c in changes] == [
        ("created", "step_up"),
        ("resolved", "reported_use"),
        ("resolved", "missed_often"),
    ]
    assert changes[1].reason == "superseded by the step_up recommendation"
    assert {a.rule_id for a in alerts.alerts.values() if a.live} == {"step_up", "craving_high"}


def test_a_cleared_condition_resolves_its_alert_with_the_reason() -> None:
    alerts = PatientAlerts(PATIENT)
    take(alerts, signal("missed_in_a_row", episode="run-1"), signal("missed_in_a_row", episode="run-2"))
    [resolved] = take(
        alerts, Clearance("missed_in_a_row", "attended group on Thu 5 Mar", NOW, episode="run-1")
    )
    assert (resolved.alert.resolution, resolved.actor) == ("attended group on Thu 5 Mar", SYSTEM)
    assert len(take(alerts, Clearance("missed_in_a_row", "back on plan", NOW))) == 1


def test_a_resolved_episode_never_reopens() -> None:
    alerts = PatientAlerts(PATIENT)
    [created] = take(alerts, signal("craving_high"))
    alerts.resolve(created.alert.alert_id, "staff-c12", "discussed in session", NOW)
    assert take(alerts, signal("craving_high", at=NOW + timedelta(hours=1))) == []
    with pytest.raises(AlertError):
        alerts.acknowledge(created.alert.alert_id, "staff-c12", NOW)


def test_a_long_episode_renamed_by_its_rule_continues_its_alert_without_paging_again() -> None:
    # The rule's name for the episode moved on (its first triggers aged out of the state's history),
    # but the new trigger is within the rule's gap of the alert's last one: the same episode.
    gap = timedelta(days=14)
    alerts = PatientAlerts(PATIENT)
    [created] = take(alerts, signal("missed_often", "high", episode="m-1", continues_within=gap))
    ack = alerts.acknowledge(created.alert.alert_id, "staff-c12", NOW + timedelta(hours=1))
    later = NOW + timedelta(days=10)
    [update] = take(
        alerts, signal("missed_often", "high", episode="m-7", at=later, continues_within=gap), now=later
    )
    assert (update.kind, update.alert.alert_id, update.alert.state) == (
        "updated",
        ack.alert.alert_id,
        "acknowledged",
    )
    assert (update.alert.occurrences, update.alert.last_seen_at) == (2, later)
    # More than the gap after the last trigger: a new episode, a new alert.
    much_later = later + gap + timedelta(minutes=1)
    [new] = take(
        alerts,
        signal("missed_often", "high", episode="m-9", at=much_later, continues_within=gap),
        now=much_later,
    )
    assert new.kind == "created" and new.alert.dedup_key == f"{PATIENT}:missed_often:m-9"
    # Without a gap (a rule whose episodes are not chains) a new name is always a new alert.
    [other] = take(
        alerts, signal("missed_in_a_row", episode="r-1"), signal("missed_in_a_row", episode="r-2")
    )[1:]
    assert other.kind == "created"


def test_a_clearance_under_the_new_name_also_resolves_the_renamed_episode_once_it_is_over() -> None:
    gap = timedelta(days=14)
    alerts = PatientAlerts(PATIENT)
    take(alerts, signal("missed_often", "high", episode="m-1", continues_within=gap))
    recent = NOW + timedelta(days=20)
    take(alerts, signal("missed_often", "high", episode="m-5", at=recent, continues_within=gap), now=recent)
    # The first alert's last trigger is 20 days old: that episode is over, whatever its name became;
    # the second one (5 days old) is not.
    over = NOW + timedelta(days=25)
    [resolved] = take(
        alerts, Clearance("missed_often", "fewer misses", over, episode="m-2", continues_within=gap), now=over
    )
    assert (resolved.alert.dedup_key, resolved.alert.state) == (f"{PATIENT}:missed_often:m-1", "resolved")
    assert alerts.alerts[f"{PATIENT}:missed_often:m-5"].state == "open"


def test_only_a_live_alert_is_continued_under_a_new_name() -> None:
    # The processor loads a patient's live alerts (and resolved ones only by exact key), so a renamed
    # episode whose alert was resolved by hand opens a new one, live and in a replay alike.
    gap = timedelta(days=14)
    alerts = PatientAlerts(PATIENT)
    [created] = take(alerts, signal("craving_high", episode="c-1", continues_within=gap))
    alerts.resolve(created.alert.alert_id, "staff-c12", "discussed in session", NOW)
    later = NOW + timedelta(days=3)
    [new] = take(alerts, signal("craving_high", episode="c-4", at=later, continues_within=gap), now=later)
    assert new.kind == "created"


def test_low_severity_is_due_at_the_start_of_the_next_business_day() -> None:
    friday_afternoon = datetime(2026, 3, 6, 16, 30, tzinfo=UTC)
    assert DEFAULT_DEADLINES("low", friday_afternoon) == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    assert DEFAULT_DEADLINES("low", NOW) == datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
    assert DEFAULT_DEADLINES("info", NOW) is None
