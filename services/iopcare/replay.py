"""``iopcare replay``: a rule pack's alerts over an event file, and two packs side by side.

The shell around :func:`iopcare.domain.backtest.run_backtest`: reads NDJSON (skipping, and
counting, lines that are not valid events, as the processor dead-letters them), shows progress, and
renders the report. The same decisions as the live processor on its stream clock.

A long file is split by patient across processes (``jobs``): patients are independent in the engine
except for the stream clock, so each process decodes and takes in only its own patients' lines and
learns the times of the others' valid events from its peers, chunk by chunk, as a
:class:`~iopcare.domain.backtest.Tick`. Each process's result is then exactly its patients' share
of the single-process result, and the parts add up to it. Which process owns a line is decided on
the ``subject`` found in the raw line; should the validated event name another patient (an odd but
valid spelling of the JSON), the split is abandoned and the file replayed in one process.
"""

from __future__ import annotations

import gc
import heapq
import multiprocessing
import os
import queue
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iopcare.contract import InboundEvent, InvalidEvent, decode_event
from iopcare.domain.backtest import BacktestResult, Tick, merged, run_backtest
from iopcare.domain.rules import RulePack
from iopcare.domain.signals import SEVERITY_RANK

Progress = Callable[[int, int, int], None]
"""Called as (bytes read, total bytes, events so far)."""

CHUNK_LINES = 8192  # lines a process decodes before it tells its peers their times
SPLIT_FROM_BYTES = 8 << 20  # smaller files are replayed in one process (starting more costs more)
MAX_JOBS = 8


@dataclass
class Replay:
    """One pack's run over one file."""

    pack: RulePack
    result: BacktestResult
    seconds: float
    invalid_lines: dict[str, int] = field(default_factory=dict)  # reason -> count
    jobs: int = 1  # processes the file was split across

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
            event = _decoded(line, invalid)
            if event is None:
                continue
            events += 1
            if progress is not None and events % 5000 == 0:
                progress(read, total, events)
            yield event
    if progress is not None:
        progress(total, total, events)


def _decoded(line: bytes, invalid: dict[str, int]) -> InboundEvent | None:
    """The line's event, validated as the processor validates it; None (counted by reason) if invalid."""
    try:
        return decode_event(line.rstrip(b"\r\n"))
    except InvalidEvent as exc:
        invalid[exc.reason] = invalid.get(exc.reason, 0) + 1
        return None


def default_jobs(path: Path) -> int:
    """As many processes as the machine gives this one, for files big enough to be worth it."""
    if path.stat().st_size < SPLIT_FROM_BYTES:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_JOBS))


def replay_file(
    path: Path, pack: RulePack, progress: Progress | None = None, jobs: int | None = None
) -> Replay:
    """Run ``pack`` over the events in ``path``, split across ``jobs`` processes (default: the
    machine's cores for a big file); the result is the same whatever the split."""
    jobs = default_jobs(path) if jobs is None else max(1, jobs)
    started = time.perf_counter()
    if jobs > 1:
        try:
            result, skipped = _split_replay(path, pack, jobs, progress)
            return Replay(pack, result, time.perf_counter() - started, skipped, jobs)
        except _SplitAbandoned:
            started = time.perf_counter()
    invalid: dict[str, int] = {}
    with collecting_less():
        result = run_backtest(read_events(path, invalid, progress), pack)
    return Replay(pack, result, time.perf_counter() - started, invalid)


YOUNG_OBJECTS_PER_COLLECTION = 50_000  # Python's default is 700


@contextmanager
def collecting_less() -> Iterator[None]:
    """Run the cyclic garbage collector less often while a replay runs.

    A replay allocates a few dozen short-lived objects per event (the decoded event, records,
    findings) and keeps a growing set of long-lived ones (each patient's state and alerts). At
    Python's default thresholds the collector runs every 700 net allocations and keeps
    re-examining the long-lived objects; the engine makes few cycles, so collecting every 50,000
    loses nothing but that work. Process-wide, so only for the replay's duration."""
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS_PER_COLLECTION, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


# --- the file split by patient across processes ----------------------------------------------------

_SUBJECT = re.compile(rb'"subject"\s*:\s*"([^"\\]*)"')


def shard_of(subject: bytes, shards: int) -> int:
    """The process that owns a patient (stable across processes, unlike ``hash``)."""
    return zlib.crc32(subject) % shards


class _SplitAbandoned(Exception):
    """A line's raw subject and its validated one disagree: replay in one process instead."""


@dataclass
class _Channels:
    """How the processes of one split talk: an inbox each for the peers' times, one for results,
    and a progress board (bytes read, events taken in; per process)."""

    inboxes: list[Any]
    results: Any
    board: Any


