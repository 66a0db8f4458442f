"""Scenario 9, whole-group restart: every worker of the group goes at once, new ones take over.

Twice during the stream: first kill -9 of both workers (a node failure, a bad deploy), then, with
the stream still running, 10 s without any worker, two new processes; later a SIGTERM of both (a
full redeploy) and two new ones at once. While the group has no worker, the group lag measured from
the broker (:mod:`iopcare.grouplag`, what the operators' alert reads) must show the backlog; after
each restart the new workers must become ready holding every partition and processing must resume.
The outcome must meet the standard of :mod:`tests.reliability.exactness`.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from iopcare.grouplag import GroupLagProbe
from tests.integration.workers import WorkerProcess
from tests.reliability.exactness import (
    PacedStream,
    counts,
    finish_stream,
    healthy,
    stage,
    until,
    verify,
)
from tests.reliability.harness import Env, Outcome

NAME = "9. whole-group restart: every worker stopped, new ones started"
PARTITIONS = 8
GAP_SECONDS = 10.0


@dataclass(frozen=True)
class Plan:
    patients: int
    rate: float
    catch_up_within: float


FULL = Plan(patients=150, rate=600, catch_up_within=300)
QUICK = Plan(patients=12, rate=200, catch_up_within=240)


def _ready(worker: WorkerProcess) -> bool:
    try:
        with urllib.request.urlopen(f"{worker.url}/readyz", timeout=5) as response:
            return bool(json.loads(response.read())["checks"]["partitions"])
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return False


async def _resumed(
    database: str, workers: list[WorkerProcess], logged_before: int, distinct: int, within: float
) -> float:
    """Seconds until the new workers are healthy, the group holds every partition between them
    (each worker ready) and event_log has grown (unless it already held every event); raises
    TimeoutError."""
    started = time.monotonic()
    await healthy(workers)
    held = 0.0
    deadline = started + within
    while time.monotonic() < deadline:
        held = sum([await w.metric("iopcare_worker_assigned_partitions") for w in workers])
        logged, _ = await counts(database)
        if (
            held == PARTITIONS
            and all(_ready(w) for w in workers)
            and (logged > logged_before or logged == distinct)
        ):
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise TimeoutError(f"the new workers did not resume within {within:.0f}s (holding {held:.0f} partitions)")


async def run(env: Env, quick: bool) -> Outcome:
    plan = QUICK if quick else FULL
    ground = await stage(env, "group-restart", plan.patients, seed=64, partitions=PARTITIONS)
    expected, topics, database, fleet = ground.expected, ground.topics, ground.database, ground.fleet
    total = len(expected.payloads)
    figures = {"events": f"{total:,}", "workers": "2"}
    failures: list[str] = []
    probe = GroupLagProbe(env.kafka_bootstrap, fleet.app_id, topics.events_topic)
    await probe.start()
    try:
        workers = [fleet.start(), fleet.start()]
        await healthy(workers)
        stream = PacedStream(env.kafka_bootstrap, topics.events_topic, expected.payloads, plan.rate).start()
        stream_time = total / plan.rate

        # 1. The whole group killed; the stream goes on with nobody consuming.
        await until(lambda: stream.sent >= total // 3 or stream.done, within=stream_time + 60)
        for worker in workers:
            fleet.kill(worker)
        await asyncio.sleep(GAP_SECONDS)
        gap_lag = (await probe.measure()).behind
        figures["group lag after 10 s without workers"] = f"{gap_lag:,} records (from the broker)"
        if gap_lag == 0:
            failures.append("the group lag from the broker showed nothing while the group had no worker")
        logged, _ = await counts(database)
        workers = [fleet.start(), fleet.start()]
        resumed = await _resumed(database, workers, logged, expected.distinct, plan.catch_up_within)
        figures["after kill -9 of both"] = f"resumed {resumed:.1f} s after two new workers started"

        # 2. The whole group stopped gracefully (a redeploy) and replaced at once.
        await until(lambda: stream.sent >= 2 * total // 3 or stream.done, within=stream_time + 60)
        codes = [fleet.stop(worker) for worker in workers]
        if any(code not in (0, -15) for code in codes):
            failures.append(f"a stopped worker exited with {codes}")
        logged, _ = await counts(database)
        workers = [fleet.start(), fleet.start()]
        resumed = await _resumed(database, workers, logged, expected.distinct, plan.catch_up_within)
        figures["after SIGTERM of both"] = f"resumed {resumed:.1f} s after two new workers started"

        if await finish_stream(
            stream,
            fleet,
            database,
            expected.distinct,
            plan.rate,
            stream_time + 120,
            plan.catch_up_within,
            figures,
            failures,
        ):
            # The group commits its offsets within a second of the last batch: its lag reaches 0.
            final: list[int] = []

            async def committed_all() -> bool:
                final.append((await probe.measure()).behind)
                return final[-1] == 0

            for _ in range(60):
                if await committed_all():
                    break
                await asyncio.sleep(0.5)
            else:
                failures.append(f"group lag from the broker still {final[-1]} after catching up")
        verdict = await verify(database, env.kafka_bootstrap, topics, expected)
        failures += verdict.failures
        figures |= verdict.figures
    except (RuntimeError, TimeoutError) as exc:
        failures.append(str(exc))
    finally:
        await probe.close()
        failures += fleet.stop_all()
    return Outcome.of(NAME, figures, failures)
