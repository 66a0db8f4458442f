"""``python -m tests.bench``: run the processor benchmark and write docs/benchmarks.md.

python -m tests.bench                      # the full run (make bench)
python -m tests.bench --quick              # a short one (make bench-quick)
python -m tests.bench --only latency --out none
python -m tests.bench --only replay        # the offline backtest alone, no broker (make bench-replay)
python -m tests.bench --worker-env IOPCARE_BATCH_MAX_RECORDS=2000 --out none   # an experiment
python -m tests.bench --worker-env IOPCARE_FETCH_MAX_WAIT_MS=1500 --only latency   # Faust's own fetch wait
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iopcare.settings import Settings
from tests.bench import replay as replay_bench
from tests.bench import scenarios
from tests.bench import workload as wl
from tests.bench.environment import BenchEnvironment, Machine
from tests.bench.processes import PROJECT_ROOT
from tests.bench.report import CONTENDERS, BenchReport, from_json, text_summary, to_json, write_markdown

SCENARIOS = ("noop", "pipeline", "naive", "scaling", "inprocess", "latency", "memory", "replay")
OFFLINE = ("replay",)  # scenarios that need no broker and no Postgres
THROUGHPUT_PARTITIONS = 8  # enough for two workers to share (and the default of IOPCARE_TOPIC_PARTITIONS)

SKELETON = """# Processor benchmark

