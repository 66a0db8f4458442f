"""Logs every service writes: one JSON object per line for machines, or aligned text for a person.

Every record, ours and the libraries' (Faust, aiokafka, aiohttp, asyncpg) alike, goes through the
standard library's ``logging`` and out through one structlog formatter, so they share one shape:

    {"timestamp": "2026-12-07T16:40:30.123Z", "level": "info", "logger": "iopcare.api.app",
     "service": "api", "message": "request", "request_id": "...", "trace_id": "...", ...}

Bound context is added to every line written while it is bound: the API's ``request_id`` (and the
fields of :func:`bind`), and the trace in progress (``trace_id``, ``span_id``; see
:mod:`iopcare.tracing`).

Privacy: log calls name ids of alerts, deliveries, endpoints and events, codes and counts, never a
patient id, a note or a secret (a test scans every service's logs in a demo run for them).

``IOPCARE_LOG_FORMAT``: ``json``, ``console``, or ``auto`` (the default: console on a terminal, JSON
otherwise, so a container or a log file gets JSON and a developer's terminal gets text).
"""

from __future__ import annotations

import logging
import logging.config
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal

import structlog

from iopcare.tracing import current_trace

__all__ = ["LogFormat", "bind", "configure", "logging_config", "resolve_format"]

LogFormat = Literal["auto", "json", "console"]


def resolve_format(format: LogFormat) -> Literal["json", "console"]:
    """``auto`` made concrete: console when stderr is a terminal, else JSON."""
    if format == "auto":
        return "console" if sys.stderr.isatty() else "json"
    return format


def _add_trace(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    trace = current_trace()
    if trace is not None:
        event.setdefault("trace_id", trace.trace_id)
        event.setdefault("span_id", trace.span_id)
    return event


_FIRST = ("timestamp", "level", "service", "logger", "message")


def _first_the_usual_keys(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Timestamp, level, service, logger and message lead every line; the context follows."""
    return {**{k: event[k] for k in _FIRST if k in event}, **event}


def _service(name: str) -> structlog.types.Processor:
    def add(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("service", name)
        return event

    return add


def logging_config(service: str, level: str, format: LogFormat = "auto") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` document for ``service``: the root logger at ``level``
    writing to stderr through the structlog formatter. Faust's worker takes it as its own
    ``logging_config``, so its set-up leaves the format alone."""
    concrete = resolve_format(format)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_trace,
        _service(service),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),  # log.info("...", extra={"alert_id": ...}): fields of their own
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]
    if concrete == "json":
        rendering: list[structlog.types.Processor] = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            _first_the_usual_keys,
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        rendering = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "iopcare": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": shared,
                "processors": rendering,
            }
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "iopcare", "stream": "ext://sys.stderr"}
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }


def configure(service: str, level: str, format: LogFormat = "auto") -> None:
    """Send every log record of this process to stderr in the chosen format."""
    logging.config.dictConfig(logging_config(service, level, format))


@contextmanager
def bind(**fields: str | int | None) -> Iterator[None]:
    """Add ``fields`` to every log line written inside the block (in this task only)."""
    with structlog.contextvars.bound_contextvars(**fields):
        yield
