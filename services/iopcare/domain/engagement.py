"""A patient's engagement state, derived only from events. Pure: no I/O, no clock, no asyncio.

Why the state is a set of *facts* and not running counters: events for a patient arrive late and out
of order (a clinic system backfills yesterday's attendance). Every fact here is keyed by its natural
id (session id, booking id, event id) and merged by a total order on (precedence, event time, event
id), so applying the same events in any order, or twice, gives the same state. Counts, streaks and
trends ("2 unexcused misses in a row", "groups this week") are then computed from the facts *by
event time* in :mod:`iopcare.domain.measures`, never kept as counters that arrival order would skew.

Facts older than ``retention`` behind the patient's high-water mark (latest event time seen) are
pruned to keep the state small; the first sessions of the program are kept for the early-engagement
rule. Pruning runs when that horizon enters a new (UTC) day, and after a late event: pruning on
every event cost more than the rest of the fold (the backtest folds tens of thousands of events a
second), and a day's slack changes no rule, whose windows are all shorter than the retention.

An event older than ``lateness`` behind the high-water mark is *late*: still applied where it can
be, and counted. Within the lateness window the state converges whatever the arrival order.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter
from typing import Any, Literal, Protocol, TypeVar

from iopcare.contract import (
    CareTeamChanged,
    CheckInSubmitted,
    ConsentGranted,
    ConsentRevoked,
    FamilyTherapyAttended,
    FamilyTherapyBooked,
    FamilyTherapyCancelled,
    FamilyTherapyNoShow,
    FellowshipAttended,
    InboundEvent,
    LevelOfCareChanged,
    PatientDischarged,
    PatientEnrolled,
    SessionAttended,
    SessionMissed,
    SessionScheduled,
    SoberLivingReported,
    ToxicologyResulted,
    TreatmentPlanChanged,
)

SessionKind = Literal["group", "individual", "family"]
SessionStatus = Literal["scheduled", "attended", "missed"]
UseSignalKind = Literal["reported_use", "positive_screen", "house_positive"]
FamilyStatus = Literal["booked", "cancelled", "attended", "no_show"]

# Which fact wins when two events speak of the same session or booking: an outcome beats a
# schedule whatever the arrival order; between outcomes, the later event time wins (a correction).
_SESSION_PRECEDENCE: dict[str, int] = {"scheduled": 0, "attended": 1, "missed": 1}
_FAMILY_PRECEDENCE: dict[str, int] = {"booked": 0, "cancelled": 1, "attended": 1, "no_show": 1}
EARLY_SESSIONS_KEPT = 5


@dataclass(frozen=True)
class Tuning:
    """How much history the state keeps and when an event counts as late."""

    lateness: timedelta = timedelta(days=7)
    retention: timedelta = timedelta(days=42)  # longest rule window (4-week step-down) plus lateness
    consent_hold: timedelta = timedelta(days=14)  # how long a third-party report waits for its consent


DEFAULT_TUNING = Tuning()


@dataclass(slots=True)
class WeeklyPlan:
    """What the treatment plan asks of the patient each week."""

    group_sessions: int
    individual_sessions: int
    hours: float
    fellowship_meetings: int


@dataclass(slots=True)
class Enrollment:
    """The patient's enrollment in the program."""

    level_of_care: str
    program_start: date
    planned_length_days: int
    weekly_plan: WeeklyPlan
    counselor_id: str
    supervisor_id: str
    population: str
    enrolled_at: datetime
    event_id: str


@dataclass(slots=True)
class SessionRecord:
    """One scheduled treatment session and what became of it."""

    session_id: str
    kind: SessionKind
    starts_at: datetime
    duration_minutes: int
    status: SessionStatus
    excused: bool
    decided_at: datetime  # event time of the fact that set the status
    event_id: str


@dataclass(slots=True)
class CheckInRecord:
    """A self-report check-in."""

    at: datetime
    craving: int
    mood: int
    sleep_hours: float
    use_reported: bool
    safety_concern: bool
    phq9_item9: int | None
    cssrs_positive: bool | None
    event_id: str


@dataclass(slots=True)
class UseSignal:
    """Evidence of substance use: self-report, a positive screen, or a positive test at the house."""

    at: datetime
    kind: UseSignalKind
    event_id: str
    substances: list[str] = field(default_factory=list)