`make bench` (or `python -m tests.bench`) runs it; `make bench-quick` is a shorter run. The section
between the markers below is rewritten by each run; the rest of this page is written by people.
"""


@dataclass
class Options:
    """What to run; the defaults are the full benchmark."""

    events: int = 40_000
    repeat: int = 3
    latency_rate: float = 500.0
    latency_seconds: float = 60.0
    memory_patients: int = 10_000
    replay_patients: int = 1_000  # about 257,000 events over 90 days
    replay_days: int = 90
    replay_jobs: int | None = None  # default: the machine's cores (at least 2)
    only: tuple[str, ...] = SCENARIOS
    out: Path | None = PROJECT_ROOT / "docs" / "benchmarks.md"
    worker_env: dict[str, str] = field(default_factory=dict)
    command: str = "python -m tests.bench"
    render: Path | None = None


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, help="events pre-loaded for the throughput runs (40,000)")
    parser.add_argument("--repeat", type=int, help="throughput runs per contender, median reported (3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10,000 events, 1 run, 10 s latency, 2,000 patients; replay: 100 patients",
    )
    parser.add_argument("--latency-rate", type=float, help="events/s of the latency run (500)")
    parser.add_argument("--latency-seconds", type=float, help="length of the latency run (60; quick 10)")
    parser.add_argument("--memory-patients", type=int, help="patients of the memory run (10,000)")
    parser.add_argument("--replay-patients", type=int, help="patients of the replay cohort (1,000)")
    parser.add_argument("--replay-days", type=int, help="days of the replay cohort (90)")
    parser.add_argument("--replay-jobs", type=int, help="processes of the split replay (the cores, >= 2)")
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument(
        "--out", help="markdown report to update, 'none' for none (default docs/benchmarks.md; quick: none)"
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only rewrite --out from a saved report (report.json)"
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for the Faust contenders (IOPCARE_BATCH_MAX_RECORDS=2000, F_LOOP=uvloop, "
        "BENCH_FETCH_MAX_WAIT_MS=100)",
    )
    args = parser.parse_args(argv)
    options = Options(command=shlex.join(["python -m tests.bench", *argv]).replace("'", ""))
    if args.quick:
        options.events, options.repeat, options.latency_seconds, options.memory_patients = (
            10_000,
            1,
            10.0,
            2_000,
        )
        options.replay_patients = 100
    for name in (
        "events",
        "repeat",
        "latency_rate",
        "latency_seconds",
        "memory_patients",
        "replay_patients",
        "replay_days",
        "replay_jobs",
    ):
        if getattr(args, name) is not None:
            setattr(options, name, getattr(args, name))
    options.render = args.render
    if args.only:
        options.only = tuple(s for s in SCENARIOS if s in args.only)
    # A quick run's figures are too rough for the docs: it only prints, unless told where to write.
    out = args.out or ("none" if args.quick else "docs/benchmarks.md")
    options.out = None if out == "none" else Path(out) if Path(out).is_absolute() else PROJECT_ROOT / out
    for item in args.worker_env:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--worker-env wants NAME=VALUE, not {item!r}")
        options.worker_env[name] = value
    return options


def run(
    options: Options, environment: BenchEnvironment | None = None, say: Any = print
) -> BenchReport | None:
    """Run the selected scenarios and return the processor's report (also written to ``options.out``;
    None when only offline scenarios ran, which write their own section there).

    Starts the embedded runtime unless ``environment`` is given or only offline scenarios are
    selected, and stops everything it started, also on failure or interruption.
    """
    if "replay" in options.only:
        run_replay(options, say)
    if all(name in OFFLINE for name in options.only):
        return None
    own_environment = environment is None
    environment = environment or BenchEnvironment()
    log_dir = environment.state_dir / "logs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        if own_environment:
            say("== Starting the broker and Postgres" + (" (embedded)" if not _external() else ""))
            environment.up()
        report = BenchReport(
            started=datetime.now(UTC),
            command=options.command,
            machine=asyncio.run(environment.machine()),
            code=_code_version(),
            worker_env=dict(options.worker_env),
            repeat=options.repeat,
        )
        say(f"   kafka {environment.kafka_bootstrap}; logs in {log_dir}")
        asyncio.run(_run(options, environment, report, log_dir, say))
        report.finished = datetime.now(UTC)
        report.load_after = Machine.load_average()
    finally:
        if own_environment:
            say("== Stopping the broker and Postgres")
            environment.down()
    (log_dir / "report.json").write_text(to_json(report))
    say("")
    say(text_summary(report))
    say(f"\nFigures saved in {log_dir / 'report.json'}")
    if options.out is not None:
        write_markdown(report, options.out, SKELETON)
        say(f"\nWrote {options.out}")
    return report


def run_replay(options: Options, say: Any = print) -> replay_bench.ReplayReport:
    """The offline backtest benchmark; its own section of ``options.out``."""
    report = replay_bench.measure(
        patients=options.replay_patients,
        days=options.replay_days,
        repeat=options.repeat,
        jobs=options.replay_jobs,
        command=options.command,
        code=_code_version(),
        say=say,
    )
    say("")
    say(replay_bench.text_summary(report))
    if options.out is not None:
        replay_bench.write_markdown(report, options.out, SKELETON)
        say(f"\nWrote {options.out}")
    return report


def _code_version() -> str:
    """The commit measured, "-dirty" if the checkout had changes (the report itself aside)."""
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--abbrev=12"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/benchmarks.md"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return commit + ("-dirty" if changed else "")


def _external() -> bool:
    import os

    return bool(os.environ.get("IOPCARE_KAFKA_BOOTSTRAP") and os.environ.get("IOPCARE_DATABASE_URL"))


async def _run(
    options: Options, environment: BenchEnvironment, report: BenchReport, log_dir: Path, say: Any
) -> None:
    def save() -> None:  # after each measurement, so a failure later keeps what was measured
        (log_dir / "report.json").write_text(to_json(report))

    contenders = [key for key in CONTENDERS if key in options.only]
    if contenders:
        started = time.perf_counter()
        events = wl.events_workload(options.events)
        say(
            f"== Throughput: {len(events):,} events of {events.patients} patients "
            f"(generated in {time.perf_counter() - started:.1f}s)"
        )
        topics = environment.fresh_topics("throughput", THROUGHPUT_PARTITIONS)
        report.publish_rate = await asyncio.to_thread(
            wl.publish, environment.kafka_bootstrap, topics.events_topic, events
        )
        report.events, report.patients, report.partitions = (
            len(events),
            events.patients,
            THROUGHPUT_PARTITIONS,
        )
        say(f"   pre-loaded {topics.events_topic} at {report.publish_rate:,.0f} events/s")
        for round_number in range(1, options.repeat + 1):
            for key in contenders:
                if key == "inprocess":
                    say(f"-- {CONTENDERS[key]} (run {round_number}/{options.repeat})")
                    result = await scenarios.in_process(
                        environment,
                        key=f"{key}_r{round_number}",
                        workload=events,
                        batch_size=Settings().batch_max_records,
                        say=say,
                    )
                    _check_complete(result, "pipeline")
                    report.throughput.setdefault(key, []).append(result)
                    save()
                    say(f"   {result.rate:,.0f} events/s over {result.seconds:.2f}s (CPU {result.cpu_cores})")
                    continue
                kind = "noop" if key == "noop" else "naive" if key == "naive" else "pipeline"
                processes = 2 if key == "scaling" else 1
                say(f"-- {CONTENDERS[key]} (run {round_number}/{options.repeat})")
                result = await scenarios.throughput(
                    environment,
                    key=f"{key}_r{round_number}",
                    label=CONTENDERS[key],
                    kind=kind,
                    processes=processes,
                    events=len(events),
                    topics=topics,
                    log_dir=log_dir,
                    worker_env=options.worker_env,
                    say=say,
                )
                _check_complete(result, kind)
                report.throughput.setdefault(key, []).append(result)
                save()
                steady = f", both busy {result.steady_rate:,.0f}/s" if result.steady_rate else ""
                say(
                    f"   {result.rate:,.0f} events/s over {result.seconds:.2f}s{steady} "
                    f"(start-up {result.startup_seconds:.1f}s, CPU {result.cpu_cores})"
                )
    if "latency" in options.only:
        for kind in ("pipeline", "noop"):
            say(
                f"== Latency: {options.latency_rate:.0f} events/s for {options.latency_seconds:.0f}s, "
                f"one {'worker' if kind == 'pipeline' else 'no-op Faust agent'}"
            )
            measured = await scenarios.latency(
                environment,
                kind=kind,
                rate=options.latency_rate,
                seconds=options.latency_seconds,
                log_dir=log_dir,
                worker_env=options.worker_env,
                say=say,
            )
            if kind == "pipeline":
                report.latency = measured
            else:
                report.latency_noop = measured
            save()
            say(
                f"   p50 {measured.p50_ms:.0f} ms, p99 {measured.p99_ms:.0f} ms, max {measured.max_ms:.0f} ms"
            )
    if "memory" in options.only:
        say(f"== Memory: one worker, {options.memory_patients:,} patients")
        report.memory = await scenarios.memory(
            environment,
            patients=options.memory_patients,
            log_dir=log_dir,
            worker_env=options.worker_env,
            say=say,
        )
        say(f"   peak RSS {report.memory.peak_rss_mib:.0f} MiB")


def _check_complete(result: scenarios.ThroughputResult, kind: str) -> None:
    """Every event accounted for: finished by the contender and, if it writes, logged exactly once.

    (Not every logged event is *applied* to state: the pipeline's consent gate holds third-party
    reports without consent in quarantine; ``applied`` is reported, not checked.)
    """
    expected = result.events
    problems = []
    if result.processed < expected:  # more is possible: a rebalance redelivers what was not yet acked
        problems.append(f"finished {result.processed}")
    if kind != "noop" and (result.stored != expected or (result.applied or 0) > expected):
        problems.append(f"stored {result.stored}, applied {result.applied}")
    if problems:
        raise scenarios.BenchmarkError(f"{result.label}: {', '.join(problems)} of {expected} events")


def main(argv: list[str] | None = None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the workers and the runtime.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    options = parse(sys.argv[1:] if argv is None else argv)
    if options.render is not None:
        report = from_json(options.render.read_text())
        print(text_summary(report))
        if options.out is not None:
            write_markdown(report, options.out, SKELETON)
            print(f"\nWrote {options.out}")
        return
    run(options)


if __name__ == "__main__":
    main()
