"""Synthetic cohorts: realistic, deterministic event streams of an IOP for demos, tests and benchmarks.

A cohort is a set of fictional patients who all enrol on day 0 of a ~90-day intensive outpatient
program at ASAM level 2.1 (4 groups, 1 individual session, 9 hours and 2 fellowship meetings a
week). Each patient follows one *archetype*, the kind of course the default rule pack is meant to
notice:

- ``steady``: attends ~95 %, low craving, no use, negative screens; never a safety signal.
- ``improving``: a shaky first month, then meets the plan every week with craving <= 3, so that by
  the end they are step-down eligible (>= 4 compliant weeks, no use, negative screens).
- ``disengaging``: attendance falls from ~90 % to ~30 % from week 3, check-ins thin out with silent
  gaps of 3+ days, family therapy is cancelled or missed; some leave against advice.
- ``relapsing``: fine for 3-5 weeks, then craving rises by >= 3 over consecutive check-ins, use is
  reported, screens turn positive, two sessions in a row are missed, the house (if any) reports a
  positive test; about half are stepped up to level 2.5.
- ``crisis``: at some point a check-in with a safety concern, PHQ-9 item 9 > 0 and/or a positive
  C-SSRS screener, followed by a safety-planning session.

The generator is deterministic: everything (patient ids, event ids, times, values) derives from
``seed`` through ``random.Random``, never from the clock or ``uuid4``, so the same arguments give
byte-identical ``encode_event`` output. Each patient's course comes from a seed of its own, drawn
from the cohort seed, so changing one patient's story does not reshuffle everyone else's.

Event ``time`` is when the fact happened (attendance shortly after the session, a lab result when
it was resulted), and every event passes the contract's validation as it is built.
"""

from __future__ import annotations

import heapq
import io
import os
import random
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter, itemgetter
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Final, Literal, cast

from iopcare.contract import (
    CheckInSubmitted,
    CloudEvent,
    ConsentGranted,
    ConsentRevoked,
    FamilyTherapyAttended,
    FamilyTherapyBooked,
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
    Substance,
    ToxicologyResulted,
    encode_event,
    new_event,
)

__all__ = [
    "ARCHETYPES",
    "DEFAULT_ARCHETYPE_MIX",
    "Archetype",
    "CohortPatient",
    "cohort_roster",
    "generate_cohort",
    "iter_cohort",
    "write_ndjson",
]

Archetype = Literal["steady", "improving", "disengaging", "relapsing", "crisis"]
ARCHETYPES: Final[tuple[Archetype, ...]] = ("steady", "improving", "disengaging", "relapsing", "crisis")
DEFAULT_ARCHETYPE_MIX: Final[Mapping[str, float]] = MappingProxyType(
    {"steady": 0.4, "improving": 0.2, "disengaging": 0.2, "relapsing": 0.15, "crisis": 0.05}
)

LEVEL_OF_CARE: Final = "2.1"
STEP_UP_LEVEL: Final = "2.5"
PROGRAM_DAYS: Final = 90
WEEKLY_PLAN: Final[Mapping[str, int | float]] = MappingProxyType(
    {"group_sessions": 4, "individual_sessions": 1, "hours": 9.0, "fellowship_meetings": 2}
)
CASELOAD: Final = 12
"""Patients per counselor."""
COUNSELORS_PER_SUPERVISOR: Final = 4
SOBER_LIVING_SHARE: Final = 0.4
"""Share of patients who live in a sober-living house (and consent to its reports)."""
OUTSIDE_FAMILY_THERAPY_SHARE: Final = 0.75
"""Share whose family therapy is with an outside provider; the rest have it in-house as sessions."""

EHR_SOURCE: Final = "ehr.clinic-a"
CHECKIN_SOURCE: Final = "checkin-app"
LAB_SOURCE: Final = "lab.acme"

# Group sessions: Mon/Tue/Thu evenings and Saturday morning, 3 hours each (weekday -> start hour).
_GROUP_SLOTS: Final = {0: 18, 1: 18, 3: 18, 5: 10}
_GROUP_MINUTES: Final = 180
_INDIVIDUAL_MINUTES: Final = 50
_FAMILY_MINUTES: Final = 60
_FAMILY_EVERY_DAYS: Final = 14
_CONSENT_DAYS: Final = 365
_HOUSE_SCOPE: Final = ("attendance", "housing", "toxicology")
_FAMILY_SCOPE: Final = ("attendance",)

HouseKind = Literal[
    "curfew_violation",
    "positive_test",
    "missed_house_meeting",
    "conflict",
    "left",
    "evicted",
    "compliant_week",
]
Disposition = Literal["completed", "transferred", "left_against_advice", "administrative", "other"]

