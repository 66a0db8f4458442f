"""`iopcare replay --jobs N`: a file split by patient across processes gives exactly the result of one
process, on time-ordered and out-of-order streams, with invalid lines, and for any number of parts."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pytest

from iopcare.contract import encode_event
from iopcare.domain.backtest import Tick, merged, run_backtest
from iopcare.replay import replay_file, shard_of
from iopcare.rulepacks import DEFAULT_PACK
from iopcare.simulation import generate_cohort, write_ndjson

EVENTS = sorted(generate_cohort(24, seed=5, start=date(2026, 1, 5)), key=lambda e: (e.time, e.id))


def _shuffled_lines() -> list[bytes]:
    """The cohort a little out of order (backfills within a few hours), with broken lines."""
    lines = [encode_event(event) for event in EVENTS]
    rnd = random.Random(11)
    for i in range(0, len(lines) - 20, 2):
        j = i + rnd.randrange(20)
        lines[i], lines[j] = lines[j], lines[i]
    for n in range(8):
        lines.insert(rnd.randrange(len(lines)), b'{"specversion": "1.0", "broken": ' + str(n).encode())
    lines.insert(50, b"\n")  # a blank line is skipped, not counted
    return lines


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("split")
    ordered = folder / "ordered.ndjson"
    write_ndjson(EVENTS, ordered)
    shuffled = folder / "shuffled.ndjson"
    shuffled.write_bytes(b"\n".join(_shuffled_lines()) + b"\n")
    return {"ordered": ordered, "shuffled": shuffled}


@pytest.mark.parametrize("name", ["ordered", "shuffled"])
def test_a_split_replay_gives_exactly_the_single_process_result(files: dict[str, Path], name: str) -> None:
    single = replay_file(files[name], DEFAULT_PACK, jobs=1)
    assert single.jobs == 1
    assert len(single.result.alerts) > 100, "the cohort should raise a fair number of alerts"
    if name == "shuffled":
        assert single.invalid_lines == {"invalid_json": 8}
    for jobs in (2, 3):
        split = replay_file(files[name], DEFAULT_PACK, jobs=jobs)
        assert split.jobs == jobs, "the split should not have been abandoned"
        assert split.result == single.result  # every alert field by field, changes, counts, time
        assert list(split.result.alerts) == list(single.result.alerts)  # same order too
        assert split.invalid_lines == single.invalid_lines


def test_progress_is_reported_by_a_split_replay(files: dict[str, Path]) -> None:
    seen: list[tuple[int, int, int]] = []
    result = replay_file(files["ordered"], DEFAULT_PACK, lambda *p: seen.append(p), jobs=2).result
    total = files["ordered"].stat().st_size
    assert seen[-1] == (total, total, result.events)
    assert all(read <= total and events <= result.events for read, total_, events in seen)


def test_a_line_whose_raw_subject_misleads_the_split_falls_back_to_one_process(tmp_path: Path) -> None:
    """The split routes a line by the subject it finds in the raw bytes; JSON may spell the key with
    an escape, which the validator reads as `subject` but the split does not see. Then the file is
    replayed in one process: same result, nothing lost."""
    patient = next(e.subject for e in EVENTS if shard_of(e.subject.encode(), 2) == 1)
    lines = [encode_event(event) for event in EVENTS]
    index = next(i for i, e in enumerate(EVENTS) if e.subject == patient)
    lines[index] = lines[index].replace(b'"subject"', b'"subj\\u0065ct"', 1)
    path = tmp_path / "escaped.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    run = replay_file(path, DEFAULT_PACK, jobs=2)
    assert run.jobs == 1
    assert run.invalid_lines == {}
    assert run.result == run_backtest(EVENTS, DEFAULT_PACK)


def test_a_patients_share_of_a_backtest_does_not_depend_on_the_others() -> None:
    """The engine's own promise, without processes: ticks for the other patients' events give each
    part its patients' alerts, and the parts add up to the whole."""
    whole = run_backtest(EVENTS, DEFAULT_PACK)
    parts = []
    for shard in range(3):
        mine = [e if shard_of(e.subject.encode(), 3) == shard else Tick(e.time) for e in EVENTS]
        part = run_backtest(mine, DEFAULT_PACK)
        assert all(shard_of(a.patient_id.encode(), 3) == shard for a in part.alerts.values())
        parts.append(part)
    assert merged(parts) == whole
