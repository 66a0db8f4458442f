"""Scenario 2, rebalance: the group grows from 1 to 3 workers and shrinks to 2 while a cohort streams.

Joining workers take partitions over from the running one; the leaving worker (SIGTERM, as in a
rolling deploy) finishes its batch in flight and hands its partitions on. Partitions change owner
with records in flight on both sides; the outcome must still meet the standard of
:mod:`tests.reliability.exactness`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.reliability.exactness import (
    PacedStream,
    finish_stream,
    healthy,
    stage,
    until,
    verify,
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
        await finish_stream(
            stream,
            fleet,
            database,
            expected.distinct,
            plan.rate,
            total / plan.rate + 120,
            plan.catch_up_within,
            figures,
            failures,
        )
        verdict = await verify(database, env.kafka_bootstrap, topics, expected)
        failures += verdict.failures
        figures |= verdict.figures
    except RuntimeError as exc:
        failures.append(str(exc))
    finally:
        failures += fleet.stop_all()
    return Outcome.of(NAME, figures, failures)
