"""``python -m tests.reliability [--quick] [--only NAME ...]``: the reliability suite (issue 6).

Runs the pytest-based scenarios of ``tests/reliability`` (duplicates and disorder, hostile input,
security: ``pytest -m reliability`` in a subprocess) and the scenarios of this package (crash,
rebalance, Postgres outage, load) on an embedded broker and Postgres of its own under
``.iopcare/reliability`` (or the servers named by ``IOPCARE_KAFKA_BOOTSTRAP`` and
``IOPCARE_DATABASE_URL``). Prints one table of figures; the full run (not ``--quick``, not
``--only``) also writes it into ``docs/reliability.md``. Exits 1 if any scenario failed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
import traceback

from iopcare.embedded import EmbeddedRuntime
from tests.reliability.harness import (
    PROJECT_ROOT,
    Env,
    Outcome,
    now,
    report,
    run_pytest_scenarios,
    table,
    write_report,
)

SCENARIOS = {
    "crash": "tests.reliability.scenario_crash",
    "rebalance": "tests.reliability.scenario_rebalance",
    "outage": "tests.reliability.scenario_outage",
    "load": "tests.reliability.scenario_load",
    "postgres-crash": "tests.reliability.scenario_postgres_crash",
    "group-restart": "tests.reliability.scenario_group_restart",
}
STATE_DIR = PROJECT_ROOT / ".iopcare" / "reliability"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the shortened run (minutes, not half an hour)")
    parser.add_argument(
        "--only", nargs="+", choices=["pytest", *SCENARIOS], help="run these parts only (no report written)"
    )
    return parser.parse_args(argv)


async def _scenarios(names: list[str], env: Env, quick: bool) -> list[Outcome]:
    outcomes: list[Outcome] = []
    try:
        for name in names:
            module = importlib.import_module(SCENARIOS[name])
            print(f"-- {module.NAME} ({'quick' if quick else 'full'})", flush=True)
            started = time.monotonic()
            try:
                outcome: Outcome = await module.run(env, quick)
            except Exception as exc:  # a harness error is a failed scenario, not a lost report
                traceback.print_exc()
                outcome = Outcome.of(module.NAME, {}, [f"the scenario raised {exc!r}"])
            outcome.figures["scenario seconds"] = f"{time.monotonic() - started:.0f}"
            print(table([outcome]), flush=True)
            for failure in outcome.failures:
                print(f"   FAILURE: {failure[:3000]}", flush=True)
            outcomes.append(outcome)
    finally:
        await env.close()
    return outcomes


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    parts = options.only or ["pytest", *SCENARIOS]
    started_at, started = now(), time.monotonic()
    log_dir = STATE_DIR / "logs" / started_at.strftime("%Y%m%dT%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []

    if "pytest" in parts:
        print("-- pytest -m reliability (tests/reliability)", flush=True)
        found, tail = run_pytest_scenarios(
            options.quick, log_dir / "pytest-junit.xml", timeout=15 * 60 if options.quick else 60 * 60
        )
        print(table(found), flush=True)
        if not all(o.passed for o in found):
            print(tail, flush=True)
        outcomes += found

    names = [name for name in SCENARIOS if name in parts]
    if names:
        kafka, database = os.environ.get("IOPCARE_KAFKA_BOOTSTRAP"), os.environ.get("IOPCARE_DATABASE_URL")
        runtime = None if kafka and database else EmbeddedRuntime(STATE_DIR)
        try:
            if runtime is not None:
                addresses = runtime.up()
                kafka, database = kafka or addresses.kafka_bootstrap, database or addresses.database_url
            assert kafka and database
            env = Env(kafka, database, log_dir, runtime=runtime)
            outcomes += asyncio.run(_scenarios(names, env, options.quick))
        finally:
            if runtime is not None:
                runtime.down()

    seconds = time.monotonic() - started
    section = report(outcomes, quick=options.quick, started=started_at, seconds=seconds)
    print("\n" + section)
    if not options.quick and options.only is None:
        write_report(section)
        print("\nwritten to docs/reliability.md")
    print(f"logs: {log_dir}")
    return 0 if outcomes and all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