@dataclass(slots=True)
class HouseIncident:
    """A sober-living house report."""

    at: datetime
    house_id: str
    kind: str
    event_id: str


@dataclass(slots=True)
class FamilyBooking:
    """A family-therapy appointment and what became of it."""

    booking_id: str
    provider_id: str
    starts_at: datetime
    status: FamilyStatus
    cancelled_by: str | None
    decided_at: datetime
    event_id: str


@dataclass(slots=True)
class FellowshipMeeting:
    """An outside fellowship meeting (AA/NA/...) attended."""

    attended_on: date
    fellowship: str
    verified: bool
    event_id: str


@dataclass(slots=True)
class ConsentDecision:
    """One consent form signed (a grant) or withdrawn (a revocation, of some or all of its scope)."""

    at: datetime
    granted: bool
    scope: list[str]
    expires_at: datetime | None  # grants always carry one
    event_id: str


@dataclass(slots=True)
class Consent:
    """The patient's Part 2 consent history for one third party, in decision-time order.

    The whole history is kept (it is short) so that "was the consent active when the house made this
    report?" has one answer whatever order the decisions arrived in.
    """

    recipient_kind: str
    recipient_id: str
    decisions: list[ConsentDecision] = field(default_factory=list)

    def scope_at(self, when: datetime) -> frozenset[str]:
        """What the party may share at ``when``: the latest grant's scope, less what was revoked
        since, and nothing once that grant has expired."""
        scope: set[str] = set()
        expires_at: datetime | None = None
        for decision in self.decisions:
            if decision.at > when:
                break
            if decision.granted:
                scope, expires_at = set(decision.scope), decision.expires_at
            else:
                scope -= set(decision.scope)
        if expires_at is not None and expires_at <= when:
            return frozenset()
        return frozenset(scope)

    def active_at(self, when: datetime, needs: Iterable[str] = ()) -> bool:
        """Granted, not revoked, not expired at ``when``, and covering every scope in ``needs``."""
        scope = self.scope_at(when)
        return bool(scope) and scope.issuperset(needs)


@dataclass(slots=True)
class LevelChange:
    """A level-of-care decision."""

    at: datetime
    from_level: str
    to_level: str
    reason_code: str
    event_id: str


@dataclass(slots=True)
class CareTeamChange:
    """A new counselor or supervisor, from ``at`` on."""

    counselor_id: str
    supervisor_id: str
    at: datetime
    event_id: str


@dataclass(slots=True)
class PlanChange:
    """A new weekly plan for the program weeks starting on or after ``effective_from``."""

    effective_from: date
    weekly_plan: WeeklyPlan
    at: datetime
    event_id: str


@dataclass(slots=True)
class Discharge:
    """The end of the episode of care."""

    discharged_on: date
    disposition: str
    at: datetime
    event_id: str


@dataclass(slots=True)
class PatientState:
    """Everything the rules know about one patient, derived only from events."""

    patient_id: str
    enrollment: Enrollment | None = None
    level_changes: list[LevelChange] = field(default_factory=list)
    discharge: Discharge | None = None
    sessions: dict[str, SessionRecord] = field(default_factory=dict)
    checkins: list[CheckInRecord] = field(default_factory=list)
    use_signals: list[UseSignal] = field(default_factory=list)
    house_incidents: list[HouseIncident] = field(default_factory=list)
    family_bookings: dict[str, FamilyBooking] = field(default_factory=dict)
    fellowship: list[FellowshipMeeting] = field(default_factory=list)
    consents: dict[str, Consent] = field(default_factory=dict)
    care_team_changes: list[CareTeamChange] = field(default_factory=list)
    plan_changes: list[PlanChange] = field(default_factory=list)
    high_water: datetime | None = None  # latest event time applied
    events_applied: int = 0
    late_events: int = 0

    @property
    def level_of_care(self) -> str | None:
        """The current level: the latest level change by event time, else the enrollment level."""
        if self.level_changes:
            return self.level_changes[-1].to_level
        return self.enrollment.level_of_care if self.enrollment else None

    @property
    def care_team(self) -> tuple[str, str] | None:
        """(counselor, supervisor) now: the latest care-team change since the enrollment, else the
        enrollment's; None before enrollment."""
        enrollment = self.enrollment
        if enrollment is None:
            return None
        changes = [c for c in self.care_team_changes if c.at >= enrollment.enrolled_at]
        if changes:
            return changes[-1].counselor_id, changes[-1].supervisor_id
        return enrollment.counselor_id, enrollment.supervisor_id

    def weekly_plan_from(self, week_start: date) -> WeeklyPlan | None:
        """The plan for a program week starting on ``week_start``: the latest plan change since the
        enrollment that is in effect by then, else the enrollment's plan."""
        enrollment = self.enrollment
        if enrollment is None:
            return None
        plan = enrollment.weekly_plan
        in_effect = [
            c for c in self.plan_changes if c.at >= enrollment.enrolled_at and c.effective_from <= week_start
        ]
        if in_effect:
            plan = max(in_effect, key=lambda c: (c.effective_from, c.at, c.event_id)).weekly_plan
        return plan

    @property
    def last_checkin_at(self) -> datetime | None:
        return self.checkins[-1].at if self.checkins else None

    def consent_for(self, recipient_kind: str, recipient_id: str) -> Consent | None:
        return self.consents.get(consent_key(recipient_kind, recipient_id))


