"""A result sink that collects delivered work in order, for engine tests."""

from __future__ import annotations

import asyncio

from engine.work import Work


class ListSink:
    """Collects delivered work in delivery order; `wait_for(n)` until n have arrived."""

    def __init__(self) -> None:
        self.done: list[Work] = []
        self._changed = asyncio.Event()

    def deliver(self, done: list[Work]) -> None:
        self.done.extend(done)
        self._changed.set()

    async def wait_for(self, count: int, limit_s: float = 20.0) -> None:
        async with asyncio.timeout(limit_s):
            while len(self.done) < count:
                self._changed.clear()
                await self._changed.wait()
