"""A load run's live figures and its start: the live rate over the part of the window the run
has lived, progress and time left from the plan, and the health check before any traffic."""

from __future__ import annotations

import asyncio

import pytest
from live_server import free_port
from tiny_server import TinyServer, target

from engine.remote.client import Exchange
from engine.remote.load.preflight import check_health
from engine.remote.load.progress import left_text, progress
from engine.remote.load.recording import Recorder
from engine.remote.load.state import RunState
from engine.remote.plan import LoadPlan
from engine.remote.prober import plain_error


class Clock:
    """`time.monotonic` under the test's hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_live_rate_is_right_from_the_first_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run starting late in a clock second: its first answers fall in a one-second bucket
    that began before the run did. The rate counts from the run's start, not the bucket's (it
    read 30 answers in 0.9 s as ~16/s, then climbed over the window's seconds)."""
    clock = Clock(100.9)
    monkeypatch.setattr("time.monotonic", clock)
    recorder = Recorder(target("http://127.0.0.1:9"), None, RunState(), None)
    asyncio.run(recorder.begin({}))
    for i in range(30):
        clock.now = 100.93 + i * 0.03  # 30 answers by 101.8
        ex = Exchange(200, b"{}", None, "", None, None, 0, 0, 1_000_000, None)
        recorder.record(f"r{i}", "tp", "{}", 0, ex, [])
    clock.now = 101.9  # a second into the run
    snap = recorder.snapshot()
    assert snap.ok == 30
    assert snap.throughput_per_s == pytest.approx(30.0, rel=0.01)


def test_progress_and_time_left_follow_the_plan() -> None:
    timed = LoadPlan(rate=100, duration_s=10)
    assert progress(timed, 2.5, 250) == progress(timed, 2.5, 0)  # the clock decides
    assert progress(timed, 2.5, 250).done == pytest.approx(0.25)
    assert progress(timed, 2.5, 250).left_s == pytest.approx(7.5)
    assert progress(timed, 12.0, 0).done == 1.0 and progress(timed, 12.0, 0).left_s == 0.0
    counted = LoadPlan(rate=100, requests=1000)
    assert progress(counted, 0.0, 0).left_s is None  # nothing answered yet: no estimate
    half = progress(counted, 5.0, 500)
    assert half.done == pytest.approx(0.5) and half.left_s == pytest.approx(5.0)
    assert left_text(None) == "time left: estimating…"
    assert left_text(7.4) == "7 s left"
    assert left_text(200) == "3 min 20 s left"
    assert left_text(3900) == "1 h 05 min left"


def test_the_preflight_says_up_or_down_with_the_reason_in_plain_words() -> None:
    async def main() -> tuple[str, str, bool, str]:
        with TinyServer() as server:
            up = await check_health(target(server.url))
        down = await check_health(target(f"http://127.0.0.1:{free_port()}"))
        return up.state, down.state, down.down, down.text()

    up, down, is_down, text = asyncio.run(main())
    assert (up, down, is_down) == ("up", "down", True)
    assert text.endswith("is down: nothing is listening at that address (connection refused)")


def test_probe_failures_read_as_plain_words() -> None:
    assert plain_error("connect_refused").startswith("nothing is listening")
    assert plain_error("http_503") == "it answered HTTP 503"
    assert plain_error("timeout") == "it did not answer in time (timeout)"
    assert plain_error("other: name or service not known") == "name or service not known"
