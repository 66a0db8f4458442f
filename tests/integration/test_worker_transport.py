"""The worker's Kafka consumer waits the configured fetch wait, not Faust's hard-coded 1500 ms.

build_app names the ``iopcare://`` transport (processor/transport.py, registered under Faust's
``faust.transports`` entry point); its consumer thread builds Faust's aiokafka consumer and sets the
wait. Checked on the consumer aiokafka actually starts against the embedded broker: its fetcher holds
the value (aiokafka reads it when it starts). Without the transport this is 1500 whatever the setting.
"""

from __future__ import annotations

import pytest

from iopcare.endpoints import Endpoints
from iopcare.processor.app import build_app
from iopcare.processor.transport import ConsumerThread, Transport
from iopcare.settings import FETCH_MAX_WAIT_MS, Settings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("wait_ms", [FETCH_MAX_WAIT_MS, 40])
async def test_the_started_consumer_fetches_with_the_configured_wait(
    endpoints: Endpoints, topics: Settings, wait_ms: int
) -> None:
    settings = topics.model_copy(update={"fetch_max_wait_ms": wait_ms})
    app = build_app(settings, endpoints, app_id=f"transport-test-{wait_ms}")
    assert isinstance(app.transport, Transport)  # iopcare:// found through the entry point
    thread = app.consumer._thread  # type: ignore[attr-defined]
    assert isinstance(thread, ConsumerThread)
    consumer = thread._create_worker_consumer(app.transport)
    await consumer.start()
    try:
        assert consumer._fetcher._fetch_max_wait_ms == wait_ms
    finally:
        await consumer.stop()