# Primary substance -> (weight, what a lapse shows on a screen, fellowship usually attended).
_SUBSTANCES: Final[dict[str, tuple[float, tuple[Substance, ...], str]]] = {
    "alcohol": (0.35, ("alcohol",), "AA"),
    "opioids": (0.25, ("fentanyl", "opiate"), "NA"),
    "methamphetamine": (0.15, ("methamphetamine", "amphetamine"), "NA"),
    "cocaine": (0.15, ("cocaine",), "CA"),
    "cannabis": (0.10, ("cannabis",), "SMART"),
}
_MOUD_SHARE: Final = 0.6
"""Share of patients with opioid use disorder on buprenorphine (expected on every screen)."""


@dataclass(frozen=True)
class CohortPatient:
    """One fictional patient of a cohort: who they are to the program and which course they follow."""

    patient_id: str
    archetype: Archetype
    counselor_id: str
    supervisor_id: str
    primary_substance: str
    lapse_substances: tuple[Substance, ...]
    prescribed: frozenset[Substance]
    fellowship: str
    house_id: str | None
    family_provider_id: str | None
    seed: int


def cohort_roster(
    patients: int, *, seed: int, archetype_mix: Mapping[str, float] | None = None
) -> list[CohortPatient]:
    """The patients of the cohort that ``generate_cohort`` builds with the same arguments.

    Archetypes are allotted exactly to the mix (largest remainder), then shuffled; caseloads are
    balanced round-robin over ``ceil(patients / CASELOAD)`` counselors. Useful as ground truth, e.g.
    to check that the relapsing patients are the ones who got step-up alerts.
    """
    if patients < 0:
        raise ValueError("patients must be >= 0")
    rng = random.Random(seed)
    archetypes = _allot(patients, DEFAULT_ARCHETYPE_MIX if archetype_mix is None else archetype_mix)
    rng.shuffle(archetypes)
    counselors = max(1, -(-patients // CASELOAD))
    houses = max(3, patients // 6)
    providers = max(2, patients // 15)
    substances = list(_SUBSTANCES)
    weights = [_SUBSTANCES[s][0] for s in substances]
    seen: set[str] = set()
    roster = []
    for index, archetype in enumerate(archetypes):
        patient_id = f"p-{rng.getrandbits(40):010x}"
        while patient_id in seen:  # 40 bits make a clash rare, but ids must be unique
            patient_id = f"p-{rng.getrandbits(40):010x}"
        seen.add(patient_id)
        counselor = index % counselors
        primary = rng.choices(substances, weights)[0]
        _, lapse, fellowship = _SUBSTANCES[primary]
        on_moud = primary == "opioids" and rng.random() < _MOUD_SHARE
        in_house = rng.random() < SOBER_LIVING_SHARE
        outside_family = rng.random() < OUTSIDE_FAMILY_THERAPY_SHARE
        roster.append(
            CohortPatient(
                patient_id=patient_id,
                archetype=archetype,
                counselor_id=f"c-{counselor + 1:02d}",
                supervisor_id=f"s-{counselor // COUNSELORS_PER_SUPERVISOR + 1:02d}",
                primary_substance=primary,
                lapse_substances=lapse,
                prescribed=frozenset({"buprenorphine"}) if on_moud else frozenset(),
                fellowship=fellowship,
                house_id=f"house-{rng.randrange(houses) + 1:02d}" if in_house else None,
                family_provider_id=f"fam-{rng.randrange(providers) + 1:02d}" if outside_family else None,
                seed=rng.getrandbits(64),
            )
        )
    return roster


def _allot(patients: int, mix: Mapping[str, float]) -> list[Archetype]:
    unknown = set(mix) - set(ARCHETYPES)
    if unknown:
        raise ValueError(f"unknown archetypes {sorted(unknown)}; known: {list(ARCHETYPES)}")
    if any(weight < 0 for weight in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError("archetype weights must be >= 0 and not all zero")
    total = sum(mix.values())
    quotas = {a: patients * mix.get(a, 0.0) / total for a in ARCHETYPES}
    counts = {a: int(q) for a, q in quotas.items()}
    # Largest remainder: a 20-patient cohort at the default mix gets exactly one crisis patient.
    by_remainder = sorted(ARCHETYPES, key=lambda a: counts[a] - quotas[a])
    for archetype in by_remainder[: patients - sum(counts.values())]:
        counts[archetype] += 1
    return [a for a in ARCHETYPES for _ in range(counts[a])]


# --- courses: how each archetype's program goes, day by day -------------------------------------


@dataclass
class _Course:
    """Per-day probabilities and ranges plus the days of special events; the streams only read it."""

    attend: list[float]
    checkin: list[float]
    craving: list[tuple[int, int]]
    mood: list[tuple[int, int]]
    sleep: list[float]
    fellowship: list[float]
    family_show: list[float]
    house_incident: list[float]  # chance of a minor house incident in the week starting that day
    excused_share: float = 0.4
    family_cancel_share: float = 0.5
    family_first_day: int = 0  # 0: the timeline draws day 4-10
    intake_positive: bool = False
    forced_checkins: dict[int, int] = field(default_factory=dict)  # day -> craving
    silent: set[int] = field(default_factory=set)
    use_reported: set[int] = field(default_factory=set)
    exposure: set[int] = field(default_factory=set)  # days of use a screen can detect
    missed: set[int] = field(default_factory=set)  # days whose sessions are all missed, unexcused
    crisis_day: int | None = None
    house_incidents: list[tuple[int, HouseKind]] = field(default_factory=list)
    house_leave: tuple[int, Literal["left", "evicted"]] | None = None
    level_change_day: int | None = None
    discharge: tuple[int, Disposition] | None = None


def _base_course(
    n: int,
    *,
    attend: float,
    checkin: float,
    craving: tuple[int, int],
    mood: tuple[int, int],
    sleep: float,
    fellowship: float,
    family_show: float,
    house_incident: float,
) -> _Course:
    return _Course(
        attend=[attend] * n,
        checkin=[checkin] * n,
        craving=[craving] * n,
        mood=[mood] * n,
        sleep=[sleep] * n,
        fellowship=[fellowship] * n,
        family_show=[family_show] * n,
        house_incident=[house_incident] * n,
    )


def _fill(series: list[Any], first: int, last: int, value: Any) -> None:
    for day in range(max(first, 0), min(last, len(series))):
        series[day] = value


def _ramp(series: list[float], first: int, last: int, start: float, end: float) -> None:
    span = max(last - first, 1)
    for day in range(max(first, 0), min(last, len(series))):
        series[day] = start + (end - start) * (day - first) / span


def _completion(rng: random.Random, n: int, share: float) -> tuple[int, Disposition] | None:
    """Discharge as completed on the last planned day, for ``share`` of the patients who get there."""
    completes = rng.random() < share
    return (PROGRAM_DAYS - 1, "completed") if completes and n >= PROGRAM_DAYS else None


def _steady(rng: random.Random, n: int, group_days: list[int]) -> _Course:
    course = _base_course(
        n,
        attend=0.95,
        checkin=0.9,
        craving=(1, 4),
        mood=(5, 8),
        sleep=7.0,
        fellowship=0.9,
        family_show=0.92,
        house_incident=0.03,
    )
    course.excused_share = 0.5
    course.discharge = _completion(rng, n, 0.5)
    return course


def _improving(rng: random.Random, n: int, group_days: list[int]) -> _Course:
    # From day 28 (week 5) on, everything the plan asks is met; the first month is shaky.
    course = _base_course(
        n,
        attend=1.0,
        checkin=0.95,
        craving=(0, 3),
        mood=(6, 9),
        sleep=7.0,
        fellowship=1.0,
        family_show=0.95,
        house_incident=0.0,
    )
    _ramp(course.attend, 0, 28, 0.7, 0.9)
    _ramp(course.checkin, 0, 28, 0.7, 0.85)
    _fill(course.craving, 0, 14, (4, 7))
    _fill(course.craving, 14, 28, (3, 5))
    _fill(course.mood, 0, 28, (3, 6))
    _fill(course.sleep, 0, 28, 6.0)
    _ramp(course.fellowship, 0, 28, 0.5, 0.8)
    _fill(course.family_show, 0, 28, 0.75)
    _fill(course.house_incident, 0, 28, 0.08)
    course.excused_share = 0.3
    # A positive screen at intake is common and long past by the time step-down is judged.
    course.intake_positive = rng.random() < 0.3
    course.discharge = _completion(rng, n, 0.5)
    return course


def _disengaging(rng: random.Random, n: int, group_days: list[int]) -> _Course:
    course = _base_course(
        n,
        attend=0.9,
        checkin=0.85,
        craving=(2, 5),
        mood=(4, 7),
        sleep=6.5,
        fellowship=0.8,
        family_show=0.85,
        house_incident=0.05,
    )
    # From week 3 attendance, check-ins, meetings and family sessions decline to a low plateau.
    _ramp(course.attend, 14, 49, 0.9, 0.3)
    _fill(course.attend, 49, n, 0.3)
    _ramp(course.checkin, 14, 49, 0.8, 0.3)
    _fill(course.checkin, 49, n, 0.3)
    _fill(course.craving, 14, n, (3, 6))
    _fill(course.mood, 14, n, (3, 6))
    _ramp(course.fellowship, 14, 49, 0.8, 0.2)
    _fill(course.fellowship, 49, n, 0.2)
    _ramp(course.family_show, 14, 49, 0.85, 0.35)
    _fill(course.family_show, 49, n, 0.35)
    _fill(course.house_incident, 14, n, 0.3)
    course.excused_share = 0.1
    gap = rng.randint(15, 28)  # at least one silence of 3+ days, whatever the dice say later
    course.silent.update(range(gap, gap + rng.randint(3, 5)))
    course.intake_positive = rng.random() < 0.2
    if rng.random() < 0.3:
        course.family_first_day = rng.randint(22, 30)  # nothing booked by day 21
    if rng.random() < 0.4:
        course.house_leave = (rng.randint(35, 70), "left")
    leaves_on = rng.randint(42, 75)
    if rng.random() < 0.35 and leaves_on < n:
        _fill(course.attend, leaves_on - 7, leaves_on, 0.1)
        _fill(course.checkin, leaves_on - 7, leaves_on, 0.2)
        course.discharge = (leaves_on, "left_against_advice")
    return course


def _relapsing(rng: random.Random, n: int, group_days: list[int]) -> _Course:
    course = _base_course(
        n,
        attend=0.93,
        checkin=0.9,
        craving=(1, 4),
        mood=(5, 7),
        sleep=7.0,
        fellowship=0.85,
        family_show=0.9,
        house_incident=0.03,
    )
    onset = rng.randint(21, 35)
    # Craving climbs over four consecutive daily check-ins (+4 across the last three), then use.
    baseline = rng.randint(2, 3)
    for offset, bump in enumerate((0, 1, 3, 5)):
        course.forced_checkins[onset + offset] = min(10, baseline + bump)
    first_use = onset + 3
    lapse_end = onset + 21
    course.use_reported = {first_use, first_use + rng.randint(2, 3)}
    course.use_reported.update(d for d in range(first_use + 4, lapse_end) if rng.random() < 0.2)
    course.use_reported.update(d for d in range(lapse_end, n) if rng.random() < 0.04)
    course.exposure = course.use_reported | {first_use + 1}
    _fill(course.attend, onset + 3, lapse_end, 0.6)
    _fill(course.checkin, onset + 3, lapse_end, 0.75)
    _fill(course.craving, onset + 4, lapse_end, (5, 9))
    _fill(course.mood, onset, lapse_end, (2, 5))
    _fill(course.sleep, onset, lapse_end, 5.5)
    _fill(course.fellowship, onset + 3, lapse_end, 0.4)
    _fill(course.family_show, onset + 3, lapse_end, 0.6)
    _fill(course.attend, lapse_end, n, 0.8)
    _fill(course.craving, lapse_end, n, (3, 6))
    _fill(course.mood, lapse_end, n, (4, 6))
    _fill(course.fellowship, lapse_end, n, 0.7)
    # Two group sessions in a row are missed, and anything scheduled between them too.
    next_groups = [d for d in group_days if d > first_use][:2]
    if next_groups:
        course.missed.update(range(next_groups[0], next_groups[-1] + 1))
    course.house_incidents.append((first_use + 1, "positive_test"))
    if rng.random() < 0.25:
        course.house_leave = (first_use + rng.randint(5, 9), "evicted")
    course.excused_share = 0.2
    step_up_on = min(onset + rng.randint(14, 21), n - 2)
    if rng.random() < 0.5 and step_up_on > first_use:
        course.level_change_day = step_up_on
    return course


def _crisis(rng: random.Random, n: int, group_days: list[int]) -> _Course:
    course = _base_course(
        n,
        attend=0.9,
        checkin=0.88,
        craving=(2, 5),
        mood=(4, 7),
        sleep=6.5,
        fellowship=0.8,
        family_show=0.85,
        house_incident=0.05,
    )
    day = rng.randint(14, max(14, min(n, PROGRAM_DAYS) - 10))
    _fill(course.mood, day - 5, day, (1, 3))
    _fill(course.sleep, day - 5, day + 1, 4.5)
    _fill(course.mood, day + 1, day + 15, (3, 6))
    course.crisis_day = day
    course.discharge = _completion(rng, n, 0.5)
    return course


_COURSES: Final = {
    "steady": _steady,
    "improving": _improving,
    "disengaging": _disengaging,
    "relapsing": _relapsing,
    "crisis": _crisis,
}


# --- one patient's timeline -------------------------------------------------------------------

_Draft = tuple[datetime, type[CloudEvent[Any]], str, dict[str, Any]]


class _Timeline:
    """Turns one patient's course into events: drafts first, then validated events in time order."""

    def __init__(self, patient: CohortPatient, day0: datetime, start_at: datetime | None, days: int) -> None:
        rng = random.Random(patient.seed)
        self.rng = rng
        self.patient = patient
        self.day0 = day0
        self.window_end = day0 + timedelta(days=days)
        # The patient's routine is fixed once so that every week looks alike.
        self.individual_slot = (rng.randrange(5), rng.choice((9, 10, 11, 13, 14, 15, 16)))
        self.fellowship_weekdays = frozenset(rng.sample((2, 4, 5, 6), 2))
        self.family_hour = rng.choice((10, 12, 16))
        # Intake takes up to three hours after the start, but stays on day 0 even for a late start.
        opens = start_at or day0 + timedelta(hours=9)
        minutes_left = int((day0 + timedelta(days=1) - opens).total_seconds() // 60) - 1
        self.enrolled_at = opens + timedelta(minutes=rng.randint(0, max(0, min(180, minutes_left))))
        self.weekdays = [(day0 + timedelta(days=d)).weekday() for d in range(days)]
        group_days = [d for d in range(days) if self.weekdays[d] in _GROUP_SLOTS]
        self.course = _COURSES[patient.archetype](rng, days, group_days)
        if not self.course.family_first_day:
            self.course.family_first_day = rng.randint(4, 10)
        self.end_day = self.course.discharge[0] if self.course.discharge else days
        self.drafts: list[_Draft] = []
        self.consented_at: dict[str, datetime] = {}  # recipient id -> when its consent was granted

    def at(self, day: int, hour: int, minutes: int = 0) -> datetime:
        return self.day0 + timedelta(days=day, hours=hour, minutes=minutes)

    def emit(self, at: datetime, cls: type[CloudEvent[Any]], source: str, data: dict[str, Any]) -> None:
        self.drafts.append((at, cls, source, data))

    def events(self) -> list[CloudEvent[Any]]:
        self._intake()
        self._sessions()
        self._checkins()
        self._toxicology()
        self._fellowship()
        self._family_therapy()
        self._house()
        self._level_and_discharge()
        # Enrolment is the patient's first event and nothing is kept past the window; the sort is
        # stable, so events at the same instant keep the order they were drafted in.
        enrolment, *rest = self.drafts
        kept = sorted((d for d in rest if self.enrolled_at < d[0] < self.window_end), key=itemgetter(0))
        subject = self.patient.patient_id
        getrandbits = self.rng.getrandbits
        return [
            new_event(
                cls,
                subject=subject,
                source=source,
                data=data,
                time=at,
                id=str(uuid.UUID(int=getrandbits(128), version=4)),
            )
            for at, cls, source, data in [enrolment, *kept]
        ]

    def _intake(self) -> None:
        p, rng, enrolled = self.patient, self.rng, self.enrolled_at
        self.emit(
            enrolled,
            PatientEnrolled,
            EHR_SOURCE,
            {
                "level_of_care": LEVEL_OF_CARE,
                "program_start": self.day0.date(),
                "planned_length_days": PROGRAM_DAYS,
                "weekly_plan": dict(WEEKLY_PLAN),
                "counselor_id": p.counselor_id,
                "supervisor_id": p.supervisor_id,
                "population": "adult",
            },
        )
        # Third parties need their own Part 2 consent before they may report (or be told) anything.
        for kind, recipient, scope in (
            ("sober_living_house", p.house_id, _HOUSE_SCOPE),
            ("family_therapy_provider", p.family_provider_id, _FAMILY_SCOPE),
        ):
            if recipient is None:
                continue
            granted = enrolled + timedelta(minutes=rng.randint(5, 30))
            self.consented_at[recipient] = granted
            self.emit(
                granted,
                ConsentGranted,
                EHR_SOURCE,
                {
                    "recipient_kind": kind,
                    "recipient_id": recipient,
                    "scope": scope,
                    "expires_at": granted + timedelta(days=_CONSENT_DAYS),
                    "consent_form_id": f"cf-{rng.getrandbits(32):08x}",
                },
            )

    def _sessions(self) -> None:
        course, rng = self.course, self.rng
        earliest = self.enrolled_at + timedelta(hours=1)
        for week_start in range(0, self.end_day, 7):
            week = [
                s
                for day in range(week_start, min(week_start + 7, self.end_day))
                for s in self._sessions_on(day)
                if s[1] >= earliest
            ]
            if not week:
                continue
            # The scheduler publishes next week's timetable on Friday-ish; week 1's at intake.
            if week_start == 0:
                scheduled_at = self.enrolled_at + timedelta(minutes=rng.randint(10, 40))
            else:
                scheduled_at = self.at(week_start - 3, 12, rng.randint(0, 120))
            for day, starts_at, kind, minutes in week:
                session = {
                    "session_id": f"ses-{rng.getrandbits(48):012x}",
                    "kind": kind,
                    "starts_at": starts_at,
                    "duration_minutes": minutes,
                }
                self.emit(scheduled_at, SessionScheduled, EHR_SOURCE, session)
                chance = course.family_show[day] if kind == "family" else course.attend[day]
                if day not in course.missed and rng.random() < chance:
                    ends = starts_at + timedelta(minutes=minutes + rng.randint(2, 45))
                    self.emit(ends, SessionAttended, EHR_SOURCE, dict(session))
                    continue
                excused = day not in course.missed and rng.random() < course.excused_share
                if excused:
                    reason: str | None = rng.choice(("illness", "work", "transport", "childcare"))
                else:
                    reason = rng.choice((None, "no_contact", "no_contact", "transport", "other"))
                marked = starts_at + timedelta(minutes=rng.randint(15, 60))
                self.emit(
                    marked, SessionMissed, EHR_SOURCE, {**session, "excused": excused, "reason_code": reason}
                )
        if course.crisis_day is not None and course.crisis_day + 1 < self.end_day:
            # A safety-planning session the morning after the crisis check-in.
            starts_at = self.at(course.crisis_day + 1, 10)
            session = {
                "session_id": f"ses-{rng.getrandbits(48):012x}",
                "kind": "individual",
                "starts_at": starts_at,
                "duration_minutes": _INDIVIDUAL_MINUTES,
            }
            self.emit(self.at(course.crisis_day, 23, 45), SessionScheduled, EHR_SOURCE, session)
            ends = starts_at + timedelta(minutes=_INDIVIDUAL_MINUTES + rng.randint(2, 30))
            self.emit(ends, SessionAttended, EHR_SOURCE, dict(session))

    def _sessions_on(self, day: int) -> Iterator[tuple[int, datetime, str, int]]:
        weekday = self.weekdays[day]
        if weekday in _GROUP_SLOTS:
            yield day, self.at(day, _GROUP_SLOTS[weekday]), "group", _GROUP_MINUTES
        if weekday == self.individual_slot[0]:
            yield day, self.at(day, self.individual_slot[1]), "individual", _INDIVIDUAL_MINUTES
        if self.patient.family_provider_id is None and self._family_day(day):
            yield day, self.at(day, self.family_hour), "family", _FAMILY_MINUTES

    def _family_day(self, day: int) -> bool:
        first = self.course.family_first_day
        return day >= first and (day - first) % _FAMILY_EVERY_DAYS == 0

    def _checkins(self) -> None:
        course, rng = self.course, self.rng
        crisis = course.crisis_day
        phq_week = -1
        for day in range(self.end_day):
            forced = day in course.forced_checkins or day in course.use_reported or day == crisis
            if not forced and (day in course.silent or rng.random() >= course.checkin[day]):
                continue
            at = self.at(day, 19, rng.randint(0, 239)) + timedelta(seconds=rng.randint(0, 59))
            craving = (
                course.forced_checkins[day]
                if day in course.forced_checkins
                else rng.randint(*course.craving[day])
            )
            phq9: int | None = None
            if day // 7 != phq_week:  # PHQ-9 item 9 is asked on the first check-in of each week
                phq_week = day // 7
                phq9 = rng.choice((0, 1)) if crisis is not None and crisis < day <= crisis + 14 else 0
            safety, cssrs = False, None
            if day == crisis:
                variant = rng.random()
                if variant < 0.5:
                    safety, phq9, cssrs = True, rng.randint(2, 3), True
                elif variant < 0.75:
                    phq9 = rng.randint(1, 2)
                else:
                    safety = True
            self.emit(
                at,
                CheckInSubmitted,
                CHECKIN_SOURCE,
                {
                    "craving": craving,
                    "mood": rng.randint(*course.mood[day]),
                    "sleep_hours": min(12.0, max(2.0, round(rng.gauss(course.sleep[day], 1.0) * 2) / 2)),
                    "substance_use_reported": day in course.use_reported,
                    "safety_concern": safety,
                    "phq9_item9": phq9,
                    "cssrs_positive": cssrs,
                    "channel": rng.choices(("app", "sms", "phone"), (0.9, 0.07, 0.03))[0],
                },
            )

    def _toxicology(self) -> None:
        course, rng, p = self.course, self.rng, self.patient
        # Random and unannounced: at least weekly, never within 3 days of the previous one.
        collections: list[tuple[int, datetime, bool]] = [
            (0, self.enrolled_at + timedelta(minutes=rng.randint(20, 60)), False)
        ]
        day = rng.randint(2, 5)
        while day < self.end_day:
            collections.append((day, self.at(day, 10, rng.randint(0, 480)), True))
            day += rng.randint(3, 7)
        reported = sorted(d for d in course.use_reported if d < self.end_day)
        if reported and reported[0] + 1 < self.end_day:  # a for-cause screen after reported use
            collections.append((reported[0] + 1, self.at(reported[0] + 1, 9, rng.randint(0, 180)), False))
        for day, collected, is_random in collections:
            positive = {s for s in p.prescribed if rng.random() < 0.95}
            used = (
                course.intake_positive
                if day == 0
                else any(d in course.exposure for d in range(day - 3, day + 1))
            )
            if used:
                positive.update(p.lapse_substances[: rng.randint(1, len(p.lapse_substances))])
            self.emit(
                collected + timedelta(hours=rng.randint(18, 50), minutes=rng.randint(0, 59)),
                ToxicologyResulted,
                LAB_SOURCE,
                {
                    "specimen_id": f"spec-{rng.getrandbits(40):010x}",
                    "collected_at": collected,
                    "substances_positive": frozenset(positive),
                    "prescribed_substances": p.prescribed,
                    "random": is_random,
                },
            )

    def _fellowship(self) -> None:
        course, rng = self.course, self.rng
        for day in range(self.end_day):
            chance = course.fellowship[day]
            if self.weekdays[day] not in self.fellowship_weekdays:
                chance *= 0.05  # the odd extra meeting
            if rng.random() < chance:
                self.emit(
                    self.at(day, 21, rng.randint(0, 90)),
                    FellowshipAttended,
                    CHECKIN_SOURCE,
                    {
                        "fellowship": self.patient.fellowship,
                        "attended_on": (self.day0 + timedelta(days=day)).date(),
                        "verified": rng.random() < 0.5,
                    },
                )

    def _family_therapy(self) -> None:
        provider = self.patient.family_provider_id
        if provider is None:
            return
        course, rng = self.course, self.rng
        source = f"family.{provider}"
        for day in range(self.course.family_first_day, self.end_day, _FAMILY_EVERY_DAYS):
            starts_at = self.at(day, self.family_hour)
            booked_at = self.at(day - rng.randint(3, 10), 9, rng.randint(0, 480))
            # A booking made before intake moves to just after the provider's consent.
            booked_at = max(booked_at, self.consented_at[provider] + timedelta(minutes=rng.randint(15, 120)))
            booking = {
                "booking_id": f"fb-{rng.getrandbits(40):010x}",
                "starts_at": starts_at,
                "provider_id": provider,
            }
            self.emit(
                booked_at, FamilyTherapyBooked, source, {**booking, "duration_minutes": _FAMILY_MINUTES}
            )
            if rng.random() < course.family_show[day]:
                ends = starts_at + timedelta(minutes=_FAMILY_MINUTES + rng.randint(2, 30))
                self.emit(ends, FamilyTherapyAttended, source, booking)
            elif rng.random() < course.family_cancel_share:
                cancelled_at = max(
                    starts_at - timedelta(hours=rng.randint(2, 48)), booked_at + timedelta(hours=1)
                )
                cancelled_by = rng.choices(("patient", "family", "provider"), (0.5, 0.3, 0.2))[0]
                self.emit(
                    cancelled_at, FamilyTherapyCancelled, source, {**booking, "cancelled_by": cancelled_by}
                )
            else:
                self.emit(
                    starts_at + timedelta(minutes=rng.randint(20, 40)), FamilyTherapyNoShow, source, booking
                )

    def _house(self) -> None:
        house = self.patient.house_id
        if house is None:
            return
        course, rng = self.course, self.rng
        last = self.end_day
        if course.house_leave is not None and course.house_leave[0] < last:
            last = course.house_leave[0]
        for week_start in range(0, last, 7):
            incidents = [
                (d, k) for d, k in course.house_incidents if week_start <= d < min(week_start + 7, last)
            ]
            if rng.random() < course.house_incident[week_start]:
                minor: HouseKind = rng.choice(("curfew_violation", "missed_house_meeting", "conflict"))
                day = max(1, week_start + rng.randrange(7))  # not on the day the patient arrives
                if day < last:
                    incidents.append((day, minor))
            for day, kind in incidents:
                hour, minute = _HOUSE_HOURS[kind]
                self._house_report(self.at(day, hour, minute + rng.randint(0, 90)), kind)
            if not incidents and week_start + 6 < last:
                self._house_report(self.at(week_start + 6, 21, rng.randint(0, 60)), "compliant_week")
        if last < self.end_day and course.house_leave is not None:
            left_on, kind = course.house_leave
            self._house_report(self.at(left_on, 14, rng.randint(0, 300)), kind)
            if kind == "left":  # the patient withdraws the house's access once they move out
                self.emit(
                    self.at(left_on + rng.randint(1, 3), 10, rng.randint(0, 300)),
                    ConsentRevoked,
                    EHR_SOURCE,
                    {"recipient_kind": "sober_living_house", "recipient_id": house, "scope": _HOUSE_SCOPE},
                )

    def _house_report(self, observed_at: datetime, kind: HouseKind) -> None:
        # `time` is the fact time, which for a house report is when the house observed it.
        house = self.patient.house_id
        data = {"house_id": house, "kind": kind, "observed_at": observed_at}
        self.emit(observed_at, SoberLivingReported, f"house.{house}", data)

    def _level_and_discharge(self) -> None:
        course, rng = self.course, self.rng
        if course.level_change_day is not None and course.level_change_day < self.end_day:
            self.emit(
                self.at(course.level_change_day, 11, rng.randint(0, 300)),
                LevelOfCareChanged,
                EHR_SOURCE,
                {
                    "from_level": LEVEL_OF_CARE,
                    "to_level": STEP_UP_LEVEL,
                    "decided_by": self.patient.supervisor_id,
                    "reason_code": "step_up",
                },
            )
        if course.discharge is not None:
            day, disposition = course.discharge
            self.emit(
                self.at(day, 11, rng.randint(0, 180)),
                PatientDischarged,
                EHR_SOURCE,
                {"discharged_on": (self.day0 + timedelta(days=day)).date(), "disposition": disposition},
            )


# When in the day a house notices each kind of incident (hour, minute).
_HOUSE_HOURS: Final[dict[str, tuple[int, int]]] = {
    "curfew_violation": (23, 5),
    "positive_test": (7, 0),
    "missed_house_meeting": (19, 30),
    "conflict": (17, 0),
}


# --- public API -----------------------------------------------------------------------------


def _day_zero(start: date | datetime) -> tuple[datetime, datetime | None]:
    """Midnight of the first program day (in the start's time zone, UTC if none) and the exact start."""
    if isinstance(start, datetime):
        exact = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
        return exact.replace(hour=0, minute=0, second=0, microsecond=0), exact
    return datetime(start.year, start.month, start.day, tzinfo=UTC), None


def iter_cohort(
    patients: int,
    *,
    seed: int,
    start: date | datetime,
    days: int = PROGRAM_DAYS,
    archetype_mix: Mapping[str, float] | None = None,
) -> Iterator[CloudEvent[Any]]:
    """Yield the cohort's events in event-time order (the same events as ``generate_cohort``).

    Each patient's timeline is built and validated in turn, then the per-patient streams are merged
    by time; ties go to the patient listed first in ``cohort_roster``, so the order is deterministic.
    """
    if days < 1:
        raise ValueError("days must be >= 1")
    day0, start_at = _day_zero(start)
    roster = cohort_roster(patients, seed=seed, archetype_mix=archetype_mix)
    streams = [_Timeline(patient, day0, start_at, days).events() for patient in roster]
    yield from heapq.merge(*streams, key=attrgetter("time"))


def generate_cohort(
    patients: int,
    *,
    seed: int,
    start: date | datetime,
    days: int = PROGRAM_DAYS,
    archetype_mix: Mapping[str, float] | None = None,
) -> list[CloudEvent[Any]]:
    """Generate a synthetic cohort of ``patients`` over ``days`` from ``start``, sorted by event time.

    ``start`` is the first program day: a date (midnight UTC) or a datetime (its time zone; naive
    means UTC; enrolments happen shortly after it). ``archetype_mix`` weighs the archetypes in
    ``ARCHETYPES`` (default ``DEFAULT_ARCHETYPE_MIX``; missing ones get none). Deterministic: the
    same arguments give the same events, byte for byte under ``encode_event``, ids included.
    A 200-patient, 90-day cohort is about 50,000 events.
    """
    return list(iter_cohort(patients, seed=seed, start=start, days=days, archetype_mix=archetype_mix))


def write_ndjson(
    events: Iterable[CloudEvent[Any]], destination: str | os.PathLike[str] | IO[bytes] | IO[str]
) -> int:
    """Write events as newline-delimited JSON (one ``encode_event`` per line); return how many.

    ``destination`` is a path (created or truncated) or an open stream, binary or text.
    """
    if isinstance(destination, str | os.PathLike):
        with Path(destination).open("wb") as stream:
            return _write_lines(events, stream)
    if isinstance(destination, io.TextIOBase):
        count = 0
        for event in events:
            destination.write(encode_event(event).decode("utf-8") + "\n")
            count += 1
        return count
    return _write_lines(events, cast(IO[bytes], destination))


def _write_lines(events: Iterable[CloudEvent[Any]], stream: IO[bytes]) -> int:
    count = 0
    for event in events:
        stream.write(encode_event(event) + b"\n")
        count += 1
    return count