def _split_replay(
    path: Path, pack: RulePack, jobs: int, progress: Progress | None
) -> tuple[BacktestResult, dict[str, int]]:
    # fork: the children start with the modules and the pack already loaded.
    methods = multiprocessing.get_all_start_methods()
    context: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    channels = _Channels(
        inboxes=[context.Queue() for _ in range(jobs)],
        results=context.Queue(),
        board=context.Array("q", 2 * jobs, lock=False),
    )
    workers = [
        context.Process(target=_shard_main, args=(path, pack, index, jobs, channels), daemon=True)
        for index in range(jobs)
    ]
    for worker in workers:
        worker.start()
    total = path.stat().st_size
    parts: dict[int, tuple[BacktestResult, dict[str, int]]] = {}
    failure: str | None = None
    try:
        while len(parts) < jobs and failure is None:
            try:
                index, result, invalid, error = channels.results.get(timeout=0.2)
            except queue.Empty:
                if progress is not None:
                    board = channels.board[:]
                    progress(min(board[0::2]), total, sum(board[1::2]))
                dead = [w for w in workers if w.exitcode not in (None, 0)]
                if dead:
                    failure = f"a replay process exited with code {dead[0].exitcode}"
                continue
            if error is not None:
                failure = error
            else:
                parts[index] = (result, invalid)
    finally:
        for worker in workers:
            if failure is not None and worker.is_alive():
                worker.terminate()  # its peers would wait for it forever
            worker.join()
    if failure == _SplitAbandoned.__name__:
        raise _SplitAbandoned
    if failure is not None:
        raise RuntimeError(failure)
    invalid_lines: dict[str, int] = {}
    for _, invalid in parts.values():
        for reason, n in invalid.items():
            invalid_lines[reason] = invalid_lines.get(reason, 0) + n
    result = merged(parts[index][0] for index in range(jobs))
    if progress is not None:
        progress(total, total, result.events)
    return result, dict(sorted(invalid_lines.items()))


def _shard_main(path: Path, pack: RulePack, index: int, shards: int, channels: _Channels) -> None:
    """One process of a split: its patients' events, the others' as ticks, through the engine."""
    try:
        invalid: dict[str, int] = {}
        with collecting_less():
            result = run_backtest(_shard_stream(path, index, shards, channels, invalid), pack)
        channels.results.put((index, result, invalid, None))
    except _SplitAbandoned:
        channels.results.put((index, None, None, _SplitAbandoned.__name__))
    except BaseException as exc:  # report, so the parent stops the peers instead of waiting
        channels.results.put((index, None, None, f"replay process {index} failed: {exc!r}"))


def _shard_stream(
    path: Path, index: int, shards: int, channels: _Channels, invalid: dict[str, int]
) -> Iterator[InboundEvent | Tick]:
    """This process's events, and ticks for every valid event of the others, in file order.

    Chunk by chunk: decode the own lines of a chunk, send their times to the peers, then take in
    the chunk before (by then the peers' times for it have usually arrived)."""
    peers = [peer for peer in range(shards) if peer != index]
    waiting: list[list[tuple[int, InboundEvent]]] = []
    received: dict[int, list[list[tuple[int, Any]]]] = {}
    read = events = 0

    def times_of(chunk: int) -> list[list[tuple[int, Any]]]:
        while len(received.get(chunk, ())) < len(peers):
            sender_chunk, times = channels.inboxes[index].get()
            received.setdefault(sender_chunk, []).append(times)
        return received.pop(chunk, [])

    def in_file_order(chunk: int, own: list[tuple[int, InboundEvent]]) -> Iterator[InboundEvent | Tick]:
        nonlocal events
        ticks = (((line, Tick(at)) for line, at in times) for times in times_of(chunk))
        for _, item in heapq.merge(own, *ticks, key=_line_number):
            yield item
        events += len(own)
        channels.board[2 * index + 1] = events

    with path.open("rb") as stream:
        line_number = 0
        for chunk, lines in enumerate(_chunks(stream, CHUNK_LINES)):
            own: list[tuple[int, InboundEvent]] = []
            for line in lines:
                line_number += 1
                read += len(line)
                if not line.strip():
                    continue
                found = _SUBJECT.search(line)
                if (shard_of(found.group(1), shards) if found else 0) != index:
                    continue
                event = _decoded(line, invalid)
                if event is None:
                    continue
                if shard_of(event.subject.encode(), shards) != index:
                    raise _SplitAbandoned
                own.append((line_number, event))
            times = [(number, event.time) for number, event in own]
            for peer in peers:
                channels.inboxes[peer].put((chunk, times))
            channels.board[2 * index] = read
            waiting.append(own)
            if len(waiting) > 1:
                yield from in_file_order(chunk - 1, waiting.pop(0))
        if waiting:
            yield from in_file_order(chunk, waiting.pop(0))


def _line_number(item: tuple[int, object]) -> int:
    return item[0]


def _chunks(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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


__all__ = ["Replay", "default_jobs", "read_events", "render", "replay_file", "shard_of"]
