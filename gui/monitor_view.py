"""The Monitor view: live plots of the selected target from the engine's stats snapshots.

Snapshots land in ring buffers (float64 numpy arrays); a timer redraws with `setData` at most
`redraw_hz` times a second, so a busy engine never means a busy GUI. Plots clip to view and
downsample by peak, as pyqtgraph recommends for scrolling data.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGridLayout, QWidget

from engine.stats import StatsSnapshot

SERIES = ("p50", "p95", "p99", "throughput", "errors", "queue", "in_flight")
SERIES = ("p50", "p95", "p99", "throughput", "errors", "queue", "in_flight")
STAGES = ("queue_wait", "inference", "write", "validate", "metadata")
STAGE_PENS = ("#d6b656", "#82b366", "#b85450", "#6c8ebf", "#9673a6")


class Ring:
    """A fixed-size ring of float64 samples, read oldest first."""

    def __init__(self, size: int) -> None:
        self.values = np.zeros(size)
        self.count = 0

    def push(self, value: float) -> None:
        self.values[self.count % len(self.values)] = value
        self.count += 1

    def view(self) -> np.ndarray:
        n = len(self.values)
        if self.count <= n:
            return self.values[: self.count]
        start = self.count % n
        return np.concatenate((self.values[start:], self.values[:start]))


class MonitorView(QWidget):
    def __init__(
        self, history: int = 1200, redraw_hz: float = 20.0, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.history = history
        self.t = Ring(history)
        self.series: dict[str, Ring] = {name: Ring(history) for name in (*SERIES, *STAGES)}
        self._t0: float | None = None
        self._dirty = False
        self.redraws = 0
        layout = QGridLayout(self)
        self.latency_plot = self._plot("Latency (ms)", layout, 0, 0)
        self.rate_plot = self._plot("Throughput and errors (/s)", layout, 0, 1)
        self.queue_plot = self._plot("Queue depth and in flight", layout, 1, 0)
        self.stage_plot = self._plot("Time per stage, stacked (ms)", layout, 1, 1)
        self.curves = {
            "p50": self.latency_plot.plot(pen="#6c8ebf", name="p50"),
            "p95": self.latency_plot.plot(pen="#d6b656", name="p95"),
            "p99": self.latency_plot.plot(pen="#b85450", name="p99"),
            "throughput": self.rate_plot.plot(pen="#82b366", name="ok/s"),
            "errors": self.rate_plot.plot(pen="#b85450", name="errors/s"),
            "queue": self.queue_plot.plot(pen="#d6b656", name="queue"),
            "in_flight": self.queue_plot.plot(pen="#6c8ebf", name="in flight"),
        }
        self.stage_curves = [
            self.stage_plot.plot(pen=pen, fillLevel=0, brush=pg.mkBrush(pen), name=name)
            for name, pen in zip(STAGES, STAGE_PENS, strict=True)
        ]
        # Each curve is the running total up to its stage and fills down to 0, so the lower
        # stages must be drawn over the higher ones for every band to show its own colour.
        for z, curve in enumerate(self.stage_curves):
            curve.setZValue(len(self.stage_curves) - z)
        self._timer = QTimer(self)
        self._timer.setInterval(max(int(1000 / redraw_hz), 1))
        self._timer.timeout.connect(self.redraw)
        self._timer.start()

    def _plot(self, title: str, layout: QGridLayout, row: int, col: int) -> pg.PlotItem:
        widget = pg.PlotWidget(title=title)
        item = widget.getPlotItem()
        item.addLegend(offset=(5, 5))
        item.setClipToView(True)
        item.setDownsampling(mode="peak")
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setLabel("bottom", "s")
        layout.addWidget(widget, row, col)
        return item

    def on_stats(self, snap: StatsSnapshot) -> None:
        if self._t0 is None:
            self._t0 = snap.at
        self.t.push(snap.at - self._t0)
        values = {
            "p50": snap.p50_ms,
            "p95": snap.p95_ms,
            "p99": snap.p99_ms,
            "throughput": snap.throughput_per_s,
            "errors": snap.errors_per_s,
            "queue": float(snap.queue_depth),
            "in_flight": float(snap.in_flight),
        }
        for stage in STAGES:
            values[stage] = snap.stage_ms.get(stage, 0.0)
        for name, ring in self.series.items():
            ring.push(values[name])
        self._dirty = True

    def redraw(self) -> None:
        if not self._dirty or not self.isVisible():
            return
        self._dirty = False
        self.redraws += 1
        t = self.t.view()
        for name, curve in self.curves.items():
            curve.setData(t, self.series[name].view())
        stacked = np.zeros(len(t))
        for stage, curve in zip(STAGES, self.stage_curves, strict=True):
            stacked = stacked + self.series[stage].view()
            curve.setData(t, stacked)

    def stop(self) -> None:
        self._timer.stop()
