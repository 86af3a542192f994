"""The bounded priority queue between acceptance and the micro-batcher.

One deque per priority level (cheaper than a heap, and FIFO within a level). When it is full,
`put` waits (backpressure for file and batch submitters) and `put_nowait` raises `QueueFullError`
(network callers turn that into "overloaded"); `put_all_nowait` admits a whole batch or none of it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueFullError(Exception):
    """The queue is at capacity."""


class QueueClosedError(Exception):
    """The queue no longer admits work (the engine is stopping)."""


class AdmissionQueue(Generic[T]):
    """The bounded, prioritised queue of admitted work; the Engine puts, its `Batcher` takes."""

    def __init__(self, capacity: int, levels: int = 3) -> None:
        self.capacity = capacity
        self._levels: list[deque[T]] = [deque() for _ in range(levels)]
        self._size = 0
        self._closed = False
        self._not_empty = asyncio.Event()
        self._space_waiters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, item: T, priority: int) -> None:
        if self._closed:
            raise QueueClosedError
        if self._size >= self.capacity:
            raise QueueFullError
        self._push(item, priority)

    def put_all_nowait(self, items: Sequence[tuple[T, int]]) -> None:
        """Admit every `(item, priority)` or none: raises `QueueFullError` unless all fit."""
        if self._closed:
            raise QueueClosedError
        if self._size + len(items) > self.capacity:
            raise QueueFullError
        for item, priority in items:
            self._push(item, priority)

    async def put(self, item: T, priority: int) -> None:
        """Admit `item`, waiting for room while the queue is full."""
        while self._size >= self.capacity and not self._closed:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._space_waiters.append(waiter)
            await waiter
        if self._closed:
            raise QueueClosedError
        self._push(item, priority)

    def _push(self, item: T, priority: int) -> None:
        level = min(max(priority, 0), len(self._levels) - 1)
        self._levels[level].append(item)
        self._size += 1
        self._not_empty.set()

    async def take(self, max_items: int, max_wait_s: float) -> list[T]:
        """Up to `max_items`, highest priority first; waits for the first, then up to
        `max_wait_s` for the batch to fill. Empty only once the queue is closed and drained."""
        while self._size == 0:
            if self._closed:
                return []
            self._not_empty.clear()
            await self._not_empty.wait()
        if self._size < max_items and max_wait_s > 0 and not self._closed:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max_wait_s
            while self._size < max_items and not self._closed:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._not_empty.clear()
                try:
                    await asyncio.wait_for(self._not_empty.wait(), remaining)
                except TimeoutError:
                    break
        batch: list[T] = []
        for level in self._levels:
            while level and len(batch) < max_items:
                batch.append(level.popleft())
        self._size -= len(batch)
        self._wake_producers(len(batch))
        return batch

    def _wake_producers(self, freed: int) -> None:
        while freed > 0 and self._space_waiters:
            waiter = self._space_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                freed -= 1

    def close(self) -> None:
        """Refuse new work; what is queued still drains through `take`."""
        self._closed = True
        self._not_empty.set()
        while self._space_waiters:
            waiter = self._space_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
