"""Missed sessions: misses in a row, misses often, misses among the first sessions, and the
corrections that take a miss back.

Sessions are judged by their start time, so a backfilled attendance lands where it belongs. Excused
misses (agreed with the care team in advance) are not disengagement: they neither count as misses nor
break a run of misses. The program weeks against the plan are in :mod:`.weeks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from operator import attrgetter

from iopcare.contract import PatientEnrolled, SessionAttended, SessionMissed
from iopcare.domain.engagement import (
    PatientState,
    SessionRecord,
)
from iopcare.domain.rules.evidence import chain_start, clearance, signal
from iopcare.domain.rules.pack import RulePack
from iopcare.domain.rules.wording import count, day, day_time, listing
from iopcare.domain.signals import Finding

MISSES_ACTION = (
    "Reach the patient within a day: ask what is getting in the way (transport, work, childcare, "
    "motivation), re-engage, and agree on the next sessions."
)
MISSED_OFTEN_ACTION = (
    "Reach the patient today and review engagement with the treatment team: barriers, motivation, and "
    "whether the current level of care still fits."
)
EARLY_ACTION = (
    "Contact the patient within a day: early absences predict dropping out. Address barriers now and "
    "confirm the schedule for the coming week."
)

WEEK = timedelta(days=7)


def _miss(session: SessionRecord) -> bool:
    return session.status == "missed" and not session.excused


SESSION_ORDER: Callable[[SessionRecord], tuple[datetime, str]] = attrgetter("starts_at", "session_id")
"""Sessions in start order, ties by id (as :func:`~iopcare.domain.measures.sessions_by_time`)."""


def _the_miss(state: PatientState, event: SessionMissed) -> SessionRecord | None:
    """The session this event marked missed, unexcused, if the state still says so (a later
    correction, an excuse, or an attendance may have overridden it)."""
    record = state.sessions.get(event.data.session_id)
    if record is None or record.event_id != event.id or not _miss(record):
        return None
    return record


# A correction: the front desk records a session as attended, or the care team marks a miss excused,
# after it was recorded as an unexcused miss. The later decision wins in the state, which keeps only
# the outcome in force: so no rule can tell a correction from a first record. At every record of
# attended or excused, the misses rules judge again the episodes a miss *there* would have been part
# of, without it, and clear those that no longer hold (a clearance of an alert that never existed
# changes nothing). As everywhere in these rules, an episode clears only once its name cannot come
# back (a resolved alert never reopens): a run that an excuse shortened waits for its end, and the
# program's early disengagement for its first sessions to be all recorded. A record that arrives
# before the miss it supersedes is not a correction: the miss then arrives overridden and raises
# nothing (`_the_miss`).


def _no_longer_a_miss(state: PatientState, event: SessionAttended | SessionMissed) -> SessionRecord | None:
    """The session this event recorded as attended or as an excused miss, if the state still says so:
    it may have corrected an unexcused miss."""
    record = state.sessions.get(event.data.session_id)
    if record is None or record.event_id != event.id or _miss(record):
        return None
    return record


def _now_recorded(record: SessionRecord, pack: RulePack) -> str:
    """``the group session on Thu 6 Mar is now recorded as attended`` (or ``as excused``)."""
    outcome = "attended" if record.status == "attended" else "excused"
    when = day(record.starts_at, pack.program_calendar.zone)
    return f"the {record.kind} session on {when} is now recorded as {outcome}"


def _restated(record: SessionRecord, pack: RulePack) -> str:
    """The sentence that ends an alert re-stated after ``record`` (its explanation says why it changed)."""
    return f" Updated: {_now_recorded(record, pack)}."


def _last_decided(misses: list[SessionRecord]) -> datetime:
    """When the latest of these misses was recorded: the time of an alert re-stated after a
    correction, which is no new trigger (its last trigger stays the latest miss)."""
    return max(m.decided_at for m in misses)


def _recorded_late(sessions: Iterable[SessionRecord], record: SessionRecord) -> bool:
    """Had a session that began after ``record``'s ended an outcome already? Then ``record`` is a
    correction or a late record, and an alert it leaves standing is re-stated without it. The record
    of the latest session cannot be told from a correction of it: re-stating then would update the
    alert at every attendance that follows a miss, each counted as one more occurrence, so that
    alert keeps its words until its next trigger. (Sessions that overlap are recorded in any order:
    an attendance is recorded at its end.)"""
    ended = record.starts_at + timedelta(minutes=record.duration_minutes)
    return any(s.status != "scheduled" and s.starts_at >= ended for s in sessions)


def _one_of_the_first(sessions: Iterable[SessionRecord], record: SessionRecord, first: int) -> bool:
    """Is ``record`` one of the ``first`` sessions (in start order)? Most are not: stop counting the
    sessions before it at ``first``."""
    here = SESSION_ORDER(record)
    before = 0
    for session in sessions:
        if SESSION_ORDER(session) < here:
            before += 1
            if before >= first:
                return False
    return True


def _sessions_text(sessions: list[SessionRecord], pack: RulePack) -> tuple[str, str]:
    """(``group sessions``, ``Tue 4 Mar, Thu 6 Mar``) or, for mixed kinds, (``sessions``, ``Tue 4 Mar
    (group), Wed 5 Mar (individual)``)."""
    zone = pack.program_calendar.zone
    dates = [day(s.starts_at, zone) for s in sessions]
    if len(set(dates)) < len(dates):  # two on one day: say the times
        dates = [day_time(s.starts_at, zone) for s in sessions]
    kinds = {s.kind for s in sessions}
    if len(kinds) == 1:
        return f"{kinds.pop()} sessions", listing(dates)
    return "sessions", listing([f"{when} ({s.kind})" for when, s in zip(dates, sessions, strict=True)])


# --- missed in a row -----------------------------------------------------------------------------


def run_of_misses(
    ordered: list[SessionRecord], session_id: str
) -> tuple[list[SessionRecord], SessionRecord | None]:
    """The run of unexcused misses that contains ``session_id``, and the attended session before it:
    an attended session ends a run; excused misses and sessions without an outcome neither extend
    nor end it."""
    run: list[SessionRecord] = []
    before: SessionRecord | None = None
    found = False
    for session in ordered:
        if session.status == "attended":
            if found:
                break
            run, before = [], session
        elif _miss(session):
            run.append(session)
            found = found or session.session_id == session_id
    return (run, before) if found else ([], None)


def _misses_around(
    ordered: list[SessionRecord], index: int
) -> tuple[list[SessionRecord], SessionRecord | None, list[SessionRecord], SessionRecord | None]:
    """The unexcused misses between the session at ``index`` and the attended sessions on either side
    of it, and those attended sessions (None: there is none yet)."""
    before: list[SessionRecord] = []
    previous: SessionRecord | None = None
    for session in reversed(ordered[:index]):
        if session.status == "attended":
            previous = session
            break
        if _miss(session):
            before.append(session)
    before.reverse()
    after: list[SessionRecord] = []
    following: SessionRecord | None = None
    for session in ordered[index + 1 :]:
        if session.status == "attended":
            following = session
            break
        if _miss(session):
            after.append(session)
    return before, previous, after, following


def _run_signal(
    run: list[SessionRecord],
    before: SessionRecord | None,
    pack: RulePack,
    at: datetime,
    event_ids: list[str],
    note: str = "",
) -> Finding:
    """The alert of a run of misses (one episode per run, named after its first miss)."""
    rule = pack.rules.missed_in_a_row
    zone = pack.program_calendar.zone
    noun, dates = _sessions_text(run, pack)
    last_seen = (
        f" The last session attended was on {day(before.starts_at, zone)} ({before.kind})."
        if before
        else " No session has been attended yet."
    )
    return signal(
        "missed_in_a_row",
        rule,
        severity=rule.severity,
        episode=run[0].session_id,
        title=f"{len(run)} unexcused missed {noun} in a row",
        explanation=f"{len(run)} unexcused missed {noun} in a row: {dates}.{last_seen}{note}",
        action=MISSES_ACTION,
        at=at,
        event_ids=event_ids,
        facts={
            "misses_in_a_row": len(run),
            "threshold": rule.misses,
            "first_missed_at": run[0].starts_at.isoformat(),
            "last_missed_at": run[-1].starts_at.isoformat(),
            "last_attended_at": before.starts_at.isoformat() if before else None,
        },
    )


def missed_in_a_row(state: PatientState, event: SessionMissed, pack: RulePack) -> list[Finding]:
    """``misses`` (2) unexcused missed sessions in a row. One episode per run, named after its first
    miss: the 3rd, 4th... miss of the run updates the same alert."""
    rule = pack.rules.missed_in_a_row
    record = _the_miss(state, event)
    if record is None:
        return []
    if sum(1 for s in state.sessions.values() if s.status == "missed" and not s.excused) < rule.misses:
        return []  # no run can be long enough
    ordered = sorted(state.sessions.values(), key=SESSION_ORDER)
    run, before = run_of_misses(ordered, record.session_id)
    if len(run) < rule.misses:
        return []
    return [_run_signal(run, before, pack, event.time, [s.event_id for s in reversed(run)])]


def run_of_misses_ended(
    state: PatientState, event: SessionAttended | SessionMissed, pack: RulePack
) -> list[Finding]:
    """A session recorded as attended or as an excused miss, and the runs of misses around it.

    An attended session ends the run before it: that episode clears. The record may also correct an
    unexcused miss, so the run a miss here was part of (named after the first miss before it, or
    after this session) is judged without it:

    - an attended session ends it, and its alert clears (with fewer than ``misses`` in a row left,
      the reason says so); the misses after it are a run of their own, raised now (with its own
      alert) if they are enough and no session was attended since;
    - an excused session neither counts nor breaks a run. If it was the run's first miss, the run's
      name goes with it: that alert clears and the rest, if still long enough, is a run of its own.
      Otherwise the run keeps its name: while it still holds it keeps its alert, re-stated without
      the session if it was recorded late (:func:`_recorded_late`); when it no longer holds, it
      clears at its end (the next attended session), not now: the next miss would make it hold
      again under the same name, and a resolved alert never reopens.
    """
    rule = pack.rules.missed_in_a_row
    record = _no_longer_a_miss(state, event)
    if record is None:
        return []
    sessions = state.sessions.values()
    # Attendance is the most frequent event and usually follows no miss: look closer only if a miss
    # here could have made a run at all.
    if sum(1 for s in sessions if s.status == "missed" and not s.excused) < rule.misses - 1:
        return []
    ordered = sorted(sessions, key=SESSION_ORDER)
    index = next(i for i, s in enumerate(ordered) if s is record)
    before, previous, after, following = _misses_around(ordered, index)
    if len(before) + 1 + len(after) < rule.misses:
        return []  # even as a miss it was in no run long enough to alert
    attended = record.status == "attended"
    named = before[0] if before else record  # the run a miss here was in was named after it
    # What is left of that run without it (an attendance ends it, an excused miss neither counts nor
    # breaks it), and the misses after it that are now a run of their own.
    left = (before if attended else before + after) if before else []
    own = after if attended or not before else []
    zone = pack.program_calendar.zone
    recorded = _now_recorded(record, pack)
    findings: list[Finding] = []
    if attended and len(before) >= rule.misses:
        reason = (
            f"attended {record.kind} on {day(record.starts_at, zone)}: the run of "
            f"{count(len(before), 'missed session')} ended"
        )
        findings.append(clearance("missed_in_a_row", reason, event.time, named.session_id))
    elif len(own) >= rule.misses:
        reason = f"{recorded}: the run of misses now begins on {day(own[0].starts_at, zone)}"
        findings.append(clearance("missed_in_a_row", reason, event.time, named.session_id))
    elif len(left) < rule.misses:
        if attended or not before:  # ended here, or its name is gone
            reason = f"{recorded}: no longer {rule.misses} unexcused misses in a row"
            findings.append(clearance("missed_in_a_row", reason, event.time, named.session_id))
    elif following is None and _recorded_late(ordered[index + 1 :], record):
        ids = [event.id, *(s.event_id for s in reversed(left))]
        findings.append(_run_signal(left, previous, pack, _last_decided(left), ids, _restated(record, pack)))
    if len(own) >= rule.misses and following is None:
        ids = [event.id, *(s.event_id for s in reversed(own))]
        last_attended = record if attended else previous
        findings.append(
            _run_signal(own, last_attended, pack, _last_decided(own), ids, _restated(record, pack))
        )
    return findings


# --- missed often --------------------------------------------------------------------------------


def _often(misses: list[SessionRecord], window: timedelta, at_least: int) -> list[bool]:
    """For each miss (in time order): were there ``at_least`` misses in the ``window`` up to it?"""
    flags: list[bool] = []
    low = 0
    for index, miss in enumerate(misses):
        while miss.starts_at - misses[low].starts_at > window:
            low += 1
        flags.append(index - low + 1 >= at_least)
    return flags


def _often_episodes(
    misses: list[SessionRecord], window: timedelta, at_least: int
) -> list[list[SessionRecord]]:
    """The episodes of frequent misses: each qualifying miss (``at_least`` in the ``window`` up to it),
    with the one before it if that is within ``window``; an episode is named after its first."""
    episodes: list[list[SessionRecord]] = []
    for miss, flag in zip(misses, _often(misses, window, at_least), strict=True):
        if not flag:
            continue
        if episodes and miss.starts_at - episodes[-1][-1].starts_at <= window:
            episodes[-1].append(miss)
        else:
            episodes.append([miss])
    return episodes


def _often_signal(
    misses: list[SessionRecord],
    index: int,
    first: SessionRecord,
    pack: RulePack,
    at: datetime,
    event_ids: tuple[str, ...] = (),
    note: str = "",
) -> Finding:
    """The alert of the episode named after ``first``, as of its qualifying miss ``misses[index]``."""
    rule = pack.rules.missed_often
    record = misses[index]
    recent = [m for m in misses[: index + 1] if record.starts_at - m.starts_at <= rule.window]
    noun, dates = _sessions_text(recent, pack)
    return signal(
        "missed_often",
        rule,
        severity=rule.severity,
        episode=first.session_id,
        title=f"{len(recent)} unexcused missed {noun} in {rule.days} days",
        explanation=(
            f"{len(recent)} unexcused missed {noun} in the {rule.days} days up to "
            f"{day(record.starts_at, pack.program_calendar.zone)}: {dates} "
            f"(the threshold is {rule.misses}).{note}"
        ),
        action=MISSED_OFTEN_ACTION,
        at=at,
        continues_within=rule.window,
        event_ids=[*event_ids, *(s.event_id for s in reversed(recent))],
        facts={
            "misses": len(recent),
            "threshold": rule.misses,
            "window_days": rule.days,
            "first_missed_at": recent[0].starts_at.isoformat(),
            "last_missed_at": recent[-1].starts_at.isoformat(),
        },
    )


def missed_often(state: PatientState, event: SessionMissed, pack: RulePack) -> list[Finding]:
    """At least ``misses`` (3) unexcused missed sessions in ``days`` (14). Misses that keep the
    pattern going (each within ``days`` of the previous such miss) are one episode."""
    rule = pack.rules.missed_often
    record = _the_miss(state, event)
    if record is None:
        return []
    misses = sorted(
        [s for s in state.sessions.values() if s.status == "missed" and not s.excused], key=SESSION_ORDER
    )
    if len(misses) < rule.misses:
        return []
    window = rule.window
    index = next(i for i, s in enumerate(misses) if s.session_id == record.session_id)
    flags = _often(misses, window, rule.misses)
    if not flags[index]:
        return []
    triggers = [m for m, flag in zip(misses[: index + 1], flags, strict=False) if flag]
    first = triggers[chain_start([t.starts_at for t in triggers], len(triggers) - 1, window)]
    return [_often_signal(misses, index, first, pack, event.time)]


def missed_often_corrected(
    state: PatientState, event: SessionAttended | SessionMissed, pack: RulePack
) -> list[Finding]:
    """A session recorded as attended or as an excused miss: the episodes of frequent misses a miss
    here would have been part of, judged again without it.

    An episode clears when none of its qualifying misses qualifies any more (or what is left of it can
    no longer grow). Otherwise it keeps its alert, re-stated without the session if it was recorded
    late (:func:`_recorded_late`). When its first qualifying miss no longer qualifies but later ones
    do, the rule's name for it moves on to the first of those, and the lifecycle continues the
    alert under its old name (``continues_within``, as for an episode longer than the history kept).
    """
    rule = pack.rules.missed_often
    record = _no_longer_a_miss(state, event)
    if record is None:
        return []
    window = rule.window
    sessions = state.sessions.values()
    # Only misses within the window on either side of it could have made a pattern with a miss here.
    start = record.starts_at
    near = sum(
        1 for s in sessions if s.status == "missed" and not s.excused and abs(s.starts_at - start) <= window
    )
    if near < rule.misses - 1:
        return []
    misses = sorted((s for s in sessions if _miss(s)), key=SESSION_ORDER)
    had_it_been_missed = _often_episodes(sorted([*misses, record], key=SESSION_ORDER), window, rule.misses)
    episodes = _often_episodes(misses, window, rule.misses)
    now = {episode[0].session_id: episode for episode in episodes}
    late: bool | None = None  # (computed once, when needed)
    restated: dict[str, list[SessionRecord]] = {}  # by name: the episodes to re-state
    findings: list[Finding] = []
    for then in had_it_been_missed:
        # Only an episode whose latest qualifying miss had this session in its window changed.
        if not timedelta(0) <= then[-1].starts_at - record.starts_at <= window:
            continue
        kept = now.get(then[0].session_id)
        names = {m.session_id for m in then}
        going_on = (
            [kept]
            if kept is not None
            else [
                e
                for e in episodes
                if any(m.session_id in names for m in e) and event.time - e[-1].starts_at <= window
            ]
        )
        if not going_on:
            reason = (
                f"{_now_recorded(record, pack)}: fewer than {rule.misses} unexcused misses in "
                f"{rule.days} days"
            )
            findings.append(clearance("missed_often", reason, event.time, then[0].session_id))
            continue
        # Still an episode (under the same name, or renamed: then the lifecycle continues its alert).
        if late is None:
            late = _recorded_late(sessions, record)
        if late:
            restated.update((e[0].session_id, e) for e in going_on)
    for episode in restated.values():
        index = misses.index(episode[-1])
        ids = (event.id,)
        note = _restated(record, pack)
        findings.append(_often_signal(misses, index, episode[0], pack, _last_decided(episode), ids, note))
    return findings


def missed_often_over(state: PatientState, at: datetime, pack: RulePack) -> list[Finding]:
    """At the first week close after an episode's last qualifying miss is more than ``days`` old, the
    episode can no longer grow: it clears (so its name is never reused). Every episode is judged on its
    own: a new run of misses does not keep an ended one open."""
    rule = pack.rules.missed_often
    misses = sorted((s for s in state.sessions.values() if _miss(s) and s.starts_at <= at), key=SESSION_ORDER)
    window = rule.window
    return [
        clearance(
            "missed_often",
            f"fewer than {rule.misses} unexcused misses in any {rule.days} days since "
            f"{day(episode[-1].starts_at, pack.program_calendar.zone)}",
            at,
            episode[0].session_id,
            continues_within=window,
        )
        for episode in _often_episodes(misses, window, rule.misses)
        if window < at - episode[-1].starts_at <= window + WEEK
    ]


# --- early disengagement -------------------------------------------------------------------------


def _early_signal(
    state: PatientState,
    missed: list[SessionRecord],
    pack: RulePack,
    at: datetime,
    event_ids: tuple[str, ...] = (),
    note: str = "",
) -> Finding:
    """The program's early-disengagement alert over the unexcused misses among its first sessions."""
    rule = pack.rules.early_disengagement
    assert state.enrollment is not None
    program_start = state.enrollment.program_start
    zone = pack.program_calendar.zone
    noun, dates = _sessions_text(missed, pack)
    return signal(
        "early_disengagement",
        rule,
        severity=rule.severity,
        episode=f"program-{program_start.isoformat()}",
        title=f"Unexcused miss in the first {rule.first_sessions} sessions",
        explanation=(
            f"Missed {count(len(missed), 'unexcused ' + noun.removesuffix('s'), 'unexcused ' + noun)} "
            f"({dates}) among the first {rule.first_sessions} sessions of the program, which started on "
            f"{day(program_start, zone)}. Patients with no absence in their first 5 sessions "
            f"complete the program in 63-79 % of cases.{note}"
        ),
        action=EARLY_ACTION,
        at=at,
        event_ids=[*event_ids, *(s.event_id for s in reversed(missed))],
        facts={
            "early_misses": len(missed),
            "threshold": rule.misses,
            "first_sessions": rule.first_sessions,
            "program_start": program_start.isoformat(),
        },
    )


