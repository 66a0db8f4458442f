"""The synthetic cohort: deterministic, valid under the contract, each archetype looks like itself, and
what the events show agrees with the outcomes drawn beside them."""

from __future__ import annotations

import io
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from iopcare.contract import (
    CheckInSubmitted,
    CloudEvent,
    ConsentGranted,
    ConsentRevoked,
    FamilyTherapyAttended,
    FamilyTherapyCancelled,
    FamilyTherapyNoShow,
    FellowshipAttended,
    LevelOfCareChanged,
    PatientDischarged,
    PatientEnrolled,
    SessionAttended,
    SessionMissed,
    SessionScheduled,
    SoberLivingReported,
    ToxicologyResulted,
    decode_event,
    encode_event,
)
from iopcare.evaluation.outcomes import OutcomesError, PatientOutcome, read_outcomes, write_outcomes
from iopcare.simulation import (
    ARCHETYPES,
    CohortPatient,
    cohort_outcomes,
    cohort_roster,
    generate_cohort,
    iter_cohort,
    write_ndjson,
)

SEED = 20250303
START = date(2025, 3, 3)
PATIENTS = 80  # at the default mix: 32 steady, 16 improving, 16 disengaging, 12 relapsing, 4 crisis
Events = list[CloudEvent[Any]]


@pytest.fixture(scope="module")
def cohort() -> Events:
    return generate_cohort(PATIENTS, seed=SEED, start=START)


@pytest.fixture(scope="module")
def roster() -> list[CohortPatient]:
    return cohort_roster(PATIENTS, seed=SEED)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, PatientOutcome]:
    return {o.patient_id: o for o in cohort_outcomes(PATIENTS, seed=SEED, start=START)}


@pytest.fixture(scope="module")
def by_patient(cohort: Events) -> dict[str, Events]:
    streams: dict[str, Events] = defaultdict(list)
    for event in cohort:
        streams[event.subject].append(event)
    return dict(streams)


def _of(roster: list[CohortPatient], archetype: str) -> list[CohortPatient]:
    patients = [p for p in roster if p.archetype == archetype]
    assert patients, f"the cohort has no {archetype} patient"
    return patients


def _checkins(events: Events) -> list[CheckInSubmitted]:
    return [e for e in events if isinstance(e, CheckInSubmitted)]


def _safety_signal(checkin: CheckInSubmitted) -> bool:
    d = checkin.data
    return d.safety_concern or (d.phq9_item9 or 0) > 0 or d.cssrs_positive is True


def _unexpected_positives(events: Events) -> list[ToxicologyResulted]:
    return [e for e in events if isinstance(e, ToxicologyResulted) and e.data.unexpected_positives()]


def _program_week(when: datetime | date) -> int:
    day = when.date() if isinstance(when, datetime) else when
    return (day - START).days // 7


def _end_day(events: Events) -> int:
    discharges = [e for e in events if isinstance(e, PatientDischarged)]
    return (discharges[0].data.discharged_on - START).days if discharges else 90


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_events() -> None:
    first = [encode_event(e) for e in generate_cohort(25, seed=7, start=START)]
    second = [encode_event(e) for e in generate_cohort(25, seed=7, start=START)]
    assert first == second


def test_different_seed_gives_a_different_cohort() -> None:
    first = [encode_event(e) for e in generate_cohort(25, seed=7, start=START)]
    second = [encode_event(e) for e in generate_cohort(25, seed=8, start=START)]
    assert first != second
    assert not {e.id for e in map(decode_event, first)} & {e.id for e in map(decode_event, second)}


def test_iter_cohort_yields_the_same_events_as_generate_cohort() -> None:
    assert list(iter_cohort(10, seed=3, start=START, days=30)) == generate_cohort(
        10, seed=3, start=START, days=30
    )


def test_roster_matches_the_generated_patients(cohort: Events, roster: list[CohortPatient]) -> None:
    enrolled = {e.subject: e for e in cohort if isinstance(e, PatientEnrolled)}
    assert set(enrolled) == {p.patient_id for p in roster}
    for patient in roster:
        assert enrolled[patient.patient_id].data.counselor_id == patient.counselor_id
        assert enrolled[patient.patient_id].data.supervisor_id == patient.supervisor_id


# --- validity and shape ------------------------------------------------------------------------


def test_every_event_is_valid_under_the_contract(cohort: Events) -> None:
    for event in cohort:
        assert decode_event(encode_event(event), key=event.subject) == event


def test_events_are_sorted_by_event_time(cohort: Events) -> None:
    times = [e.time for e in cohort]
    assert times == sorted(times)


