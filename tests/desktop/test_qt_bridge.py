"""The engine-to-GUI bridge throttles; the loop-lag monitor measures a blocked loop."""

from __future__ import annotations

import time

from pytestqt.qtbot import QtBot

from engine.stats import StatsSnapshot
from gui.shared.bridge import EngineBridge
from gui.shared.loop_lag import LoopLagMonitor


def _snapshot(completed: int) -> StatsSnapshot:
    return StatsSnapshot(
        at=time.monotonic(),
        throughput_per_s=1.0,
        errors_per_s=0.0,
        p50_ms=1.0,
        p95_ms=2.0,
        p99_ms=3.0,
        queue_depth=0,
        in_flight=0,
        completed=completed,
        errors=0,
        stage_ms={},
    )


def test_bridge_emits_at_most_max_hz_however_much_arrives(qtbot: QtBot) -> None:
    bridge = EngineBridge(max_hz=20)
    stats: list[StatsSnapshot] = []
    batches: list[list[object]] = []
    bridge.sigStats.connect(stats.append)
    bridge.sigFinished.connect(batches.append)
    started = time.monotonic()
    deadline = started + 0.5
    sent = 0
    while time.monotonic() < deadline:
        for _ in range(100):
            sent += 1
            bridge.on_snapshot(_snapshot(sent))
            bridge.on_finished([sent])  # type: ignore[list-item]
        qtbot.wait(1)
    # The last updates go out on the bridge's next tick, however late a busy machine runs it.
    qtbot.waitUntil(lambda: bool(stats) and stats[-1].completed == sent, timeout=10_000)
    qtbot.waitUntil(lambda: sum(len(b) for b in batches) == sent, timeout=10_000)
    elapsed = time.monotonic() - started
    bridge.stop()
    assert sent > 1000
    assert 1 <= len(stats) <= 20 * elapsed + 2  # never one signal per update
    assert stats[-1].completed == sent  # the newest snapshot wins
    assert sum(len(b) for b in batches) == sent  # no finished request is dropped
    assert len(batches) <= 20 * elapsed + 2


def test_loop_lag_monitor_sees_a_blocked_loop(qtbot: QtBot) -> None:
    monitor = LoopLagMonitor(interval_ms=5)
    monitor.start()
    qtbot.wait(100)
    time.sleep(0.08)  # the GUI thread does 80 ms of work without returning to the loop
    qtbot.wait(50)
    monitor.stop()
    lag = monitor.summary_ms()
    assert lag["max"] >= 50
    assert lag["p50"] < lag["max"]


def test_loop_lag_window_records_only_while_open(qtbot: QtBot) -> None:
    monitor = LoopLagMonitor(interval_ms=5)
    monitor.start()
    qtbot.wait(50)
    # A stall before the window opens: the session sees it, the window not. It is far longer
    # than any hiccup a shared machine gives the loop while the window is open.
    time.sleep(0.4)
    qtbot.wait(20)
    window = monitor.open_window()
    qtbot.wait(100)
    inside = monitor.close_window(window)
    qtbot.wait(20)
    monitor.stop()
    assert monitor.summary_ms()["max"] >= 350
    assert inside["max"] < 350
    assert window.get_total_count() > 5
    assert monitor.close_window(window) == inside  # closing twice is harmless