def early_disengagement(
    state: PatientState, event: SessionMissed | PatientEnrolled, pack: RulePack
) -> list[Finding]:
    """An unexcused miss among the program's first ``first_sessions`` (5) sessions. One episode per
    program (named after its start date).

    Both halves can come last: the miss, or the enrollment when the EHR sent it after the first
    sessions' attendance (within the lateness window). Judging only at the miss lost the alert then.
    """
    rule = pack.rules.early_disengagement
    enrollment = state.enrollment
    if enrollment is None:
        return []
    if isinstance(event, PatientEnrolled):
        if enrollment.event_id != event.id:
            return []  # an older enrollment than the one in force
    else:
        record = _the_miss(state, event)
        if record is None:
            return []
        if not _one_of_the_first(state.sessions.values(), record, rule.first_sessions):
            return []  # (most misses are later in the program)
    first = sorted(state.sessions.values(), key=SESSION_ORDER)[: rule.first_sessions]
    missed = [s for s in first if _miss(s)]
    if len(missed) < rule.misses:
        return []
    return [_early_signal(state, missed, pack, event.time)]


def early_disengagement_corrected(
    state: PatientState, event: SessionAttended | SessionMissed, pack: RulePack
) -> list[Finding]:
    """One of the program's first sessions recorded as attended or as an excused miss: had it been a
    miss, is what is left still early disengagement?

    With fewer than ``misses`` unexcused misses left among the first sessions, the program's episode
    clears once the first sessions are all recorded (before that, another of them could still be
    missed, under the same name, and a resolved alert never reopens). With enough left, the alert
    stays, re-stated without the session if it was recorded late (:func:`_recorded_late`)."""
    rule = pack.rules.early_disengagement
    enrollment = state.enrollment
    if enrollment is None:
        return []
    record = _no_longer_a_miss(state, event)
    if record is None:
        return []
    if not _one_of_the_first(state.sessions.values(), record, rule.first_sessions):
        return []
    ordered = sorted(state.sessions.values(), key=SESSION_ORDER)
    missed = [s for s in ordered[: rule.first_sessions] if _miss(s)]
    if len(missed) + 1 < rule.misses:
        return []  # even as a miss it made no early disengagement
    if len(missed) < rule.misses:
        first = ordered[: rule.first_sessions]
        if len(first) < rule.first_sessions or any(s.status == "scheduled" for s in first):
            return []  # another first session can still be missed: judged when they are all recorded
        left = (
            "no unexcused miss"
            if not missed
            else f"{count(len(missed), 'unexcused miss', 'unexcused misses')} (fewer than {rule.misses})"
        )
        reason = f"{_now_recorded(record, pack)}: {left} among the first {rule.first_sessions} sessions"
        episode = f"program-{enrollment.program_start.isoformat()}"
        return [clearance("early_disengagement", reason, event.time, episode)]
    if not _recorded_late(ordered, record):
        return []
    note = _restated(record, pack)
    return [_early_signal(state, missed, pack, _last_decided(missed), (event.id,), note)]


# --- the week against the plan -------------------------------------------------------------------
