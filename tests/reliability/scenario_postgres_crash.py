"""Scenario 8, Postgres hard crash: Postgres is killed mid-stream (``pg_ctl stop -m immediate``: every
process quits at once, no checkpoint), stays down 10-25 s, and starts again, replaying its WAL.

What must hold is the outage's standard (:mod:`tests.reliability.scenario_outage`): the workers wait
and retry, ``/readyz`` tells the truth, and afterwards nothing is lost or doubled. A crash tests what a
clean stop cannot: that a transaction the processor committed, and whose Kafka offsets it committed
after, was on disk. With ``fsync`` or ``synchronous_commit`` off (the embedded Postgres before 7 Dec
2026) such a crash lost 21 of 3,473 events for good.
"""

from __future__ import annotations

from tests.reliability import scenario_outage
from tests.reliability.harness import Env, Outcome

NAME = "8. Postgres hard crash mid-stream"


async def run(env: Env, quick: bool) -> Outcome:
    return await scenario_outage.run(env, quick, crash=True, name=NAME)
