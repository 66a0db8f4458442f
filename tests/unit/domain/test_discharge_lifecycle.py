"""Discharge ends the program's alerts: everything leaves the counselor's inbox with the discharge as
the reason, except an open safety alert, which is handed to the supervisor; the same whatever order
the discharge and the events before it arrive in."""

from __future__ import annotations

from datetime import datetime

from tests.unit.domain.rules.clinic import Patient, at

from iopcare.domain.alerts import Alert
from iopcare.domain.backtest import StreamReplay, run_backtest
from iopcare.rulepacks import DEFAULT_PACK


def _course() -> tuple[Patient, list]:
    patient = Patient()
    patient.enrolled()
    for day in range(10):
        patient.checkin(at(day, 20))
    crisis = patient.checkin(at(10, 20), safety=True)
    patient.checkin(at(11, 20), use=True)
    patient.session(at(12, 18), "missed")
    patient.session(at(14, 18), "missed")  # two in a row
    discharge = patient.discharged(at(16, 11))
    return patient, [crisis, discharge]


def _alerts(events: list, until: datetime) -> dict[str, Alert]:
    return {a.rule_id: a for a in run_backtest(events, DEFAULT_PACK, until=until).alerts.values()}


def test_discharge_resolves_the_alerts_and_hands_an_open_safety_alert_to_the_supervisor() -> None:
    patient, _ = _course()
    alerts = _alerts(sorted(patient.events, key=lambda e: e.time), until=at(20, 12))
    assert {"safety", "reported_use", "step_up"} <= set(alerts)  # the step-up summarized the misses
    for rule, alert in alerts.items():
        if rule == "safety":
            assert alert.live and alert.escalated  # with the supervisor, not closed
        else:
            assert alert.state == "resolved", rule
    # What was still live at discharge names it; the use report was summarized by the step-up before.
    assert alerts["step_up"].resolution == "patient discharged on 2026-03-18 (completed)"
    assert alerts["reported_use"].resolution == "superseded by the step_up recommendation"


def test_the_safety_alert_is_handed_over_once_with_the_reason() -> None:
    patient, _ = _course()
    replay = StreamReplay(DEFAULT_PACK)
    changes = [
        c
        for event in sorted(patient.events, key=lambda e: e.time)
        for _, fx in replay.feed(event)
        for c in fx.changes
    ]
    changes += [c for _, fx in replay.finish() for c in fx.changes]
    handed = [c for c in changes if c.alert.rule_id == "safety" and c.kind == "escalated"]
    # The critical alert escalated at its 15-minute deadline already; discharge does not repeat it.
    assert len(handed) == 1


def test_an_unescalated_safety_alert_is_escalated_at_discharge_with_the_reason() -> None:
    patient = Patient()
    patient.enrolled()
    patient.checkin(at(0, 20), safety=True)
    patient.discharged(at(0, 20, 5))  # within the 15-minute target
    replay = StreamReplay(DEFAULT_PACK)
    changes = [c for event in patient.events for _, fx in replay.feed(event) for c in fx.changes]
    (handed,) = [c for c in changes if c.kind == "escalated"]
    assert handed.reason == (
        "patient discharged on 2026-03-02 (completed): the open safety alert is handed to the supervisor"
    )


def test_a_discharge_that_arrives_before_a_late_event_ends_its_alert_the_same() -> None:
    patient = Patient()
    patient.enrolled()
    for day in range(10):
        patient.checkin(at(day, 20))
    patient.checkin(at(10, 20), safety=True)
    patient.session(at(12, 18), "missed")
    late = patient.session(at(14, 18), "missed")  # the second miss in a row ...
    discharge = patient.discharged(at(16, 11))
    in_order = sorted(patient.events, key=lambda e: e.time)
    arrived = [e for e in in_order if e is not late] + [late]  # ... recorded after the discharge
    clean, disordered = _alerts(in_order, until=at(20, 12)), _alerts(arrived, until=at(20, 12))
    assert "missed_in_a_row" in clean and discharge in patient.events

    def ends(alerts: dict[str, Alert]) -> dict[str, tuple[str, bool, str | None]]:
        return {rule: (a.state, a.escalated, a.resolution) for rule, a in alerts.items()}

    assert ends(disordered) == ends(clean)
    assert clean["missed_in_a_row"].resolution == "patient discharged on 2026-03-18 (completed)"
