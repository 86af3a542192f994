"""Plan and scheduling of a load run: when each request is meant to leave, and how the run ends.

Open model (`rate`): request i is *meant* to leave at t0 + i/rate (ramped), and its latency counts
from that intended moment, so a server that stalls shows up as the long waits its callers would
really see instead of being hidden by a client that politely waits (coordinated omission). If
`max_in_flight` requests are out, the next one waits for a slot; that wait is its client `queue`
span and still counts. The schedule sleeps on the loop's timer, which wakes up to a millisecond
late, so it aims `EARLY_SEND_S` before each moment, and when it wakes it sends every request due
within `EARLY_SEND_S` of now: none leaves late for the timer's sake, none more than `EARLY_SEND_S`
early. A request sent early counts from when it actually left (`origin_ns`), never from its later
intended moment, which would hide the earliness from its latency.

Closed model (`concurrency`): N users, each sending its next request when the last one is
answered; latency counts from the actual send.

A run bounded by a duration ends at its duration plus at most one `--timeout`, however the target
behaves: once the duration is over, a request still waiting for its send (every slot held by a
stalled target, or a starved client) is counted as `not_sent`, never sent late, and a request
still out a timeout after sending stopped is cut off and counted as a `timeout`. The one
allowance is for the client's own timer: a request due just before the end may still leave up
to `LATE_SEND_S` after its moment, as it would have at any other point of the run.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

from engine.remote.load.state import RunState
from engine.remote.plan import LoadPlan

STOP_GRACE_S = 1.0  # after stop(), how long requests in flight may still finish
LATE_SEND_S = 0.25  # past a timed run's end, a due request may still leave this late, no later

# Sends request `index`, meant to leave at `intended_ns` (it may leave up to EARLY_SEND_S
# before), and records it (`Sender.one`); the caller has already counted it sent and in flight.
Send = Callable[[int, int], Coroutine[Any, Any, None]]

# How early a request may leave: the loop's timer wakes up to 1 ms late (epoll counts whole
# ms), so the schedule aims this far ahead of a moment and sends what is due by then. Turning
# the loop until the exact moment instead (as it once did) cost a whole core at 1,000/s.
EARLY_SEND_S = 0.001

_now = time.perf_counter_ns
_EARLY_NS = int(EARLY_SEND_S * 1e9)
_LATE_SEND_NS = int(LATE_SEND_S * 1e9)


def origin_ns(intended_ns: int, start_ns: int) -> int:
    """Where a request's latency counts from: its intended moment, or when it actually left if
    that was earlier (a request sent up to `EARLY_SEND_S` early: the earliness is no latency).
    Late is never forgiven: a request that left after its moment counts from the moment."""
    return start_ns if start_ns < intended_ns else intended_ns


def intended_s(i: int, rate: float, ramp_s: float) -> float:
    """When request i is meant to leave, in seconds from the start, with a linear ramp
    from 0 to `rate` over `ramp_s` (the arrivals under the ramp are rate·t²/2·ramp)."""
    if ramp_s <= 0:
        return i / rate
    in_ramp = rate * ramp_s / 2
    if i < in_ramp:
        return math.sqrt(2 * i * ramp_s / rate)
    return ramp_s + (i - in_ramp) / rate


def due_before(end_s: float, rate: float, ramp_s: float, limit: int | None) -> int:
    """How many requests the open model means to send before `end_s` (at most `limit`)."""
    if ramp_s > 0 and end_s <= ramp_s:
        guess = rate * end_s * end_s / (2 * ramp_s)
    elif ramp_s > 0:
        guess = rate * ramp_s / 2 + (end_s - ramp_s) * rate
    else:
        guess = end_s * rate
    n = max(math.ceil(guess), 0)
    # The float guess can be one off either way: settle it on the schedule itself.
    while n > 0 and intended_s(n - 1, rate, ramp_s) >= end_s:
        n -= 1
    while intended_s(n, rate, ramp_s) < end_s:
        n += 1
    return n if limit is None else min(n, limit)


class Scheduler:
    """Runs a `LoadPlan`'s traffic through `send` and ends the run on time; made and awaited
    by `LoadRunner.run`."""

    def __init__(self, plan: LoadPlan, timeout_s: float, state: RunState, send: Send) -> None:
        self.plan = plan
        self._timeout_s = timeout_s  # the target's, per request: a timed run's cut
        self._state = state
        self._send = send

    async def run(self, started_ns: int) -> None:
        """Send the plan's traffic from `started_ns`, then wait for what is still out."""
        if self.plan.rate is not None:
            await self._open_model(self.plan.rate, started_ns)
        else:
            await self._closed_model(self.plan.concurrency or 1, started_ns)
        # A timed run's hard end: one timeout after sending stopped, for what is still out.
        cut_ns = None
        if self.plan.duration_s is not None:
            cut_ns = _now() + int(self._timeout_s * 1e9)
        await self._drain(cut_ns)

    async def _open_model(self, rate: float, t0: int) -> None:
        plan = self.plan
        limit = plan.requests
        end_s = plan.duration_s
        ramp_s = plan.ramp_s
        cap = plan.max_in_flight
        state = self._state
        tasks = state.tasks
        send = self._send
        loop = asyncio.get_running_loop()
        end_ns = None if end_s is None else t0 + int(end_s * 1e9)
        i = 0
        while not state.stopping and (limit is None or i < limit):
            offset = intended_s(i, rate, ramp_s)
            if end_s is not None and offset >= end_s:
                break
            due = t0 + int(offset * 1e9)
            # Past the end, request i may leave only while it is less than LATE_SEND_S late.
            send_by = None if end_ns is None else max(end_ns, due + _LATE_SEND_NS)
            if end_s is not None and send_by is not None and _now() >= send_by:
                # Behind schedule at the end (a target that held every slot, or a starved
                # loop): what was due and not sent is counted, never sent late.
                state.not_sent += due_before(end_s, rate, ramp_s, limit) - i
                break
            delay = due - _now()
            if delay > _EARLY_NS:
                # Sleep to EARLY_SEND_S short of the moment: the timer's lateness then lands
                # the wake-up between that and the moment itself, never after it (in short
                # sleeps, so that stop() is heard within 50 ms even at a low rate).
                await asyncio.sleep(min((delay - _EARLY_NS) / 1e9, 0.05))
                continue
            # Due (or due within EARLY_SEND_S): sent now, and so is every request after it
            # that is, before the loop sleeps again.
            if i % 32 == 31:
                await asyncio.sleep(0)  # a long batch, or behind schedule: let answers be read
            if not await self._wait_for_slot(cap, send_by):
                continue  # the end came while waiting: the check above counts the rest
            if state.stopping:
                break
            # Counted in flight now, not when the task first runs: the cap must see it.
            state.sent += 1
            state.in_flight += 1
            task = loop.create_task(send(i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1

    async def _wait_for_slot(self, cap: int, send_by: int | None) -> bool:
        """Wait until fewer than `cap` requests are out; False when `send_by` came first."""
        state = self._state
        while state.in_flight >= cap and not state.stopping:
            state.slot_free.clear()
            if send_by is None:
                await state.slot_free.wait()
                continue
            left_s = (send_by - _now()) / 1e9
            if left_s <= 0:
                return False
            try:
                async with asyncio.timeout(left_s):
                    await state.slot_free.wait()
            except TimeoutError:
                return False
        return True

    async def _closed_model(self, users: int, t0: int) -> None:
        plan = self.plan
        state = self._state
        send = self._send
        end_ns = t0 + int(plan.duration_s * 1e9) if plan.duration_s is not None else None
        limit = plan.requests

        async def user(k: int) -> None:
            if plan.ramp_s > 0 and k:
                await asyncio.sleep(plan.ramp_s * k / users)
            while not state.stopping:
                i = state.sent
                if limit is not None and i >= limit:
                    return
                now = _now()
                if end_ns is not None and now >= end_ns:
                    return
                state.sent += 1
                state.in_flight += 1
                await send(i, now)

        tasks = [asyncio.create_task(user(k)) for k in range(users)]
        state.tasks.update(tasks)
        try:
            # A user's last request can start just before the end: the run's cut bounds it.
            cut_s = None
            if end_ns is not None:
                cut_s = max((end_ns - _now()) / 1e9 + self._timeout_s, 0.0)
            _, late = await asyncio.wait(tasks, timeout=cut_s)
            if late:
                state.cut_class = "timeout"
                await self.cancel_in_flight()
        finally:
            state.tasks.difference_update(tasks)

    async def _drain(self, cut_ns: int | None) -> None:
        """Let requests in flight finish (they carry their own deadline), until the run's cut
        (`cut_ns`, a timed run's last send plus one timeout: what is still out then is a
        `timeout`); after stop(), only for `STOP_GRACE_S`."""
        state = self._state
        while state.tasks:
            pending = list(state.tasks)
            if state.stopping:
                _, late = await asyncio.wait(pending, timeout=STOP_GRACE_S)
                if late:
                    await self.cancel_in_flight()
                return
            cut_s = None if cut_ns is None else max((cut_ns - _now()) / 1e9, 0.0)
            _, late = await asyncio.wait(pending, timeout=cut_s)
            if late:
                state.cut_class = "timeout"
                await self.cancel_in_flight()
                return

    async def cancel_in_flight(self) -> None:
        """Cut off every request (or closed-model user) still out; each records its cut."""
        tasks = list(self._state.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
