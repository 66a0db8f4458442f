"""State bytes written per batch and the time to serialize them: before and after, side by side.

``python -m tests.bench.state_writes [--patients N] [--batch N]`` (``make bench-state``). Pure: it
folds a synthetic cohort in event-time batches of ``--batch`` events (the processor's batch size),
as the processor's batch would, and for every batch measures what the batch writes to
``patient_state.state``:

- *before* (the format and policy until version 2): every patient the batch touched, rewritten
  whether it changed or not, as version-1 JSON (one object per record);
- *after*: only the patients whose state changed (an event applied), as version-2 JSON (record
  collections as tables).

Both are computed on the same states in the same run. It measures serialization, not Postgres: the
bytes are what goes into the jsonb column (Postgres then compresses and WAL-logs them).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date, timedelta

from pydantic import TypeAdapter

from iopcare.domain.engagement import PatientState
from iopcare.domain.intake import Held, take_in
from iopcare.domain.state_document import dump_state
from iopcare.simulation import generate_cohort

VERSION_1 = TypeAdapter(PatientState)


def measure(patients: int, batch: int, seed: int = 1) -> dict[str, list[float]]:
    events = sorted(
        generate_cohort(patients, seed=seed, start=date.today() - timedelta(days=91)),
        key=lambda e: (e.time, e.id),
    )
    states: dict[str, PatientState] = {}
    held: dict[str, list[Held]] = {}
    out: dict[str, list[float]] = {
        k: [] for k in ("touched", "changed", "before_kb", "after_kb", "before_ms", "after_ms")
    }
    for start in range(0, len(events), batch):
        touched: set[str] = set()
        changed: set[str] = set()
        for event in events[start : start + batch]:
            pid = event.subject
            state = states.setdefault(pid, PatientState(patient_id=pid))
            waiting = held.setdefault(pid, [])
            intake = take_in(state, event, waiting)
            if intake.held is not None:
                waiting.append(intake.held)
            for released in intake.released:
                waiting.remove(released)
            touched.add(pid)
            if intake.applied:
                changed.add(pid)
        began = time.perf_counter()
        before = sum(len(VERSION_1.dump_json(states[pid])) for pid in touched)
        middle = time.perf_counter()
        after = sum(len(dump_state(states[pid]).encode()) for pid in changed)
        end = time.perf_counter()
        out["touched"].append(len(touched))
        out["changed"].append(len(changed))
        out["before_kb"].append(before / 1000)
        out["after_kb"].append(after / 1000)
        out["before_ms"].append((middle - began) * 1000)
        out["after_ms"].append((end - middle) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    print(
        f"folding a {args.patients}-patient 90-day cohort in batches of {args.batch} events ...", flush=True
    )
    out = measure(args.patients, args.batch)
    late = len(out["touched"]) // 2  # the second half of the program, when states are large
    print(f"{len(out['touched'])} batches; medians over all batches | over the second half:")
    for label, key in (
        ("patients touched per batch", "touched"),
        ("states changed per batch", "changed"),
        ("state KB written per batch, before", "before_kb"),
        ("state KB written per batch, after", "after_kb"),
        ("serialize ms per batch, before", "before_ms"),
        ("serialize ms per batch, after", "after_ms"),
    ):
        values = out[key]
        print(f"  {label:<38} {statistics.median(values):>9.1f} | {statistics.median(values[late:]):>9.1f}")
    total_before, total_after = sum(out["before_kb"]), sum(out["after_kb"])
    print(
        f"  total state MB written: before {total_before / 1000:.1f}, after {total_after / 1000:.1f} "
        f"({100 * (1 - total_after / total_before):.0f} % less)"
    )


if __name__ == "__main__":
    main()
