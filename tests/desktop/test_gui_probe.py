"""Health in the app: probers on the qasync loop against a real server that goes down and comes
back, a notification per change, throttled row updates, and the status timeline's segments from
live rounds and from what an earlier session stored."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from conftest import run_on_qasync
from fault_server import FaultServer, Rule
from PySide6.QtCore import QAbstractEventDispatcher
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication, QMainWindow
from pytestqt.qtbot import QtBot
from qt_helpers import wait_for

from engine.remote.prober import Prober, load_history
from engine.remote.secrets import TokenStore
from engine.remote.target_store import TargetStore, make_target
from engine.tasks import TaskOwner
from gui.monitor.monitor_view import MonitorView
from gui.targets.probe_host import Notifier, ProbeHost, change_notice
from gui.targets.status_timeline import STATE_COLOURS, Point, StatusTimeline, segments
from gui.targets.targets_table_model import COLUMNS
from gui.targets.targets_view import TargetsView
from storage import open_database

STATE = COLUMNS.index("state")


def _bar_colours(timeline: StatusTimeline, name: str) -> list[str]:
    brushes = timeline.lanes[name].bars.opts["brushes"]
    return [QColor(b.color()).name() for b in brushes]


def test_a_row_flips_up_down_up_with_a_notification_each_time_and_the_timeline_follows(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    window = QMainWindow()
    qtbot.addWidget(window)
    notifier = Notifier(window, use_tray=False)
    seen: dict[str, object] = {}

    async def main() -> None:
        db = await open_database(tmp_path / "probe.db")
        tokens = TokenStore(system_keyring=False)
        tasks = TaskOwner()
        host = ProbeHost(db, tokens, interval_s=0.1, max_hz=4.0, notify=notifier.notify)
        timeline = StatusTimeline()
        qtbot.addWidget(timeline)
        host.sigSnapshots.connect(timeline.add_rounds)
        repaints: list[int] = []
        try:
            view = TargetsView(TargetStore(db, tokens), host, tasks)
            qtbot.addWidget(view)
            view.table_model.dataChanged.connect(lambda *_: repaints.append(1))
            with FaultServer() as server:
                target = make_target(
                    name="flaky", base_url=server.url, timeout_s=1.0, connect_timeout_s=0.5
                )
                await view.store.add(target)
                started = time.monotonic()
                await view.load()

                def state() -> str:
                    return str(view.table_model.data(view.table_model.index(0, STATE)))

                await wait_for(lambda: state() == "up")
                assert notifier.sent == []  # found up at start: nothing to tell
                server.go_down()
                await wait_for(lambda: state() == "down")
                seen["down_message"] = window.statusBar().currentMessage()
                server.come_back()
                await wait_for(lambda: state() == "up")
                seen["up_message"] = window.statusBar().currentMessage()
                elapsed = time.monotonic() - started

                def states() -> list[str]:
                    return [s.state for s in timeline.segments("flaky")]

                # Until the timeline has drawn the last "up" after a change; the list of
                # states is then asserted whole, so a stray state shows in the failure.
                await wait_for(lambda: len(states()) >= 3 and states()[-1] == "up")
            rounds = host.probers["flaky"].snapshot().rounds
            seen["rounds"], seen["emits"], seen["elapsed"] = rounds, host.emits, elapsed
            seen["repaints"] = len(repaints)
            seen["segments"] = [s.state for s in timeline.segments("flaky")]
            seen["colours"] = _bar_colours(timeline, "flaky")
            latency_x, _ = timeline.lanes["flaky"].curve.getData()
            seen["latency_points"] = 0 if latency_x is None else len(latency_x)
        finally:
            await tasks.wait()
            await host.aclose()
            await db.close()

    run_on_qasync(qapp, main())
    notifier.close()
    assert len(notifier.sent) == 2, notifier.sent
    assert notifier.sent[0].startswith(
        "Target down: flaky is down: nothing is listening at that address (connection refused)"
    )
    assert notifier.sent[0].endswith(", was up")
    assert notifier.sent[1] == "Target up: flaky is up, was down"
    assert "flaky is down" in str(seen["down_message"])
    assert "flaky is up" in str(seen["up_message"])
    assert seen["segments"] == ["up", "down", "up"]
    assert seen["colours"] == [STATE_COLOURS[s] for s in ("up", "down", "up")]
    assert int(seen["latency_points"]) >= 3  # type: ignore[call-overload]
    # Throttled: at most max_hz snapshot emits a second, whatever the probe rate; the table
    # repaints once per emit at most (one target), never once per probe.
    rounds, emits = int(seen["rounds"]), int(seen["emits"])  # type: ignore[call-overload]
    elapsed = float(seen["elapsed"])  # type: ignore[arg-type]
    assert emits <= elapsed * 4 + 3, (emits, elapsed)
    assert int(seen["repaints"]) <= emits  # type: ignore[call-overload]
    assert rounds >= emits


def test_timeline_draws_what_an_earlier_session_stored(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    """A prober stores up, degraded and down rounds; a new timeline draws them from the file."""
    found: dict[str, object] = {}

    async def main() -> None:
        db = await open_database(tmp_path / "history.db")
        try:
            with FaultServer() as server:
                target = make_target(name="svc", base_url=server.url, model="iris")
                async with Prober(target, interval_s=1.0, db=db) as prober:
                    for _ in range(3):
                        await prober.probe_once()
                    # /ready fails: the model is loading, the process is alive.
                    server.add(Rule("status", status=503, path="/ready"))
                    for _ in range(2):
                        await prober.probe_once()
                    server.go_down()
                    for _ in range(2):
                        await prober.probe_once()
            await db.writer.flush()
            found["rows"] = await load_history(db, "svc")
        finally:
            await db.close()

    run_on_qasync(qapp, main())
    rows = found["rows"]
    assert isinstance(rows, list)
    timeline = StatusTimeline()
    qtbot.addWidget(timeline)
    assert timeline.empty.isVisibleTo(timeline)
    timeline.set_stored("svc", rows)
    found["segments"] = [s.state for s in timeline.segments("svc")]
    found["colours"] = _bar_colours(timeline, "svc")
    found["empty_shown"] = timeline.empty.isVisibleTo(timeline)
    found["rows"] = len(rows)
    timeline.remove("svc")
    found["after_remove"] = timeline.segments("svc")
    assert found["rows"] == 7 * 3  # live, ready, model-ready per round
    assert found["segments"] == ["up", "degraded", "down"]
    assert found["colours"] == ["#2e9e44", "#e0a100", "#d03b3b"]
    assert found["empty_shown"] is False
    assert found["after_remove"] == []


def test_segments_merge_runs_and_the_monitor_view_hosts_the_timeline(qtbot: QtBot) -> None:
    points = [Point(10.0, "up", 1), Point(11.0, "up", 1), Point(12.0, "down", 5)]
    runs = segments(points)
    assert [(s.start_s, s.end_s, s.state) for s in runs] == [
        (10.0, 12.0, "up"),
        (12.0, 13.0, "down"),  # the last run lasts one median gap past its round
    ]
    assert change_notice("a", "unknown", "up", "all probes ok") is None
    assert change_notice("a", "unknown", "down", "live: timeout") == (
        "Target down",
        "a is down: it did not answer in time (timeout)",
    )
    monitor = MonitorView()
    qtbot.addWidget(monitor)
    timeline = StatusTimeline()
    monitor.add_panel(timeline)
    assert monitor.isAncestorOf(timeline)
    monitor.stop()


def test_a_new_probe_interval_keeps_each_targets_changed_time(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    """Restarting the probers on a new schedule is not a state change: the state, its "changed"
    time and the timeline's changes carry over, and nobody is told again."""
    from live_server import free_port

    from gui.targets.targets_table_model import COLUMNS

    window = QMainWindow()
    qtbot.addWidget(window)
    notifier = Notifier(window, use_tray=False)
    seen: dict[str, object] = {}

    async def main() -> None:
        db = await open_database(tmp_path / "interval.db")
        tokens = TokenStore(system_keyring=False)
        tasks = TaskOwner()
        host = ProbeHost(db, tokens, interval_s=30.0, max_hz=10.0, notify=notifier.notify)
        try:
            view = TargetsView(TargetStore(db, tokens), host, tasks)
            qtbot.addWidget(view)
            closed = f"http://127.0.0.1:{free_port()}"
            await view.store.add(make_target(name="gone", base_url=closed, connect_timeout_s=0.5))
            await view.load()
            model = view.table_model
            changed = COLUMNS.index("changed")
            await wait_for(lambda: model.data(model.index(0, STATE)) == "down")
            before = host.probers["gone"]
            since = before.snapshot().since_us
            seen["cell_before"] = model.data(model.index(0, changed))
            await host.set_interval(0.1)
            after = host.probers["gone"]
            rounds = after.snapshot().rounds
            await wait_for(lambda: after.snapshot().rounds >= rounds + 2)  # probed again
            seen["replaced"] = after is not before
            seen["since"] = (since, after.snapshot().since_us)
            seen["changes"] = len(after.snapshot().changes)
            seen["cell_after"] = model.data(model.index(0, changed))
            seen["state"] = model.data(model.index(0, STATE))
        finally:
            await tasks.wait()
            await host.aclose()
            await db.close()

    run_on_qasync(qapp, main())
    notifier.close()
    assert seen["replaced"] is True and seen["state"] == "down"
    since = seen["since"]
    assert isinstance(since, tuple) and since[0] is not None and since[1] == since[0]
    assert seen["cell_after"] == seen["cell_before"]
    assert seen["changes"] == 1  # unknown -> down, once
    assert len(notifier.sent) == 1, notifier.sent  # the first "down", not again


