"""The Monitor view: ring buffers, throttled redraws, stacked stages."""

from __future__ import annotations

import numpy as np
from pytestqt.qtbot import QtBot

from engine.stats import StatsSnapshot
from gui.monitor_view import MonitorView, Ring


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
    for i in range(300):  # far more snapshots than the history and than redraws
        view.on_stats(_snap(i * 0.1, float(i)))
    qtbot.wait(200)
    x, y = view.curves["p99"].getData()
    assert x is not None and y is not None
    assert len(y) == 100 and y[-1] == 299.0  # the ring holds the newest 100
    assert np.all(np.diff(x) > 0)
    _, top = view.stage_curves[-1].getData()
    assert top is not None and top[-1] == 3.5  # stacked: 1 + 2 + 0.5 + 0 + 0
    assert 1 <= view.redraws <= 6  # ~20 Hz over 0.2 s, never once per snapshot
    view.stop()
