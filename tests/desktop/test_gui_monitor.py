"""The Monitor view: ring buffers, throttled redraws, stacked stages."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from engine.stats import RunRecorder, StatsSnapshot
from engine.work import FutureSink, Work
from gui.monitor.monitor_view import MonitorView
from gui.shared.plots import Ring


def _snap(at: float, p99: float) -> StatsSnapshot:
    return StatsSnapshot(
        at=at,
        throughput_per_s=100.0,
        errors_per_s=1.0,
        p50_ms=p99 / 3,
        p95_ms=p99 / 2,
        p99_ms=p99,
        queue_depth=5,
        in_flight=2,
        completed=10,
        errors=1,
        stage_ms={"queue_wait": 1.0, "inference": 2.0, "write": 0.5},
    )


def test_ring_keeps_the_newest_in_order() -> None:
    ring = Ring(4)
    for v in range(6):
        ring.push(float(v))
    assert ring.view().tolist() == [2.0, 3.0, 4.0, 5.0]


def test_monitor_plots_snapshots_with_bounded_redraws(qtbot: QtBot) -> None:
    view = MonitorView(history=100, redraw_hz=20)
    qtbot.addWidget(view)
    view.show()
    started = time.monotonic()
    for i in range(300):  # far more snapshots than the history and than redraws
        view.on_stats(_snap(i * 0.1, float(i)))
    # The plots take turns, one per tick: wait until the last of them (the stages) is drawn,
    # however slowly a busy machine delivers the ticks.
    qtbot.waitUntil(lambda: view.stage_curves[-1].getData()[1] is not None, timeout=10_000)
    elapsed = time.monotonic() - started
    x, y = view.curves["p99"].getData()
    assert x is not None and y is not None
    assert len(y) == 100 and y[-1] == 299.0  # the ring holds the newest 100
    assert np.all(np.diff(x) > 0)
    _, top = view.stage_curves[-1].getData()
    assert top is not None and top[-1] == 3.5  # stacked: 1 + 2 + 0.5 + 0 + 0
    assert 1 <= view.redraws <= 20 * elapsed + 1  # ≤ 20 Hz, never once per snapshot
    view.stop()


def _work(request_id: str, latency_ms: float, status: str = "ok") -> Work:
    return Work(
        request_id=request_id,
        run=RunRecorder("run", "test"),
        sink=FutureSink(),
        source="form",
        client_id="gui",
        model=None,
        features=None,
        priority=0,
        input_json=None,
        accepted_ns=0,
        created_us=0,
        spans=[],
        status=status,
        latency_us=int(latency_ms * 1000),
    )


def test_ring_extend_matches_pushes() -> None:
    pushed, extended = Ring(5), Ring(5)
    values = np.arange(13, dtype=np.float64)
    for v in values:
        pushed.push(float(v))
    extended.extend(values[:3])
    extended.extend(values[3:11])
    extended.extend(values[11:])
    assert extended.view().tolist() == pushed.view().tolist() == [8.0, 9.0, 10.0, 11.0, 12.0]


def test_histogram_and_slow_points_open_their_trace(qtbot: QtBot) -> None:
    view = MonitorView(history=100, redraw_hz=30)
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    view.on_stats(_snap(time.monotonic(), 10.0))  # p99 now 10 ms
    fast = [_work(f"fast-{i}", 2.0 + (i % 5) * 0.1) for i in range(200)]
    view.on_finished([*fast, _work("slow-one", 40.0), _work("bad", 90.0, status="failed")])
    view.on_finished([_work(f"ok-{i}", 3.0) for i in range(50)])  # none beyond p99: no point
    qtbot.waitUntil(lambda: view.redraws >= 1)
    edges, counts = view.histogram_curve.getData()
    assert edges is not None and counts is not None
    assert counts.sum() >= 250  # the failed request is not a latency sample
    assert [p.data() for p in view.slow_points.points()] == ["slow-one"]

    # Click the point where it is drawn, as a person would.
    qtbot.wait(100)  # let the view box fit its range to the data
    point = view.slow_points.points()[0]
    widget = view._widgets[0]
    scene_pos = view.latency_plot.getViewBox().mapViewToScene(point.pos())
    where = widget.mapFromScene(scene_pos)
    with qtbot.waitSignal(view.sigOpenRequest, timeout=2000) as opened:
        qtbot.mouseClick(widget.viewport(), Qt.MouseButton.LeftButton, pos=where)  # type: ignore[no-untyped-call]
    assert opened.args == ["slow-one"]
    view.stop()