def test_probers_restarted_then_stopped_leave_nothing_on_their_closed_loop(
    qapp: QApplication, tmp_path: Path
) -> None:
    """A new interval, then the host stops: every prober, old and new, is stopped with its
    HTTP client closed, and the closed loop owns no Qt timer (each probe's deadline arms one,
    and a cancelled deadline kept its timer). Freed later on another thread, as a view qtbot
    deletes late lets happen, the loop then leaves nothing to fire into freed memory in the
    next loop: the segfault this order of tests once caused."""
    from live_server import free_port

    kept: dict[str, Any] = {}

    async def main() -> None:
        db = await open_database(tmp_path / "restart.db")
        tokens = TokenStore(system_keyring=False)
        host = ProbeHost(db, tokens, interval_s=30.0)
        try:
            closed = f"http://127.0.0.1:{free_port()}"
            target = make_target(name="gone", base_url=closed, timeout_s=1.0, connect_timeout_s=0.5)
            await host.set_target(await TargetStore(db, tokens).add(target))
            before = host.probers["gone"]
            await wait_for(lambda: before.snapshot().rounds >= 1)
            await host.set_interval(0.1)
            after = host.probers["gone"]
            await wait_for(lambda: after.snapshot().rounds >= 4)  # deadlines armed and cancelled
            kept["probers"] = [before, after]
        finally:
            await host.aclose()
            await db.close()
            kept["stopped_at"] = time.monotonic()
            kept["loop"] = asyncio.get_running_loop()  # held past its close, as a late view does

    run_on_qasync(qapp, main())
    probers = kept.pop("probers")
    assert [p.running for p in probers] == [False, False]
    assert [p.client_closed for p in probers] == [True, True]
    loop = kept.pop("loop")
    dispatcher = QAbstractEventDispatcher.instance()
    assert dispatcher is not None
    left = [info.interval for info in dispatcher.registeredTimers(loop._timer)]
    assert left == [], f"the closed loop still owns Qt timers of {left} ms"

    # Freed on another thread now, and a new loop runs past every deadline the probes armed.
    gone = weakref.ref(loop)
    del loop, probers
    collector = threading.Thread(target=gc.collect)
    collector.start()
    collector.join()
    assert gone() is None
    due = kept["stopped_at"] + 1.5 + 0.5  # timeout_s + connect_timeout_s, and a margin

    async def next_test() -> None:
        await wait_for(lambda: time.monotonic() > due)

    run_on_qasync(qapp, next_test())


