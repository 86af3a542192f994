"""A load run on a thread and loop of its own (`LoopThread`), as the desktop app runs one: its
database opened on that loop, its figures read from another thread through `latest()`, stopped
from outside by `call_soon`, with every request sent stored."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from tiny_server import TinyServer, target

from engine.remote.load import LoadResult, LoadRunner, LoadSnapshot
from engine.remote.load.threaded import LoopThread
from engine.remote.payloads import PayloadSource
from engine.remote.plan import LoadPlan
from storage.database import open_database


def test_a_run_on_its_own_thread_is_read_and_stopped_from_another_and_stores_every_request(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "t.db"
    runners: list[LoadRunner] = []
    loops: list[tuple[int, asyncio.AbstractEventLoop]] = []
    extra_thread: list[int] = []

    async def summary_extra() -> dict[str, int]:
        await asyncio.sleep(0)  # an awaitable extra is awaited (the app's asks the GUI loop)
        extra_thread.append(threading.get_ident())
        return {"extra": 7}

    async def main() -> LoadResult:
        loops.append((threading.get_ident(), asyncio.get_running_loop()))
        db = await open_database(db_path)
        try:
            runner = LoadRunner(
                target(server.url),
                LoadPlan(rate=200, duration_s=60),
                PayloadSource.single({"x": 1}),
                db=db,
                summary_extra=summary_extra,
                publish_every_s=0.02,
            )
            runners.append(runner)
            return await runner.run()
        finally:
            await db.close()

    with TinyServer(delay_s=0.05) as server:
        thread: LoopThread[LoadResult] = LoopThread(main)
        assert not thread.call_soon(lambda: None)  # no loop yet: nothing to call
        future = thread.start()
        seen: list[LoadSnapshot] = []
        deadline = time.monotonic() + 60
        while not seen or seen[-1].sent < 50:  # read here, on the test's thread
            assert time.monotonic() < deadline, "timed out"
            snap = runners[0].latest() if runners else None
            if snap is not None:
                seen.append(snap)
            time.sleep(0.01)  # (polling another thread's figures: nothing to await)
        assert thread.call_soon(runners[0].stop)
        result = future.result(timeout=30)
        thread.join(10)
    assert loops[0][0] != threading.get_ident()  # the run's loop lived on the other thread
    assert extra_thread == [loops[0][0]]
    assert not thread.call_soon(lambda: None)  # its loop has closed
    summary = result.summary
    assert summary["extra"] == 7 and summary["sent"] >= 50
    final = runners[0].latest()
    assert final is not None and final.done and final.completed == summary["sent"]
    sent = [s.sent for s in seen]
    assert sent == sorted(sent) and len(set(sent)) > 1  # published as it went
    with sqlite3.connect(db_path) as conn:
        (stored,) = conn.execute(
            "SELECT count(*) FROM requests WHERE run_id = ?", (result.run_id,)
        ).fetchone()
        (status,) = conn.execute(
            "SELECT status FROM runs WHERE run_id = ?", (result.run_id,)
        ).fetchone()
    assert stored == summary["sent"] == summary["accepted"]
    assert status == "done"


def test_a_failure_on_the_thread_reaches_the_caller_through_the_future() -> None:
    async def main() -> None:
        raise ValueError("broken")

    thread: LoopThread[None] = LoopThread(main)
    future = thread.start()
    try:
        future.result(timeout=10)
    except ValueError as exc:
        assert str(exc) == "broken"
    else:
        raise AssertionError("no failure")
    thread.join(10)


class _ForeignLoops(asyncio.DefaultEventLoopPolicy):
    """A policy like the app's (qasync's), whose loops would run on another thread's timers."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        raise AssertionError("the process's policy made the run's loop")


def test_the_runs_loop_is_a_plain_asyncio_loop_whatever_the_policy() -> None:
    async def main() -> str:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__name__

    old = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_ForeignLoops())
    try:
        thread: LoopThread[str] = LoopThread(main)
        name = thread.start().result(timeout=10)
        thread.join(10)
    finally:
        asyncio.set_event_loop_policy(old)
    assert name.endswith("SelectorEventLoop")
