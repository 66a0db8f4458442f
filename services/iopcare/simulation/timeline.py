"""One patient's timeline: a course turned into validated events in time order."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from operator import itemgetter
from typing import Any, Final

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
    ToxicologyResulted,
    new_event,
)
from iopcare.evaluation.outcomes import LapseEpisode, PatientOutcome
from iopcare.simulation.courses import _COURSES
from iopcare.simulation.program import (
    _CONSENT_DAYS,
    _FAMILY_EVERY_DAYS,
    _FAMILY_MINUTES,
    _FAMILY_SCOPE,
    _GROUP_MINUTES,
    _GROUP_SLOTS,
    _HOUSE_SCOPE,
    _INDIVIDUAL_MINUTES,
    CHECKIN_SOURCE,
    EHR_SOURCE,
    LAB_SOURCE,
    LEVEL_OF_CARE,
    PROGRAM_DAYS,
    STEP_UP_LEVEL,
    WEEKLY_PLAN,
    HouseKind,
)
from iopcare.simulation.roster import CohortPatient

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
        self.course = _COURSES[patient.archetype](rng, days)
        self.course.draw(
            rng, days, in_house=patient.house_id is not None, adolescent=patient.population == "adolescent"
        )
        if not self.course.family_first_day:
            self.course.family_first_day = rng.randint(4, 10)
        self.end_day = self.course.discharge[0] if self.course.discharge else days
        self.drafts: list[_Draft] = []
        self.consented_at: dict[str, datetime] = {}  # recipient id -> when its consent was granted

    def outcome(self) -> PatientOutcome:
        """What happened to the patient over the observed days (the latent process's outcomes)."""
        course, observed = self.course, self.end_day
        on = self.day0.date

        def day(offset: int) -> date:
            return on() + timedelta(days=offset)

        # Lapses less than a week apart are one episode, as a clinician would count a relapse.
        spans: list[list[int]] = []  # [start, end, use days]
        for lapse in course.latent.lapses:
            uses = sum(d < observed for d in lapse.use_days)
            if lapse.start >= observed or not uses:
                continue
            if spans and lapse.start - spans[-1][1] <= EPISODE_GAP_DAYS:
                spans[-1][1:] = [min(lapse.end, observed - 1), spans[-1][2] + uses]
            else:
                spans.append([lapse.start, min(lapse.end, observed - 1), uses])
        lapses = [LapseEpisode(start=day(a), end=day(b), use_days=n) for a, b, n in spans]
        if course.intake_positive:
            lapses.insert(0, LapseEpisode(start=day(-2), end=day(-1), use_days=1, before_intake=True))
        dropout = course.latent.dropout
        crisis = course.crisis_day
        return PatientOutcome(
            patient_id=self.patient.patient_id,
            population=self.patient.population,
            program_start=on(),
            observed_days=observed,
            lapses=tuple(lapses),
            dropout=day(dropout) if dropout is not None and dropout < observed else None,
            crises=(day(crisis),) if crisis is not None and crisis < observed else (),
            archetype=self.patient.archetype,
        )

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
                "population": p.population,
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
                chance = course.chance(course.family_show if kind == "family" else course.attend, day)
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
            forced = day == crisis
            if not forced and (day in course.silent or rng.random() >= course.chance(course.checkin, day)):
                continue
            at = self.at(day, 19, rng.randint(0, 239)) + timedelta(seconds=rng.randint(0, 59))
            risk = course.risk(day)
            craving = _scale(rng.gauss(course.craving_centre + 7 * risk, 0.8), 0, 10)
            distressed = 4 if day in course.distress else 0
            mood = _scale(rng.gauss(course.mood_centre - 6 * risk - distressed, 0.9), 0, 10)
            sleep = course.sleep_centre - 3 * risk - distressed / 2
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
                    "mood": mood,
                    "sleep_hours": min(12.0, max(2.0, round(rng.gauss(sleep, 1.0) * 2) / 2)),
                    "substance_use_reported": day in course.reported,
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
        reported = sorted(d for d in course.reported if d < self.end_day)
        if reported and reported[0] + 1 < self.end_day:  # a for-cause screen after reported use
            collections.append((reported[0] + 1, self.at(reported[0] + 1, 9, rng.randint(0, 180)), False))
        exposure = course.latent.use_days
        for day, collected, is_random in collections:
            positive = {s for s in p.prescribed if rng.random() < 0.95}
            used = course.intake_positive if day == 0 else any(d in exposure for d in range(day - 3, day + 1))
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
            chance = course.chance(course.fellowship, day)
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
            if rng.random() < course.chance(course.family_show, day):
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


def _scale(value: float, low: int, high: int) -> int:
    """A drawn value as a whole point on a rating scale."""
    return min(high, max(low, round(value)))


EPISODE_GAP_DAYS: Final = 7
"""Lapses no more than this many days apart are recorded as one episode in the outcomes."""

# When in the day a house notices each kind of incident (hour, minute).
_HOUSE_HOURS: Final[dict[str, tuple[int, int]]] = {
    "curfew_violation": (23, 5),
    "positive_test": (7, 0),
    "missed_house_meeting": (19, 30),
    "conflict": (17, 0),
}
