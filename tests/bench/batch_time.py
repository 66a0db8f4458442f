"""End-to-end batch time before and after, side by side: ``python -m tests.bench.batch_time``
(``make bench-batch``).

Each contender is a source tree of iopcare: *before* is a git worktree of ``--before`` (default: the
commit before the patient-course work began), *after* is this checkout. For each, a child process
with that tree on ``PYTHONPATH`` creates a fresh database (migrated by that tree's own migrations)
on the same Postgres, and commits the same synthetic cohort (``--patients``, 90 days, seed 1) through
that tree's ``EngagementStore.commit_batch`` in event-time batches of ``--batch`` events (the
processor's batch), on the stream clock, timing each transaction: decode-free (the events are built
in the child), so this is the store plus the domain, what a worker does per batch besides Kafka.
The contenders alternate ``--rounds`` times so that a noisy neighbour hurts both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

from tests.bench.environment import BENCH_STATE_DIR
from tests.bench.processes import PROJECT_ROOT
from tests.databases import create, drop

BEFORE = "88b54f0"  # main before the patient-course work (issue: one patient process)

# Runs in the child, against whichever tree is on its path; only APIs both trees have.
_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from datetime import date, timedelta
    import asyncpg
    try:
        from iopcare.simulation import generate_cohort
    except ImportError:
        from iopcare.cohort import generate_cohort
    try:
        from iopcare.store.events import AcceptedEvent
    except ImportError:
        from iopcare.store.engagement import AcceptedEvent
    from iopcare.store.engagement import EngagementStore
    from iopcare.store.migrate import migrate_url

    async def main(url, patients, batch):
        await migrate_url(url)
        events = sorted(generate_cohort(patients, seed=1, start=date.today() - timedelta(days=91)),
                        key=lambda e: (e.time, e.id))
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        store = EngagementStore(pool, clock="stream")
        times = []
        for start in range(0, len(events), batch):
            chunk = [AcceptedEvent(e, 0, start + i) for i, e in enumerate(events[start:start + batch])]
            began = time.perf_counter()
            await store.commit_batch(chunk, [])
            times.append(time.perf_counter() - began)
        size = await pool.fetchval("SELECT pg_total_relation_size('patient_state')")
        await pool.close()
        import iopcare
        result = {"events": len(events), "times": times, "state_bytes": size, "code": iopcare.__file__}
        print(json.dumps(result))

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


def _worktree(commit: str) -> Path:
    place = Path(tempfile.gettempdir()) / f"iopcare-bench-{commit}"
    if not (place / "services").exists():
        subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "worktree", "add", "--detach", "--force", str(place), commit],
            check=True,
            capture_output=True,
        )
    return place


def _run(tree: Path, server_url: str, label: str, patients: int, batch: int) -> dict[str, object]:
    name = f"iopcare_batch_{label}_{uuid.uuid4().hex[:6]}"
    url = asyncio.run(create(server_url, name))  # migrated in the child, by that tree's migrations
    try:
        env = dict(os.environ, PYTHONPATH=str(tree / "services") + os.pathsep + str(PROJECT_ROOT))
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, url, str(patients), str(batch)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            cwd=tree,
        )
        if done.returncode != 0:
            raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
        result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        asyncio.run(drop(server_url, name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help="the commit to compare with (default %(default)s)")
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from iopcare.embedded import EmbeddedRuntime

    runtime = EmbeddedRuntime(BENCH_STATE_DIR)
    server_url = runtime.up().database_url
    trees = {"before": _worktree(args.before), "after": PROJECT_ROOT}
    results: dict[str, list[dict[str, object]]] = {label: [] for label in trees}
    try:
        for round_number in range(1, args.rounds + 1):
            for label, tree in trees.items():
                print(f"round {round_number}/{args.rounds}: {label} ({tree}) ...", flush=True)
                result = _run(tree, server_url, label, args.patients, args.batch)
                print(f"  ran {result['code']}: {sum(result['times']):.1f} s", flush=True)  # type: ignore[arg-type]
                results[label].append(result)
    finally:
        runtime.down()
    print(f"\n{args.patients} patients, 90 days, batches of {args.batch} events, {args.rounds} rounds each")
    print(
        f"{'':8} {'events':>7} {'median ms':>10} {'p90 ms':>8} {'total s':>8} {'events/s':>9} {'state MB':>9}"
    )
    for label, runs in results.items():
        times = [t for run in runs for t in run["times"]]  # type: ignore[attr-defined]
        totals = [sum(run["times"]) for run in runs]  # type: ignore[arg-type]
        events = int(runs[0]["events"])  # type: ignore[call-overload]
        cuts = statistics.quantiles(times, n=10)
        print(
            f"{label:8} {events:>7} {statistics.median(times) * 1000:>10.1f} {cuts[-1] * 1000:>8.1f} "
            f"{statistics.median(totals):>8.1f} {events / statistics.median(totals):>9.0f} "
            f"{int(runs[-1]['state_bytes']) / 1e6:>9.1f}"  # type: ignore[call-overload]
        )


if __name__ == "__main__":
    main()
