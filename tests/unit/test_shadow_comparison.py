"""A candidate pack beside the active one (iopcare.evaluation.shadow): per rule, what switching
keeps, drops (and how many of the dropped alerts the counselors had overridden) and adds."""

from __future__ import annotations

from iopcare.evaluation.shadow import ShadowAlert, compare_packs


def test_switching_shows_what_it_keeps_drops_and_adds_with_the_counselors_verdict_on_the_dropped() -> None:
    active = [
        ShadowAlert("p1:silence:a", "silence", "inbox"),
        ShadowAlert("p1:silence:b", "silence", "inbox"),
        ShadowAlert("p2:silence:c", "silence", "inbox"),
        ShadowAlert("p2:safety:d", "safety", "page"),
    ]
    candidate = [
        ShadowAlert("p1:silence:a", "silence", "digest"),
        ShadowAlert("p2:safety:d", "safety", "page"),
        ShadowAlert("p3:mood_low:e", "mood_low", "inbox"),
    ]
    outcomes = {"p1:silence:b": "false_alarm", "p2:silence:c": "contacted_patient", "p2:safety:d": None}
    shifts = {s.rule_id: s for s in compare_packs(active, candidate, outcomes)}
    silence = shifts["silence"]
    assert (silence.active, silence.candidate, silence.kept, silence.dropped, silence.added) == (
        3,
        1,
        1,
        2,
        0,
    )
    assert (silence.dropped_judged, silence.dropped_overridden) == (2, 1)
    assert silence.tiers == {"active": "inbox", "candidate": "digest"}
    assert shifts["safety"].summary()["kept"] == 1 and shifts["safety"].dropped == 0
    assert shifts["mood_low"].added == 1 and shifts["mood_low"].active == 0
    assert list(shifts) == ["mood_low", "safety", "silence"]