def test_event_ids_are_unique_per_source(cohort: Events) -> None:
    keys = [e.idempotency_key for e in cohort]
    assert len(keys) == len(set(keys))


def test_every_patient_is_enrolled_once_as_their_first_event(by_patient: dict[str, Events]) -> None:
    for events in by_patient.values():
        assert isinstance(events[0], PatientEnrolled)
        assert sum(isinstance(e, PatientEnrolled) for e in events) == 1
        assert all(e.time > events[0].time for e in events[1:])
        enrolment = events[0].data
        assert enrolment.level_of_care == "2.1"
        assert enrolment.program_start == START
        assert (enrolment.weekly_plan.group_sessions, enrolment.weekly_plan.individual_sessions) == (4, 1)
        assert (enrolment.weekly_plan.hours, enrolment.weekly_plan.fellowship_meetings) == (9, 2)


def test_ids_are_pseudonymous_and_caseloads_are_about_twelve(roster: list[CohortPatient]) -> None:
    assert all(re.fullmatch(r"p-[0-9a-f]{10}", p.patient_id) for p in roster)
    assert len({p.patient_id for p in roster}) == len(roster)
    caseloads = Counter(p.counselor_id for p in roster)
    assert all(re.fullmatch(r"c-\d{2}", c) for c in caseloads)
    assert max(caseloads.values()) <= 12
    assert max(caseloads.values()) - min(caseloads.values()) <= 1
    assert all(re.fullmatch(r"s-\d{2}", p.supervisor_id) for p in roster)


def test_archetypes_are_allotted_to_the_default_mix(roster: list[CohortPatient]) -> None:
    assert Counter(p.archetype for p in roster) == {
        "steady": 32,
        "improving": 16,
        "disengaging": 16,
        "relapsing": 12,
        "crisis": 4,
    }


def test_archetype_mix_selects_who_is_generated() -> None:
    assert {p.archetype for p in cohort_roster(5, seed=1, archetype_mix={"crisis": 1.0})} == {"crisis"}
    with pytest.raises(ValueError, match="unknown archetypes"):
        cohort_roster(5, seed=1, archetype_mix={"chaotic": 1.0})
    with pytest.raises(ValueError):
        cohort_roster(5, seed=1, archetype_mix={"steady": -1.0, "crisis": 2.0})


def test_counts_are_plausible(cohort: Events, by_patient: dict[str, Events]) -> None:
    stayed = [len(events) for events in by_patient.values() if _end_day(events) >= 89]
    assert min(stayed) >= 150 and max(stayed) <= 400
    assert min(len(events) for events in by_patient.values()) >= 80  # even those who left early
    assert 200 <= len(cohort) / PATIENTS <= 320
    types = Counter(type(e).__name__ for e in cohort)
    assert types["SessionScheduled"] == types["SessionAttended"] + types["SessionMissed"]
    assert 0.75 <= types["SessionAttended"] / types["SessionScheduled"] <= 0.95
    assert 0.6 <= types["CheckInSubmitted"] / (PATIENTS * 90) <= 1.0  # dropouts stop checking in
    assert types["PatientDischarged"] >= 1 and types["LevelOfCareChanged"] >= 1


def test_at_most_one_checkin_a_day(by_patient: dict[str, Events]) -> None:
    for events in by_patient.values():
        days = [e.time.date() for e in _checkins(events)]
        assert len(days) == len(set(days))


def test_random_screens_are_at_least_weekly_and_never_within_three_days(
    by_patient: dict[str, Events],
) -> None:
    for events in by_patient.values():
        collected = sorted(
            e.data.collected_at for e in events if isinstance(e, ToxicologyResulted) and e.data.random
        )
        gaps = [(b.date() - a.date()).days for a, b in pairwise(collected)]
        assert gaps and all(3 <= gap <= 7 for gap in gaps)
        for e in events:
            if isinstance(e, ToxicologyResulted):
                assert e.time > e.data.collected_at  # resulted after collection


def test_session_outcomes_follow_their_schedule(by_patient: dict[str, Events]) -> None:
    for events in by_patient.values():
        scheduled = {e.data.session_id: e for e in events if isinstance(e, SessionScheduled)}
        for e in events:
            if isinstance(e, SessionAttended | SessionMissed):
                plan = scheduled[e.data.session_id]
                assert plan.time < e.data.starts_at < e.time
                assert (plan.data.kind, plan.data.starts_at) == (e.data.kind, e.data.starts_at)