def test_a_removal_during_a_new_interval_and_a_save_after_stopping_start_no_prober(
    qapp: QApplication, tmp_path: Path
) -> None:
    """A target removed while a new interval restarts the probers is skipped, not a KeyError;
    a save that ends after the host stopped (the app quitting) starts no prober: one would
    run on, its HTTP client open, on a loop that is closing."""
    from live_server import free_port

    seen: dict[str, Any] = {}

    async def main() -> None:
        db = await open_database(tmp_path / "stopping.db")
        tokens = TokenStore(system_keyring=False)
        store = TargetStore(db, tokens)
        host = ProbeHost(db, tokens, interval_s=30.0)
        made: list[Prober] = []
        try:
            for name in ("a", "b", "late"):
                url = f"http://127.0.0.1:{free_port()}"
                await store.add(make_target(name=name, base_url=url, connect_timeout_s=0.5))
            stored = {s.target.name: s for s in await store.list_all()}
            await host.start_all([stored["a"], stored["b"]])
            made += host.probers.values()
            await wait_for(lambda: all(p.snapshot().rounds >= 1 for p in made))
            restart = asyncio.ensure_future(host.set_interval(0.5))
            await asyncio.sleep(0)  # it stops a's prober now; b goes while it waits
            await host.remove("b")
            await restart
            seen["after_restart"] = sorted(host.probers)
            made += host.probers.values()
            await host.aclose()
            await host.set_target(stored["late"])  # a save that finished after the stop
            made += host.probers.values()
            seen["after_stop"] = sorted(host.probers)
            seen["running"] = [p for p in made if p.running or not p.client_closed]
        finally:
            await host.aclose()
            await db.close()

    run_on_qasync(qapp, main())
    assert seen["after_restart"] == ["a"]
    assert seen["after_stop"] == []
    assert seen["running"] == []
