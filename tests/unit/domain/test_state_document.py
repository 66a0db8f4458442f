"""The stored state document: the current version round-trips, older versions are upgraded on read,
a newer one is refused."""

from __future__ import annotations

import json
from datetime import date

import pytest
from pydantic import TypeAdapter

from iopcare.domain.engagement import PatientState
from iopcare.domain.intake import replay
from iopcare.domain.state_document import STATE_VERSION, StateVersionError, dump_state, load_state
from iopcare.simulation import generate_cohort

STATES = replay(sorted(generate_cohort(8, seed=4, start=date(2026, 1, 5)), key=lambda e: (e.time, e.id)))


def test_the_current_version_round_trips_every_state() -> None:
    assert STATES and all(load_state(dump_state(s)) == s for s in STATES.values())


def test_a_version_1_document_is_upgraded_on_read() -> None:
    # Version 1 was the dataclasses as JSON objects (what the processor wrote before version 2).
    version_1 = TypeAdapter(PatientState)
    for state in STATES.values():
        assert load_state(version_1.dump_json(state), 1) == state


def test_the_compact_form_is_smaller() -> None:
    version_1 = TypeAdapter(PatientState)
    old = sum(len(version_1.dump_json(s)) for s in STATES.values())
    new = sum(len(dump_state(s).encode()) for s in STATES.values())
    assert new < 0.75 * old
    assert json.loads(dump_state(next(iter(STATES.values()))))["checkins"].keys() == {"columns", "rows"}


@pytest.mark.parametrize("version", [0, STATE_VERSION + 1])
def test_a_version_this_code_cannot_read_is_refused(version: int) -> None:
    with pytest.raises(StateVersionError, match=f"format version {version}"):
        load_state(dump_state(PatientState(patient_id="p-1")), version)


def test_every_record_collection_is_a_table_and_a_document_without_one_loads_its_default() -> None:
    """A collection added to PatientState is compact without a line in state_document.py, and the
    documents stored before it existed still load (with the field's default)."""
    state = max(STATES.values(), key=lambda s: len(s.fellowship))
    document = json.loads(dump_state(state))
    for name in ("level_changes", "checkins", "use_signals", "house_incidents", "fellowship"):
        assert set(document[name]) == {"columns", "rows"}, name
    for name in ("sessions", "family_bookings"):
        assert set(document[name]) == {"keys", "columns", "rows"}, name
    assert state.fellowship
    del document["fellowship"]
    loaded = load_state(json.dumps(document))
    assert loaded.fellowship == [] and loaded.checkins == state.checkins
