"""Experiments the settings cannot express: run a Faust contender with the consumer's fetch wait changed.

Faust (faust-streaming 0.15) creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` written
into the driver, and no ``IOPCARE_*`` or Faust setting changes it. Apache Kafka answers a fetch as
soon as one byte is there, so the value only bounds idle waits; the embedded Tansu broker holds the
fetch for much longer before answering, which then dominates publish-to-commit latency. With
``BENCH_FETCH_MAX_WAIT_MS`` set, :func:`apply_fetch_wait` patches the value in this process only,
so the benchmark can show the pipeline's own latency apart from the broker's.

``python -m tests.bench.tuned worker --web-port N`` is ``iopcare worker`` with the patch applied.
"""

from __future__ import annotations

import os
from typing import Any

FETCH_WAIT_ENV = "BENCH_FETCH_MAX_WAIT_MS"


def apply_fetch_wait() -> None:
    """Override aiokafka consumers' ``fetch_max_wait_ms`` in this process (if the variable is set)."""
    value = os.environ.get(FETCH_WAIT_ENV)
    if not value:
        return
    import aiokafka  # type: ignore[import-untyped]

    original = aiokafka.AIOKafkaConsumer.__init__

    def with_fetch_wait(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["fetch_max_wait_ms"] = int(value)
        original(self, *args, **kwargs)

    aiokafka.AIOKafkaConsumer.__init__ = with_fetch_wait


if __name__ == "__main__":
    apply_fetch_wait()
    from iopcare.cli import main

    main()
