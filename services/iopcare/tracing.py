"""W3C Trace Context (https://www.w3.org/TR/trace-context/): one trace from the clinic system's
event, through the worker, to the alert event and the webhook POST.

A ``traceparent`` is ``00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>``. It arrives as
the CloudEvents Distributed Tracing attribute of an inbound event (or the header of an API
request); each hop that does work under it continues the trace with a span id of its own
(:meth:`TraceContext.child`) and passes that on: the alert event's ``traceparent``, the webhook's
``traceparent`` header. Work that nothing upstream started (a sweep finding a silence, a timer)
starts a trace of its own (:func:`new_trace`).

The trace in progress is held in a context variable, so every log line written during the work
carries its ids (:mod:`iopcare.logs` adds them) without passing them down every call.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = [
    "TRACEPARENT_PATTERN",
    "TraceContext",
    "current_trace",
    "new_trace",
    "parse_traceparent",
    "tracing",
]

TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
"""Version 00 of the header, lower-case hex (the specification's own rule for version 00)."""

_TRACEPARENT = re.compile(TRACEPARENT_PATTERN)
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True)
class TraceContext:
    """A position in a trace: the trace it belongs to and the span doing the work now."""

    trace_id: str
    span_id: str
    sampled: bool = True

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` to pass on to the next hop (this span as its parent)."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def child(self) -> TraceContext:
        """A new span of the same trace: the work this hop does under its caller's span."""
        return TraceContext(self.trace_id, _span_id(), self.sampled)


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The trace a ``traceparent`` names, or None when it is absent or not a valid version-00 value
    (the specification says to ignore an invalid one and start afresh, never to fail the request)."""
    if not value or not _TRACEPARENT.match(value):
        return None
    _, trace_id, span_id, flags = value.split("-")
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, bool(int(flags, 16) & 1))


def new_trace() -> TraceContext:
    """The start of a trace nothing upstream began."""
    return TraceContext(secrets.token_hex(16), _span_id())


def _span_id() -> str:
    while (span := secrets.token_hex(8)) == _ZERO_SPAN:  # pragma: no cover - 1 in 2**64
        pass
    return span


_current: ContextVar[TraceContext | None] = ContextVar("iopcare_trace", default=None)


def current_trace() -> TraceContext | None:
    """The trace of the work in progress in this task, if any."""
    return _current.get()


@contextmanager
def tracing(trace: TraceContext) -> Iterator[TraceContext]:
    """Do the enclosed work as ``trace``: log lines carry its ids, and what the work publishes
    continues it."""
    token = _current.set(trace)
    try:
        yield trace
    finally:
        _current.reset(token)