def consent_key(recipient_kind: str, recipient_id: str) -> str:
    """Consents are per third party (kind + id); a string key keeps the state JSON-friendly."""
    return f"{recipient_kind}:{recipient_id}"


class _Timed(Protocol):
    at: datetime
    event_id: str


_T = TypeVar("_T", bound=_Timed)


def _insert_by_time(items: list[_T], item: _T) -> bool:
    """Insert keeping (time, event id) order; False if that event is already there (idempotent)."""
    key = (item.at, item.event_id)
    index = len(items)
    while index > 0 and (items[index - 1].at, items[index - 1].event_id) > key:
        index -= 1
    if index > 0 and items[index - 1].event_id == item.event_id:
        return False
    items.insert(index, item)
    return True


_at = attrgetter("at")
_attended_on = attrgetter("attended_on")


def apply_event(state: PatientState, event: InboundEvent, tuning: Tuning = DEFAULT_TUNING) -> bool:
    """Fold one event into the patient's state, in place. Returns True when the event was *late*
    (older than ``tuning.lateness`` behind the latest event time already applied).

    Deterministic and order-insensitive: any permutation of the same events (within the lateness
    window) leads to the same state. The caller guarantees each event is applied once (the event
    log does); re-applying is harmless for every fact keyed by id.
    """
    at = event.time
    previous = state.high_water
    late = previous is not None and at < previous - tuning.lateness
    _FOLD[type(event)](state, event)
    if previous is None or at > previous:
        state.high_water = at
    state.events_applied += 1
    if late:
        state.late_events += 1
    # Only a late event can bring a fact older than the horizon; otherwise the horizon only moves
    # when it enters a new day.
    if (
        late
        or previous is None
        or (at > previous and _horizon_day(previous, tuning) < _horizon_day(at, tuning))
    ):
        _prune(state, tuning)
    return late


def retention_horizon(high_water: datetime, tuning: Tuning = DEFAULT_TUNING) -> datetime:
    """The start of the UTC day before which the state drops its facts, for a latest event at
    ``high_water`` (the prune keeps the program's first sessions besides)."""
    return datetime.fromtimestamp(_horizon_day(high_water, tuning) * 86400, UTC)


