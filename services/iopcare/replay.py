"""``iopcare replay``: a rule pack's alerts over an event file, and two packs side by side.

The shell around :func:`iopcare.domain.backtest.run_backtest`: reads NDJSON (skipping, and
counting, lines that are not valid events, as the processor dead-letters them), shows progress, and
renders the report. The same decisions as the live processor on its stream clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from iopcare.contract import InboundEvent, InvalidEvent, decode_event
from iopcare.domain.backtest import BacktestResult, run_backtest
from iopcare.domain.rules import RulePack
from iopcare.domain.signals import SEVERITY_RANK

Progress = Callable[[int, int, int], None]
"""Called as (bytes read, total bytes, events so far)."""


@dataclass
class Replay:
    """One pack's run over one file."""

    pack: RulePack
    result: BacktestResult
    seconds: float
    invalid_lines: dict[str, int] = field(default_factory=dict)  # reason -> count

    @property
    def events_per_second(self) -> float:
        return self.result.events / self.seconds if self.seconds else 0.0


def read_events(
    path: Path, invalid: dict[str, int], progress: Progress | None = None
) -> Iterator[InboundEvent]:
    """Valid events of an NDJSON file in file order; invalid lines are counted by reason, not fatal."""
    total = path.stat().st_size
    read = events = 0
    with path.open("rb") as stream:
        for line in stream:
            read += len(line)
            if not line.strip():
                continue
            try:
                event = decode_event(line.rstrip(b"\r\n"))
            except InvalidEvent as exc:
                invalid[exc.reason] = invalid.get(exc.reason, 0) + 1
                continue
            events += 1
            if progress is not None and events % 5000 == 0:
                progress(read, total, events)
            yield event
    if progress is not None:
        progress(total, total, events)


def replay_file(path: Path, pack: RulePack, progress: Progress | None = None) -> Replay:
    """Run ``pack`` over the events in ``path``."""
    invalid: dict[str, int] = {}
    started = time.perf_counter()
    result = run_backtest(read_events(path, invalid, progress), pack)
    return Replay(pack, result, time.perf_counter() - started, invalid)


def render(runs: list[Replay]) -> list[str]:
    """The report as lines: one column per pack, and the difference when there are two."""
    first = runs[0]
    lines = [
        f"{first.result.events:,} events, {first.result.patients:,} patients, "
        f"{first.result.patient_weeks:,.1f} patient-weeks"
    ]
    for run in runs:
        lines.append(
            f"pack {run.pack.version}: {len(run.result.alerts):,} alerts in {run.seconds:.1f}s "
            f"({run.events_per_second:,.0f} events/s)"
        )
    if first.invalid_lines:
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(first.invalid_lines.items()))
        lines.append(f"skipped invalid lines: {skipped}")
    rows: set[tuple[str, str]] = set()
    for run in runs:
        rows |= set(run.result.by_rule_and_severity())
    header = ["rule", "severity", *(run.pack.version for run in runs)]
    if len(runs) == 2:
        header.append("change")
    table = [header]
    rank: dict[str, int] = {severity: n for severity, n in SEVERITY_RANK.items()}
    for rule, severity in sorted(rows, key=lambda r: (rank.get(r[1], 9), r[0])):
        counts = [run.result.by_rule_and_severity()[(rule, severity)] for run in runs]
        row = [rule, severity, *(f"{n:,}" for n in counts)]
        if len(runs) == 2:
            row.append(f"{counts[1] - counts[0]:+,}")
        table.append(row)
    totals = [float(len(run.result.alerts)) for run in runs]
    per_week = [run.result.per_patient_week() for run in runs]
    escalated = [float(run.result.changes["escalated"]) for run in runs]
    for name, values, shape in (
        ("all alerts", totals, ",.0f"),
        ("per patient-week", per_week, ".2f"),
        ("escalated (nobody acknowledged)", escalated, ",.0f"),
    ):
        row = [name, "", *(format(v, shape) for v in values)]
        if len(runs) == 2:
            row.append(format(values[1] - values[0], "+" + shape))
        table.append(row)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines.append("")
    for index, row in enumerate(table):
        cells = [cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if index == 0 or index == len(table) - 4:
            lines.append("  ".join("-" * w for w in widths))
    return lines


__all__ = ["Replay", "read_events", "render", "replay_file"]
