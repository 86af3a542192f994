"""The open model's timing without a server: when requests leave, and where latency counts from.

The scheduler is driven with a stand-in `send` that only notes when it was called; the sender
with a stand-in client whose exchange started where the test says. Nothing here asserts a
tight time: the bounds are whole multiples of the schedule's own allowances, so a busy machine
passes them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from engine.remote.client import Exchange
from engine.remote.load.schedule import EARLY_SEND_S, Scheduler, origin_ns
from engine.remote.load.sending import Body, Sender
from engine.remote.load.state import RunState
from engine.remote.plan import LoadPlan
from engine.remote.protocols import Adapter
from engine.remote.targets import Target


def run_schedule(
    plan: LoadPlan, started_behind_s: float = 0.0
) -> tuple[list[tuple[int, int, int]], RunState]:
    """The plan's sends as (index, intended_ns, called_ns), the run `started_behind_s` ago."""
    sends: list[tuple[int, int, int]] = []

    async def main() -> RunState:
        state = RunState()

        async def send(index: int, intended_ns: int) -> None:
            sends.append((index, intended_ns, time.perf_counter_ns()))
            state.in_flight -= 1
            state.completed += 1
            state.slot_free.set()

        scheduler = Scheduler(plan, 5.0, state, send)
        await scheduler.run(time.perf_counter_ns() - int(started_behind_s * 1e9))
        return state

    return sends, asyncio.run(main())


def test_requests_leave_no_earlier_than_the_allowance_and_the_loop_does_not_spin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The schedule once turned the loop (`sleep(0)`) for the last 1.1 ms before every request:
    # at 1,000/s that was the whole core. Now it sleeps on the timer, and turns the loop only
    # inside a long batch of due requests.
    turns = 0
    real_sleep = asyncio.sleep

    async def counting_sleep(delay: float, *args: Any) -> Any:
        nonlocal turns
        turns += delay == 0
        return await real_sleep(delay, *args)

    monkeypatch.setattr(asyncio, "sleep", counting_sleep)  # the module `schedule` calls
    sends, state = run_schedule(LoadPlan(rate=500, requests=200))
    assert [i for i, _, _ in sends] == list(range(200))
    assert state.sent == 200 and state.not_sent == 0
    early_ns = int(EARLY_SEND_S * 1e9)
    # Never more than the allowance early (the clock read in `send` is later than the send's
    # own decision, so this bound is safe); lateness is the machine's, not checked here.
    assert all(called >= intended - early_ns for _, intended, called in sends)
    assert turns <= 200 // 32 + 1


def test_every_request_already_due_is_sent_at_once() -> None:
    # 0.5 s behind at 200/s: the first 100 are due (or within the allowance) on the first
    # wake-up, and leave in one batch without waiting on the timer between them.
    sends, _ = run_schedule(LoadPlan(rate=200, requests=120), started_behind_s=0.5)
    due_now = [called for i, intended, called in sends if i < 100]
    assert len(due_now) == 100
    # One batch: far less time than a single 5 ms gap of the schedule per request.
    assert due_now[-1] - due_now[0] < 100 * 5_000_000 / 4
    # The rest keep to the schedule: none leaves more than the allowance early.
    early_ns = int(EARLY_SEND_S * 1e9)
    assert all(called >= intended - early_ns for i, intended, called in sends if i >= 100)


def test_origin_is_the_intended_moment_unless_the_request_left_before_it() -> None:
    assert origin_ns(1_000_000, 1_400_000) == 1_000_000  # late: counts from the moment
    assert origin_ns(1_000_000, 600_000) == 600_000  # early: from the actual send
    assert origin_ns(1_000_000, 1_000_000) == 1_000_000


class _Client:
    """Stands in for `TargetClient`: its exchange started `offset_ns` from the intended send
    and took 2 ms."""

    def __init__(self, intended_ns: int, offset_ns: int) -> None:
        self.start_ns = intended_ns + offset_ns

    def sample_next(self) -> bool:
        return False

    async def exchange(self, *_: Any) -> Exchange:
        start = self.start_ns
        return Exchange(
            200, b"{}", None, "", None, None, start, start + 1_500_000, start + 2_000_000, None
        )


@pytest.mark.parametrize(
    ("offset_ns", "latency_us", "queue_us"), [(-700_000, 2_000, None), (3_000_000, 5_000, 3_000)]
)
def test_a_request_sent_early_counts_from_its_send_and_a_late_one_from_its_moment(
    offset_ns: int, latency_us: int, queue_us: int | None
) -> None:
    intended = 10_000_000_000
    recorded: list[tuple[Any, ...]] = []
    adapter = Adapter(Target(name="t", base_url="http://127.0.0.1:1", protocol="json"))
    sender = Sender(
        _Client(intended, offset_ns),  # type: ignore[arg-type]
        adapter,
        [Body((b"{}", None), "{}")],
        RunState(sent=1, in_flight=1),
        lambda *args: recorded.append(args),
    )
    asyncio.run(sender.one(0, intended))
    ((_, _, _, origin, ex, spans),) = recorded
    assert (ex.end_ns - origin) // 1000 == latency_us
    queue = [s for s in spans if s[0] == "queue"]
    assert queue == ([] if queue_us is None else [("queue", 0, queue_us)])