def _horizon_day(high_water: datetime, tuning: Tuning) -> int:
    """The UTC day (days since the epoch) on which the retention horizon of ``high_water`` falls."""
    return int((high_water - tuning.retention).timestamp() // 86400)


def _enrolled(state: PatientState, event: PatientEnrolled) -> None:
    d = event.data
    if state.enrollment is not None and (state.enrollment.enrolled_at, state.enrollment.event_id) >= (
        event.time,
        event.id,
    ):
        return  # a later re-enrollment already applied wins
    state.enrollment = Enrollment(
        level_of_care=d.level_of_care,
        program_start=d.program_start,
        planned_length_days=d.planned_length_days,
        weekly_plan=WeeklyPlan(
            group_sessions=d.weekly_plan.group_sessions,
            individual_sessions=d.weekly_plan.individual_sessions,
            hours=d.weekly_plan.hours,
            fellowship_meetings=d.weekly_plan.fellowship_meetings,
        ),
        counselor_id=d.counselor_id,
        supervisor_id=d.supervisor_id,
        population=d.population,
        enrolled_at=event.time,
        event_id=event.id,
    )


def _care_team_changed(state: PatientState, event: CareTeamChanged) -> None:
    d = event.data
    _insert_by_time(
        state.care_team_changes, CareTeamChange(d.counselor_id, d.supervisor_id, event.time, event.id)
    )


def _plan_changed(state: PatientState, event: TreatmentPlanChanged) -> None:
    d = event.data
    plan = WeeklyPlan(
        group_sessions=d.weekly_plan.group_sessions,
        individual_sessions=d.weekly_plan.individual_sessions,
        hours=d.weekly_plan.hours,
        fellowship_meetings=d.weekly_plan.fellowship_meetings,
    )
    _insert_by_time(state.plan_changes, PlanChange(d.effective_from, plan, event.time, event.id))


def _checked_in(state: PatientState, event: CheckInSubmitted) -> None:
    d = event.data
    _insert_by_time(
        state.checkins,
        CheckInRecord(
            at=event.time,
            craving=d.craving,
            mood=d.mood,
            sleep_hours=d.sleep_hours,
            use_reported=d.substance_use_reported,
            safety_concern=d.safety_concern,
            phq9_item9=d.phq9_item9,
            cssrs_positive=d.cssrs_positive,
            event_id=event.id,
        ),
    )
    if d.substance_use_reported:
        _insert_by_time(state.use_signals, UseSignal(at=event.time, kind="reported_use", event_id=event.id))


def _session(state: PatientState, event: SessionScheduled | SessionAttended | SessionMissed) -> None:
    d = event.data
    status: SessionStatus
    if isinstance(event, SessionAttended):
        status = "attended"
    elif isinstance(event, SessionMissed):
        status = "missed"
    else:
        status = "scheduled"
    record = SessionRecord(
        session_id=d.session_id,
        kind=d.kind,
        starts_at=d.starts_at,
        duration_minutes=d.duration_minutes,
        status=status,
        excused=isinstance(event, SessionMissed) and event.data.excused,
        decided_at=event.time,
        event_id=event.id,
    )
    current = state.sessions.get(d.session_id)
    if current is None or (_SESSION_PRECEDENCE[status], event.time, event.id) > (
        _SESSION_PRECEDENCE[current.status],
        current.decided_at,
        current.event_id,
    ):
        state.sessions[d.session_id] = record


def _house_report(state: PatientState, event: SoberLivingReported) -> None:
    d = event.data
    _insert_by_time(
        state.house_incidents,
        HouseIncident(at=d.observed_at, house_id=d.house_id, kind=d.kind, event_id=event.id),
    )
    if d.kind == "positive_test":
        _insert_by_time(
            state.use_signals, UseSignal(at=d.observed_at, kind="house_positive", event_id=event.id)
        )


def _family(
    state: PatientState,
    event: FamilyTherapyBooked | FamilyTherapyCancelled | FamilyTherapyAttended | FamilyTherapyNoShow,
) -> None:
    d = event.data
    status: FamilyStatus
    if isinstance(event, FamilyTherapyCancelled):
        status = "cancelled"
    elif isinstance(event, FamilyTherapyAttended):
        status = "attended"
    elif isinstance(event, FamilyTherapyNoShow):
        status = "no_show"
    else:
        status = "booked"
    current = state.family_bookings.get(d.booking_id)
    if current is None or (_FAMILY_PRECEDENCE[status], event.time, event.id) > (
        _FAMILY_PRECEDENCE[current.status],
        current.decided_at,
        current.event_id,
    ):
        state.family_bookings[d.booking_id] = FamilyBooking(
            booking_id=d.booking_id,
            provider_id=d.provider_id,
            starts_at=d.starts_at,
            status=status,
            cancelled_by=event.data.cancelled_by if isinstance(event, FamilyTherapyCancelled) else None,
            decided_at=event.time,
            event_id=event.id,
        )


def _screened(state: PatientState, event: ToxicologyResulted) -> None:
    unexpected: list[str] = sorted(event.data.unexpected_positives())
    if unexpected:
        _insert_by_time(
            state.use_signals,
            UseSignal(
                at=event.data.collected_at, kind="positive_screen", event_id=event.id, substances=unexpected
            ),
        )


def _fellowship(state: PatientState, event: FellowshipAttended) -> None:
    d = event.data
    if any(m.event_id == event.id for m in state.fellowship):
        return
    state.fellowship.append(
        FellowshipMeeting(
            attended_on=d.attended_on, fellowship=d.fellowship, verified=d.verified, event_id=event.id
        )
    )
    state.fellowship.sort(key=lambda m: (m.attended_on, m.event_id))


def _level_changed(state: PatientState, event: LevelOfCareChanged) -> None:
    d = event.data
    _insert_by_time(
        state.level_changes,
        LevelChange(
            at=event.time,
            from_level=d.from_level,
            to_level=d.to_level,
            reason_code=d.reason_code,
            event_id=event.id,
        ),
    )


def _discharged(state: PatientState, event: PatientDischarged) -> None:
    current = state.discharge
    if current is None or (event.time, event.id) > (current.at, current.event_id):
        state.discharge = Discharge(
            discharged_on=event.data.discharged_on,
            disposition=event.data.disposition,
            at=event.time,
            event_id=event.id,
        )


def _consent(state: PatientState, event: ConsentGranted | ConsentRevoked) -> None:
    d = event.data
    key = consent_key(d.recipient_kind, d.recipient_id)
    consent = state.consents.get(key)
    if consent is None:
        consent = state.consents[key] = Consent(recipient_kind=d.recipient_kind, recipient_id=d.recipient_id)
    if any(decision.event_id == event.id for decision in consent.decisions):
        return
    granted = isinstance(event, ConsentGranted)
    consent.decisions.append(
        ConsentDecision(
            at=event.time,
            granted=granted,
            scope=sorted(d.scope),
            expires_at=event.data.expires_at if isinstance(event, ConsentGranted) else None,
            event_id=event.id,
        )
    )
    consent.decisions.sort(key=lambda decision: (decision.at, decision.event_id))


_FOLD: dict[type, Callable[[PatientState, Any], None]] = {
    PatientEnrolled: _enrolled,
    CheckInSubmitted: _checked_in,
    SessionScheduled: _session,
    SessionAttended: _session,
    SessionMissed: _session,
    SoberLivingReported: _house_report,
    FamilyTherapyBooked: _family,
    FamilyTherapyCancelled: _family,
    FamilyTherapyAttended: _family,
    FamilyTherapyNoShow: _family,
    ToxicologyResulted: _screened,
    FellowshipAttended: _fellowship,
    LevelOfCareChanged: _level_changed,
    CareTeamChanged: _care_team_changed,
    TreatmentPlanChanged: _plan_changed,
    PatientDischarged: _discharged,
    ConsentGranted: _consent,
    ConsentRevoked: _consent,
}


def _prune(state: PatientState, tuning: Tuning) -> None:
    """Drop facts from before the retention horizon's day (UTC); keep the program's first sessions."""
    if state.high_water is None:
        return
    horizon = retention_horizon(state.high_water, tuning)
    # The lists are in time order: what goes is a head, found by bisection (a prune runs for every
    # patient every day; walking whole lists cost more than the rest of the fold).
    checkins = state.checkins
    if checkins and checkins[0].at < horizon:
        # Keep the last check-in whatever its age: silence is measured from it.
        state.checkins = checkins[bisect_left(checkins, horizon, hi=len(checkins) - 1, key=_at) :]
    if state.use_signals and state.use_signals[0].at < horizon:
        state.use_signals = state.use_signals[bisect_left(state.use_signals, horizon, key=_at) :]
    if state.house_incidents and state.house_incidents[0].at < horizon:
        state.house_incidents = state.house_incidents[bisect_left(state.house_incidents, horizon, key=_at) :]
    horizon_date = horizon.date()
    if state.fellowship and state.fellowship[0].attended_on < horizon_date:
        state.fellowship = state.fellowship[bisect_left(state.fellowship, horizon_date, key=_attended_on) :]
    old_sessions = [s for s in state.sessions.values() if s.starts_at < horizon]
    # The first sessions are the oldest of all, so they are the first among the old ones, and only
    # more old sessions than those kept can include one to drop.
    if len(old_sessions) > EARLY_SESSIONS_KEPT:
        old_sessions.sort(key=lambda s: (s.starts_at, s.session_id))
        for record in old_sessions[EARLY_SESSIONS_KEPT:]:
            del state.sessions[record.session_id]
    bookings_before = horizon - tuning.retention
    for booking in [b for b in state.family_bookings.values() if b.starts_at < bookings_before]:
        del state.family_bookings[booking.booking_id]