def test_groups_run_four_times_a_week_with_weekly_individual_therapy(by_patient: dict[str, Events]) -> None:
    for events in by_patient.values():
        per_week: dict[int, Counter[str]] = defaultdict(Counter)
        for e in events:
            if isinstance(e, SessionScheduled):
                per_week[_program_week(e.data.starts_at)][e.data.kind] += 1
        full_weeks = range(1, _end_day(events) // 7)
        assert all(per_week[w]["group"] == 4 and per_week[w]["individual"] >= 1 for w in full_weeks)


def test_third_parties_report_only_under_an_active_consent(by_patient: dict[str, Events]) -> None:
    for events in by_patient.values():
        granted: dict[str, datetime] = {}
        revoked: dict[str, datetime] = {}
        for e in events:
            if isinstance(e, ConsentGranted):
                granted[e.data.recipient_id] = e.time
            elif isinstance(e, ConsentRevoked):
                revoked[e.data.recipient_id] = e.time
            elif e.source.startswith(("house.", "family.")):
                recipient = e.source.split(".", 1)[1]
                assert recipient in granted and granted[recipient] < e.time
                assert recipient not in revoked


def test_nothing_but_late_results_follow_a_discharge(by_patient: dict[str, Events]) -> None:
    for events in by_patient.values():
        discharges = [i for i, e in enumerate(events) if isinstance(e, PatientDischarged)]
        if discharges:
            after = events[discharges[0] + 1 :]
            assert all(isinstance(e, ToxicologyResulted | ConsentRevoked) for e in after)


# --- archetype signatures ----------------------------------------------------------------------


def _first_lapse(outcome: PatientOutcome) -> int | None:
    starts = [(lapse.start - START).days for lapse in outcome.lapses if not lapse.before_intake]
    return min(starts) if starts else None


def test_relapsing_patients_mostly_lapse_often_after_rising_craving_and_then_miss_sessions(
    roster: list[CohortPatient], by_patient: dict[str, Events], outcomes: dict[str, PatientOutcome]
) -> None:
    lapsed = rising = missing = 0
    relapsing = _of(roster, "relapsing")
    for patient in relapsing:
        first = _first_lapse(outcomes[patient.patient_id])
        if first is None:
            continue
        lapsed += 1
        events = by_patient[patient.patient_id]
        # Craving in the five days before the lapse is well above the patient's first three weeks.
        early = [c.data.craving for c in _checkins(events) if (c.time.date() - START).days < 21]
        before = [
            c.data.craving for c in _checkins(events) if first - 5 <= (c.time.date() - START).days < first
        ]
        rising += bool(early and before and sum(before) / len(before) >= sorted(early)[len(early) // 2] + 1.5)
        after = [
            e
            for e in events
            if isinstance(e, SessionMissed)
            and not e.data.excused
            and 0 <= (e.data.starts_at.date() - START).days - first <= 14
        ]
        missing += len(after) >= 1
    assert lapsed >= 0.75 * len(relapsing)
    # The latent risk climbs before a lapse, but check-ins thin out as it does: about half show it.
    assert rising >= 0.5 * lapsed and missing >= 0.6 * lapsed, (lapsed, rising, missing)


def test_use_shows_only_during_a_lapse_in_reports_and_screens(
    by_patient: dict[str, Events], outcomes: dict[str, PatientOutcome]
) -> None:
    reported = screened = 0
    for patient_id, events in by_patient.items():
        lapses = outcomes[patient_id].lapses

        def during(day: date, after: int = 0, lapses: Any = lapses) -> bool:
            return any(lapse.start <= day <= lapse.end + timedelta(days=after) for lapse in lapses)

        for c in _checkins(events):
            if c.data.substance_use_reported:
                reported += 1
                assert during(c.time.date()), (patient_id, c.time)
        for e in _unexpected_positives(events):
            screened += 1
            assert during(e.data.collected_at.date(), after=3), (patient_id, e.data.collected_at)
    assert reported >= 10 and screened >= 10


def test_positive_screens_leave_prescribed_substances_out() -> None:
    relapsing = generate_cohort(30, seed=SEED, start=START, archetype_mix={"relapsing": 1.0})
    on_moud = [e for e in _unexpected_positives(relapsing) if e.data.prescribed_substances]
    assert on_moud, "expected a positive screen of a patient on buprenorphine"
    for e in on_moud:
        assert "buprenorphine" not in e.data.unexpected_positives()


def test_step_ups_follow_a_sustained_lapse(cohort: Events, outcomes: dict[str, PatientOutcome]) -> None:
    changes = [e for e in cohort if isinstance(e, LevelOfCareChanged)]
    assert changes
    for change in changes:
        long_lapses = [lapse for lapse in outcomes[change.subject].lapses if lapse.use_days >= 3]
        assert long_lapses and long_lapses[0].start + timedelta(days=10) <= change.time.date()
        assert (change.data.from_level, change.data.to_level, change.data.reason_code) == (
            "2.1",
            "2.5",
            "step_up",
        )


def test_crisis_patients_have_a_safety_checkin(
    roster: list[CohortPatient], by_patient: dict[str, Events], outcomes: dict[str, PatientOutcome]
) -> None:
    for patient in _of(roster, "crisis"):
        crises = outcomes[patient.patient_id].crises
        checkins = [c for c in _checkins(by_patient[patient.patient_id]) if _safety_signal(c)]
        assert bool(crises) == bool(checkins)
        if crises:
            assert checkins[0].time.date() == crises[0]


def test_only_crisis_patients_raise_safety_signals(
    roster: list[CohortPatient], by_patient: dict[str, Events]
) -> None:
    for patient in roster:
        if patient.archetype != "crisis":
            assert not any(_safety_signal(c) for c in _checkins(by_patient[patient.patient_id]))


def test_steady_patients_attend_and_show_no_use_unless_they_lapse(
    roster: list[CohortPatient], by_patient: dict[str, Events], outcomes: dict[str, PatientOutcome]
) -> None:
    attended = scheduled = 0
    cravings: Counter[int] = Counter()
    steady = _of(roster, "steady")
    without = [p for p in steady if not outcomes[p.patient_id].lapses]
    assert len(without) >= 0.75 * len(steady)  # about one steady patient in ten lapses
    for patient in without:
        events = by_patient[patient.patient_id]
        assert not any(c.data.substance_use_reported for c in _checkins(events))
        assert not _unexpected_positives(events)
        assert not any(isinstance(e, SoberLivingReported) and e.data.kind == "positive_test" for e in events)
        cravings.update(c.data.craving for c in _checkins(events))
        attended += sum(isinstance(e, SessionAttended) for e in events)
        scheduled += sum(isinstance(e, SessionScheduled) for e in events)
    assert attended / scheduled >= 0.88
    # Mostly 0-4, a 5 or 6 now and then (the ordinary noise a fixed-delta rule pages on), rarely more.
    total = sum(cravings.values())
    assert sum(n for c, n in cravings.items() if c <= 4) / total >= 0.9
    assert sum(n for c, n in cravings.items() if c >= 7) / total <= 0.01


def test_improving_patients_who_stay_clean_meet_the_plan_in_their_last_four_weeks(
    roster: list[CohortPatient], by_patient: dict[str, Events], outcomes: dict[str, PatientOutcome]
) -> None:
    weeks = met = 0
    for patient in _of(roster, "improving"):
        outcome = outcomes[patient.patient_id]
        if outcome.dropout is not None or any(
            not lapse.before_intake and (lapse.end - START).days >= 28 for lapse in outcome.lapses
        ):
            continue
        events = by_patient[patient.patient_id]
        last_weeks = range(_end_day(events) // 7 - 4, _end_day(events) // 7)
        for week in last_weeks:
            this_week = [
                e
                for e in events
                if _program_week(e.data.starts_at if isinstance(e, SessionAttended) else e.time) == week
            ]
            sessions = [e for e in this_week if isinstance(e, SessionAttended)]
            groups = sum(e.data.kind == "group" for e in sessions)
            individual = sum(e.data.kind == "individual" for e in sessions)
            fellowship = sum(isinstance(e, FellowshipAttended) for e in this_week)
            checkins = _checkins(this_week)
            weeks += 1
            met += groups >= 4 and individual >= 1 and fellowship >= 2
            assert not any(c.data.substance_use_reported for c in checkins)
            assert not _unexpected_positives(this_week)
    assert weeks >= 20 and met >= 0.7 * weeks, (weeks, met)


def test_disengaging_patients_fade_and_fall_silent(
    roster: list[CohortPatient], by_patient: dict[str, Events]
) -> None:
    early: Counter[bool] = Counter()
    late: Counter[bool] = Counter()
    family_misses = 0
    for patient in _of(roster, "disengaging"):
        events = by_patient[patient.patient_id]
        for e in events:
            if isinstance(e, SessionAttended | SessionMissed):
                week = _program_week(e.data.starts_at)
                if week <= 1:
                    early[isinstance(e, SessionAttended)] += 1
                elif week >= 7:
                    late[isinstance(e, SessionAttended)] += 1
        family_misses += sum(isinstance(e, FamilyTherapyNoShow | FamilyTherapyCancelled) for e in events)
        times = [c.time for c in _checkins(events)]
        assert any(b - a >= timedelta(hours=72) for a, b in pairwise(times))
    assert early[True] / sum(early.values()) >= 0.8
    assert late[True] / sum(late.values()) <= 0.5
    assert family_misses >= 3


def test_left_against_advice_follows_a_dropout_and_completion_is_on_the_last_day(
    cohort: Events, outcomes: dict[str, PatientOutcome]
) -> None:
    discharges = [e for e in cohort if isinstance(e, PatientDischarged)]
    dispositions = Counter(e.data.disposition for e in discharges)
    assert dispositions["completed"] >= 1 and dispositions["left_against_advice"] >= 1
    for e in discharges:
        dropout = outcomes[e.subject].dropout
        if e.data.disposition == "left_against_advice":
            assert dropout is not None and 7 <= (e.data.discharged_on - dropout).days <= 14
        else:
            assert e.data.disposition == "completed" and dropout is None
            assert e.data.discharged_on == START + timedelta(days=89)


def test_outcomes_are_drawn_at_rates_near_the_published_ones() -> None:
    # docs/cohort.md: about 40-60 % lapse (NIDA), about a quarter drop out (TEDS IOP discharges).
    outcomes = cohort_outcomes(500, seed=SEED, start=START)
    lapsed = sum(any(not lapse.before_intake for lapse in o.lapses) for o in outcomes) / 500
    dropped = sum(o.dropout is not None for o in outcomes) / 500
    assert 0.35 <= lapsed <= 0.6 and 0.15 <= dropped <= 0.3, (lapsed, dropped)


def test_outcomes_round_trip_through_their_file(tmp_path: Path) -> None:
    outcomes = cohort_outcomes(20, seed=3, start=START)
    path = tmp_path / "outcomes.jsonl"
    assert write_outcomes(outcomes, path) == 20
    assert list(read_outcomes(path)) == outcomes
    path.write_text('{"patient_id": "p-1", "program_start": "2025-03-03", "observed_days": 0}\n')
    with pytest.raises(OutcomesError, match=r"outcomes.jsonl:1: not a patient outcome \(observed_days"):
        list(read_outcomes(path))


def test_family_therapy_is_attended_by_most_patients(cohort: Events) -> None:
    assert len({e.subject for e in cohort if isinstance(e, FamilyTherapyAttended)}) >= PATIENTS // 2


# --- time and output ---------------------------------------------------------------------------


def test_a_start_datetime_keeps_its_time_zone_and_window() -> None:
    clinic = ZoneInfo("America/New_York")
    start = datetime(2025, 3, 3, 8, 30, tzinfo=clinic)  # US daylight saving starts on 9 March
    events = generate_cohort(6, seed=5, start=start, days=14, archetype_mix={"steady": 1.0})
    assert all(start <= e.time < start.replace(hour=0, minute=0) + timedelta(days=14) for e in events)
    group_hours = {
        e.data.starts_at.astimezone(clinic).hour
        for e in events
        if isinstance(e, SessionScheduled) and e.data.kind == "group"
    }
    assert group_hours == {18, 10}  # evening groups stay at 18:00 local across the clock change


def test_a_date_start_means_midnight_utc() -> None:
    events = generate_cohort(3, seed=5, start=START, days=7)
    assert min(e.time for e in events) >= datetime(2025, 3, 3, tzinfo=UTC)
    assert max(e.time for e in events) < datetime(2025, 3, 10, tzinfo=UTC)


def test_write_ndjson_writes_one_decodable_event_per_line(tmp_path: Path) -> None:
    events = generate_cohort(3, seed=9, start=START, days=14)
    path = tmp_path / "cohort.ndjson"
    assert write_ndjson(events, path) == len(events)
    lines = path.read_bytes().splitlines()
    assert [decode_event(line) for line in lines] == events
    binary, text = io.BytesIO(), io.StringIO()
    write_ndjson(events, binary)
    write_ndjson(iter(events), text)
    assert binary.getvalue() == path.read_bytes() == text.getvalue().encode("utf-8")


def test_every_archetype_can_be_generated_alone() -> None:
    for archetype in ARCHETYPES:
        events = generate_cohort(2, seed=11, start=START, days=90, archetype_mix={archetype: 1.0})
        assert sum(isinstance(e, PatientEnrolled) for e in events) == 2
