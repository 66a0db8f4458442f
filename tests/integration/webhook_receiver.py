"""A real HTTP receiver on 127.0.0.1 for the webhook tests, and helpers to feed the alerts topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from aiokafka import AIOKafkaProducer

from iopcare.contract import AlertEvent, encode_event
from iopcare.dispatcher.relay import NOTIFICATION_GROUP_HEADER


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An aiohttp server that records every POST and answers with scripted statuses (then 200)."""

    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "hook") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.path, dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        # A body the dispatcher must never store or log, whatever the status.
        return web.Response(status=status, text="receiver says: patient Jane Roe")

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == f"/{path}"]


async def produce(kafka: str, topic: str, events: Sequence[AlertEvent], group: str | None) -> None:
    """Send alert events keyed by patient, with a notification group header, and wait for the acks."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        headers = [(NOTIFICATION_GROUP_HEADER, group.encode())] if group else []
        sent = [
            await producer.send(topic, key=e.subject.encode(), value=encode_event(e), headers=headers)
            for e in events
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def eventually(condition: Callable[[], object], within: float = 30, message: str = "") -> None:
    """Poll a condition (sync or returning an awaitable) until it is true."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {message}")
        await asyncio.sleep(0.05)
