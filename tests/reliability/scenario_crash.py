"""Scenario 1, crash: kill -9 a worker at random moments while a cohort streams, restart it each time.

Two workers share the partitions, so every kill also makes the group rebalance (the dead member
leaves at its session timeout, the new one joins). A kill lands anywhere: between batches, in the
middle of a batch transaction, after a commit and before the ack. Afterwards the outcome must meet
the standard of :mod:`tests.reliability.exactness`: Postgres' transaction plus the event log make
the replayed batches harmless, and the outbox relay loses no alert event.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.reliability.exactness import (
    Fleet,
    PacedStream,
    counts,
    healthy,
    stage,
    verify,
    wait_processed,
)
from tests.reliability.harness import Env, Outcome

NAME = "1. crash: kill -9 a worker during the stream"
PARTITIONS = 8


@dataclass(frozen=True)
class Plan:
    patients: int  # 90-day courses, ~250 events each
    rate: float  # events/s published
    kills: int
    gap: tuple[float, float]  # seconds between kills, drawn uniformly
    catch_up_within: float


FULL = Plan(patients=200, rate=1000, kills=12, gap=(2.0, 6.0), catch_up_within=300)
QUICK = Plan(patients=12, rate=400, kills=3, gap=(1.5, 3.5), catch_up_within=240)


async def run(env: Env, quick: bool) -> Outcome:
    plan = QUICK if quick else FULL
    ground = await stage(env, "crash", plan.patients, seed=61, partitions=PARTITIONS)
    expected, topics, database, fleet = ground.expected, ground.topics, ground.database, ground.fleet
    figures = {"events": f"{len(expected.events):,}", "workers": "2"}
    failures: list[str] = []
    moments = random.Random()  # random on purpose: each run kills at other moments
    try:
        await healthy([fleet.start(), fleet.start()])
        stream = PacedStream(env.kafka_bootstrap, topics.events_topic, expected.payloads, plan.rate).start()
        mid_stream = 0
        for _ in range(plan.kills):
            await asyncio.sleep(moments.uniform(*plan.gap))
            logged, _ = await counts(database)
            fleet.kill(moments.choice(fleet.live))
            mid_stream += logged < expected.distinct
            fleet.start()  # the restart: a new process joins the group
        await stream.wait(within=len(expected.payloads) / plan.rate + 120)
        if stream.failure is not None or stream.finished_at is None:
            failures.append(f"publishing failed: {stream.failure!r}")
        else:
            if not await wait_processed(database, expected.distinct, plan.catch_up_within, _no_crash(fleet)):
                logged, applied = await counts(database)
                failures.append(
                    f"not caught up in {plan.catch_up_within:.0f}s: {logged} logged, {applied} applied"
                )
            figures["time to catch up"] = (
                f"{time.monotonic() - stream.finished_at:.1f} s after the stream ended"
            )
            figures["stream"] = f"{stream.seconds:.0f} s at {plan.rate:.0f}/s"
        figures["kills"] = f"{plan.kills} ({mid_stream} with events still unprocessed)"
        if mid_stream < plan.kills:
            failures.append(f"only {mid_stream} of {plan.kills} kills landed while events were unprocessed")
        verdict = await verify(database, env.kafka_bootstrap, topics, expected)
        failures += verdict.failures
        figures |= verdict.figures
    except _Crashed as exc:
        failures.append(str(exc))
    finally:
        failures += fleet.stop_all()
    return Outcome.of(NAME, figures, failures)


class _Crashed(RuntimeError):
    """A worker exited that the scenario did not kill."""


def _no_crash(fleet: Fleet) -> Callable[[], None]:
    def check() -> None:
        crashed = fleet.crashed()
        if crashed:
            raise _Crashed(crashed[0])

    return check
