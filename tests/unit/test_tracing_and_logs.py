"""W3C trace context (iopcare.tracing) and the JSON log lines (iopcare.logs) every service writes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from iopcare import logs
from iopcare.tracing import current_trace, new_trace, parse_traceparent, tracing

SPEC_EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_traceparent_is_parsed_and_continued_in_a_child_span_of_the_same_trace() -> None:
    parent = parse_traceparent(SPEC_EXAMPLE)
    assert parent is not None
    assert (parent.trace_id, parent.span_id, parent.sampled) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        True,
    )
    assert parent.traceparent == SPEC_EXAMPLE
    child = parent.child()
    assert child.trace_id == parent.trace_id and child.span_id != parent.span_id
    assert parse_traceparent(child.traceparent) == child


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ],
)
def test_an_invalid_traceparent_is_ignored_not_an_error(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_an_unsampled_flag_is_kept() -> None:
    trace = parse_traceparent(SPEC_EXAMPLE[:-2] + "00")
    assert trace is not None and not trace.sampled and trace.child().traceparent.endswith("-00")


def test_new_traces_differ_and_the_current_one_is_scoped_to_the_block() -> None:
    first, second = new_trace(), new_trace()
    assert first.trace_id != second.trace_id and parse_traceparent(first.traceparent) == first
    assert current_trace() is None
    with tracing(first):
        assert current_trace() == first
        with tracing(second):
            assert current_trace() == second
        assert current_trace() == first
    assert current_trace() is None


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger configured as a service configures it, writing to a buffer."""
    stream = io.StringIO()
    handlers, level = logging.root.handlers[:], logging.root.level
    logs.configure("api", "INFO", "json")
    (handler,) = logging.root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_carries_the_service_the_bound_request_id_the_trace_and_the_extra_fields(
    captured: io.StringIO,
) -> None:
    trace = new_trace()
    with logs.bind(request_id="r-12345678"), tracing(trace):
        logging.getLogger("iopcare.test").info("request %s", "done", extra={"status": 200})
    logging.getLogger("iopcare.test").warning("outside")
    inside, outside = _lines(captured)
    assert list(inside)[:5] == ["timestamp", "level", "service", "logger", "message"]
    assert inside["message"] == "request done" and inside["level"] == "info" and inside["service"] == "api"
    assert inside["request_id"] == "r-12345678" and inside["status"] == 200
    assert (inside["trace_id"], inside["span_id"]) == (trace.trace_id, trace.span_id)
    assert str(inside["timestamp"]).endswith("Z")
    assert "request_id" not in outside and "trace_id" not in outside


def test_an_exception_is_one_json_line_with_its_traceback(captured: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("iopcare.test").exception("failed")
    (line,) = _lines(captured)
    assert line["level"] == "error" and "ValueError: boom" in str(line["exception"])


def test_libraries_log_through_the_same_formatter(captured: io.StringIO) -> None:
    logging.getLogger("aiokafka.consumer").info("Joined group %r", "g")
    (line,) = _lines(captured)
    assert line["logger"] == "aiokafka.consumer" and line["message"] == "Joined group 'g'"


def test_auto_is_console_on_a_terminal_and_json_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert logs.resolve_format("auto") == "json"
    monkeypatch.setattr("sys.stderr", Terminal())
    assert logs.resolve_format("auto") == "console"
    assert logs.resolve_format("json") == "json"
