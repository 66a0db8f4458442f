"""Faust's Kafka transport with the consumer's fetch wait taken from the settings.

Faust's aiokafka driver builds the worker's consumer with ``fetch_max_wait_ms=1500`` written in as a
literal (faust/transport/drivers/aiokafka.py, ``_create_worker_consumer``): a fetch from a quiet
partition waits up to 1.5 s before it returns, so an event that arrives just after a fetch went out
waits that long before the worker sees it. That wait, not our work, was most of the p99 latency
(docs/benchmarks.md, "Fetch wait").

This module is the driver Faust itself offers for such a change: a transport registered under the
``faust.transports`` entry point (pyproject.toml) as ``iopcare://``, a subclass of Faust's own
aiokafka transport whose consumer thread sets the wait that :func:`use_fetch_wait` left on the app
before the consumer starts (aiokafka hands it to its fetcher on ``start()``). Everything else is
Faust's driver as it is.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["FETCH_WAIT_ATTRIBUTE", "Transport", "use_fetch_wait"]

# Where build_app leaves the wait for the consumer thread: an attribute of the app, since Faust's
# Settings has no field for it.
FETCH_WAIT_ATTRIBUTE = "iopcare_fetch_max_wait_ms"


def use_fetch_wait(app: faust.App, milliseconds: int) -> None:
    """Have ``app``'s worker consumer wait at most ``milliseconds`` for a fetch to fill."""
    setattr(app, FETCH_WAIT_ATTRIBUTE, milliseconds)


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread; the worker consumer it builds waits the app's fetch wait."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, FETCH_WAIT_ATTRIBUTE, None)
        if wait is not None:
            # aiokafka keeps the constructor's value here and passes it to its Fetcher in start().
            consumer._fetch_max_wait_ms = int(wait)
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, with the consumer thread above."""

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """``iopcare://host:port``: Faust's aiokafka transport with a configurable fetch wait."""

    Consumer = Consumer
