"""Scenario 2, rebalance: the group grows from 1 to 3 workers and shrinks to 2 while a cohort streams.

Joining workers take partitions over from the running one; the leaving worker (SIGTERM, as in a
rolling deploy) finishes its batch in flight and hands its partitions on. Partitions change owner
with records in flight on both sides; the outcome must still meet the standard of
:mod:`tests.reliability.exactness`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tests.reliability.exactness import (
    PacedStream,
    healthy,
    stage,
    until,
    verify,
    wait_processed,
)
from tests.reliability.harness import Env, Outcome

NAME = "2. rebalance: workers 1 → 3 → 2 during the stream"
PARTITIONS = 8


@dataclass(frozen=True)
class Plan:
    patients: int
    rate: float
    catch_up_within: float


FULL = Plan(patients=200, rate=800, catch_up_within=300)
QUICK = Plan(patients=12, rate=300, catch_up_within=240)


async def run(env: Env, quick: bool) -> Outcome:
    plan = QUICK if quick else FULL
    ground = await stage(env, "rebalance", plan.patients, seed=62, partitions=PARTITIONS)
    expected, topics, database, fleet = ground.expected, ground.topics, ground.database, ground.fleet
    total = len(expected.payloads)
    figures = {"events": f"{total:,}"}
    failures: list[str] = []
    try:
        first = fleet.start()
        await healthy([first])
        stream = PacedStream(env.kafka_bootstrap, topics.events_topic, expected.payloads, plan.rate).start()
        sizes = [len(fleet.live)]
        await until(lambda: stream.sent >= total // 3 or stream.done, within=total / plan.rate + 60)
        await healthy([fleet.start(), fleet.start()])
        sizes.append(len(fleet.live))
        await until(lambda: stream.sent >= 2 * total // 3 or stream.done, within=total / plan.rate + 60)
        code = fleet.stop(first)  # the longest-running one leaves, as in a rolling restart
        sizes.append(len(fleet.live))
        if code not in (0, -15):
            failures.append(f"the leaving worker exited with {code}")
        figures["group"] = " → ".join(map(str, sizes)) + f" (left with exit code {code})"
        await stream.wait(within=total / plan.rate + 120)
        if stream.failure is not None or stream.finished_at is None:
            failures.append(f"publishing failed: {stream.failure!r}")
        else:
            crashed = fleet.crashed
            if not await wait_processed(
                database, expected.distinct, plan.catch_up_within, lambda: _raise(crashed())
            ):
                failures.append(f"not caught up in {plan.catch_up_within:.0f}s")
            figures["time to catch up"] = (
                f"{time.monotonic() - stream.finished_at:.1f} s after the stream ended"
            )
            figures["stream"] = f"{stream.seconds:.0f} s at {plan.rate:.0f}/s"
        verdict = await verify(database, env.kafka_bootstrap, topics, expected)
        failures += verdict.failures
        figures |= verdict.figures
    except RuntimeError as exc:
        failures.append(str(exc))
    finally:
        failures += fleet.stop_all()
    return Outcome.of(NAME, figures, failures)


def _raise(crashed: list[str]) -> None:
    if crashed:
        raise RuntimeError(f"a worker exited on its own: {crashed[0]}")
