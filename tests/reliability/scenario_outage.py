"""Scenario 3, Postgres outage: Postgres stops for 10-30 s mid-stream, then starts again.

What must hold: the workers wait (the batch is retried with backoff, never acked without its
transaction; no process exits or is restarted), ``/readyz`` says 503 with ``postgres: false`` while
Postgres is away and 200 once it is back, and afterwards nothing is lost or doubled (the standard of
:mod:`tests.reliability.exactness`). Needs the embedded Postgres (it is stopped with ``pg_ctl``);
against an external server the scenario is skipped.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from tests.integration.workers import WorkerProcess
from tests.reliability.exactness import (
    PacedStream,
    healthy,
    stage,
    until,
    verify,
    wait_processed,
)
from tests.reliability.harness import Env, Outcome

NAME = "3. Postgres outage mid-stream"
PARTITIONS = 8


@dataclass(frozen=True)
class Plan:
    patients: int
    rate: float
    outage: float  # seconds Postgres stays down
    catch_up_within: float


FULL = Plan(patients=120, rate=600, outage=25, catch_up_within=300)
QUICK = Plan(patients=12, rate=300, outage=10, catch_up_within=240)


def readiness(worker: WorkerProcess) -> tuple[int, dict[str, bool]]:
    """(HTTP status, checks) of the worker's ``/readyz``; (0, {}) when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())["checks"]
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["checks"]
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return 0, {}


async def run(env: Env, quick: bool, *, crash: bool = False, name: str = NAME) -> Outcome:
    """The outage; with ``crash``, Postgres is killed instead of shut down (``pg_ctl stop -m
    immediate``: no checkpoint, every backend quits at once, the WAL is replayed on start), so only
    what was flushed to disk when it committed survives (scenario_postgres_crash)."""
    if env.runtime is None:
        return Outcome.of(
            name, {"skipped": "external Postgres: only the embedded one can be stopped here"}, []
        )
    runtime = env.runtime
    # A crash runs at full size even in the quick run: losing commits needs many of them in flight at
    # the kill (with fsync and synchronous_commit off the full size lost 90 of 28,897 events; the
    # quick size lost none), and it takes about a minute when nothing is lost.
    plan = FULL if crash or not quick else QUICK
    ground = await stage(
        env, "crash-pg" if crash else "outage", plan.patients, seed=63, partitions=PARTITIONS
    )
    expected, topics, database, fleet = ground.expected, ground.topics, ground.database, ground.fleet
    total = len(expected.payloads)
    figures = {"events": f"{total:,}", "workers": "2", "stop": "immediate (crash)" if crash else "fast"}
    failures: list[str] = []
    down = False
    try:
        workers = [fleet.start(), fleet.start()]
        pids = [w.process.pid for w in workers]
        await healthy(workers)
        if await _ready_again(workers, within=60) is None:
            failures.append("a worker was not ready before the outage")
        stream = PacedStream(env.kafka_bootstrap, topics.events_topic, expected.payloads, plan.rate).start()
        await until(lambda: stream.sent >= total // 3 or stream.done, within=total / plan.rate + 60)

        await asyncio.to_thread(runtime.stop_postgres, crash=crash)
        down, stopped = True, time.monotonic()
        not_ready: dict[int, float] = {}  # worker index -> seconds from the stop to its first 503
        while time.monotonic() - stopped < plan.outage:
            for index, (status, checks) in enumerate(await _probe(workers)):
                if status == 503 and checks.get("postgres") is False:
                    not_ready.setdefault(index, time.monotonic() - stopped)
            await asyncio.sleep(0.5)
        await asyncio.to_thread(runtime.start_postgres)
        down, restarted = False, time.monotonic()
        outage = restarted - stopped
        figures["outage"] = f"{outage:.1f} s"
        if len(not_ready) != len(workers):
            failures.append(
                f"/readyz said 503 (postgres false) on {len(not_ready)} of {len(workers)} workers"
            )
        else:
            figures["not ready after"] = f"{max(not_ready.values()):.1f} s"

        ready_again = await _ready_again(workers, within=60)
        if ready_again is None:
            failures.append("/readyz not 200 on every worker within 60 s of Postgres' return")
        else:
            figures["time to ready again"] = f"{ready_again - restarted:.1f} s"
        await stream.wait(within=total / plan.rate + 120)
        if stream.failure is not None:
            failures.append(f"publishing failed: {stream.failure!r}")
        if not await wait_processed(database, expected.distinct, plan.catch_up_within):
            failures.append(f"not caught up in {plan.catch_up_within:.0f}s")
        figures["time to catch up"] = f"{time.monotonic() - restarted:.1f} s after Postgres returned"
        survivors = [w.process.pid for w in fleet.live if w.process.poll() is None]
        if survivors != pids or fleet.started != len(pids):
            failures.append(f"workers did not survive the outage: {fleet.crashed()[:1]}")
        figures["worker restarts"] = str(len(pids) - len(survivors))
        retries = sum(
            [await w.metric("iopcare_store_retries_total") for w in workers if w.process.poll() is None]
        )
        figures["batch commits retried"] = f"{retries:.0f}"
        if not retries:
            failures.append("no batch commit was retried: the outage did not meet a batch in flight")
        verdict = await verify(database, env.kafka_bootstrap, topics, expected)
        failures += verdict.failures
        figures |= verdict.figures
    finally:
        if down:
            await asyncio.to_thread(runtime.start_postgres)
        failures += fleet.stop_all()
    return Outcome.of(name, figures, failures)


async def _probe(workers: list[WorkerProcess]) -> list[tuple[int, dict[str, bool]]]:
    return list(await asyncio.gather(*(asyncio.to_thread(readiness, w) for w in workers)))


async def _ready_again(workers: list[WorkerProcess], within: float) -> float | None:
    """time.monotonic() when every worker answered 200 on /readyz, or None."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(status == 200 for status, _ in await _probe(workers)):
            return time.monotonic()
        await asyncio.sleep(0.25)
    return None
