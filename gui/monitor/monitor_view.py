"""The Monitor view: live plots of the selected target from the engine's stats snapshots.

Snapshots and finished requests land in ring buffers (float64 numpy arrays); a timer redraws
with `setData` at most `redraw_hz` times a second, and only when something changed, so a busy
engine never means a busy GUI. Plots clip to view and downsample by peak, as pyqtgraph
recommends for scrolling data. Slow requests are drawn as points on the latency plot; clicking
one asks for its trace (`sigOpenRequest`).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QScrollArea, QVBoxLayout, QWidget

from engine.stats import StatsSnapshot
from engine.work import Work
from gui.shared.plot_turns import fit_range
from gui.shared.plots import LivePlotsWidget, Ring, draw_curves

SERIES = ("p50", "p95", "p99", "throughput", "errors", "queue", "in_flight")
STAGES = ("queue_wait", "inference", "write", "validate", "metadata")
STAGE_PENS = ("#d6b656", "#82b366", "#b85450", "#6c8ebf", "#9673a6")
HISTOGRAM_BINS = 60
SLOW_POINTS = 300  # the newest slow requests kept as clickable points
PLOT_MIN_HEIGHT = 170  # px: below this a plot's axes crowd out its data


class MonitorView(LivePlotsWidget):
    """The Monitor tab's live plots and panels; `MainWindow` holds it, `gui.app` feeds it."""

    sigOpenRequest = Signal(str)  # request ID of a clicked slow point

    def __init__(
        self,
        history: int = 1200,
        redraw_hz: float = 30.0,
        recent_latencies: int = 20_000,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.history = history
        self.t = Ring(history)
        self.series: dict[str, Ring] = {name: Ring(history) for name in (*SERIES, *STAGES)}
        self.recent_ms = Ring(recent_latencies)  # latencies of the newest ok requests
        self.slow: deque[tuple[float, float, str]] = deque(maxlen=SLOW_POINTS)
        self._t0: float | None = None
        self._last_p99_ms = 0.0
        self._last_moved: tuple[int, int, int, int] | None = None
        self._idle_drawn_at = 0.0
        # The plots, the targets' timeline and the load plots scroll together: squeezed into
        # one window height they became unreadable slivers.
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        content = QWidget()
        layout = QGridLayout(content)
        scroll.setWidget(content)
        outer.addWidget(scroll)
        self._scroll = scroll
        self._grid = layout
        self.latency_plot = self._plot(
            "Latency (ms); click a point to open its trace", layout, 0, 0
        )
        self.histogram_plot = self._plot(
            "Latency distribution, recent requests", layout, 0, 1, scrolling=False
        )
        self.histogram_plot.setLabel("bottom", "ms")
        self.histogram_plot.setLabel("left", "requests")
        self.rate_plot = self._plot("Throughput and errors (/s)", layout, 1, 0)
        self.queue_plot = self._plot("Queue depth and in flight", layout, 1, 1)
        self.stage_plot = self._plot("Time per stage, stacked (ms)", layout, 2, 0, span=2)
        self.curves = {
            "p50": self.latency_plot.plot(pen="#6c8ebf", name="p50"),
            "p95": self.latency_plot.plot(pen="#d6b656", name="p95"),
            "p99": self.latency_plot.plot(pen="#b85450", name="p99"),
            "throughput": self.rate_plot.plot(pen="#82b366", name="ok/s"),
            "errors": self.rate_plot.plot(pen="#b85450", name="errors/s"),
            "queue": self.queue_plot.plot(pen="#d6b656", name="queue"),
            "in_flight": self.queue_plot.plot(pen="#6c8ebf", name="in flight"),
        }
        self.slow_points = pg.ScatterPlotItem(
            size=8, pen=pg.mkPen("#b85450"), brush=pg.mkBrush("#f8cecc"), name="slow requests"
        )
        self.slow_points.setToolTip("A slow request: click to open its trace")
        self.slow_points.sigClicked.connect(self._on_slow_clicked)
        self.latency_plot.addItem(self.slow_points)
        self.histogram_curve = self.histogram_plot.plot(
            stepMode="center", fillLevel=0, brush=pg.mkBrush("#6c8ebf80"), pen="#6c8ebf"
        )
        self.stage_curves = [
            self.stage_plot.plot(pen=pen, fillLevel=0, brush=pg.mkBrush(pen), name=name)
            for name, pen in zip(STAGES, STAGE_PENS, strict=True)
        ]
        # Each curve is the running total up to its stage and fills down to 0, so the lower
        # stages must be drawn over the higher ones for every band to show its own colour.
        for z, curve in enumerate(self.stage_curves):
            curve.setZValue(len(self.stage_curves) - z)
        self._take_turns(
            (
                self._draw_latency,
                self._draw_histogram,
                self._draw_rates,
                self._draw_queue,
                self._draw_stages,
            ),
            redraw_hz,
        )
        self.set_dark(False)

    def _plot(
        self,
        title: str,
        layout: QGridLayout,
        row: int,
        col: int,
        span: int = 1,
        scrolling: bool = True,
    ) -> pg.PlotItem:
        widget, item = self._new_plot(title, min_height=PLOT_MIN_HEIGHT, scrolling=scrolling)
        layout.addWidget(widget, row, col, 1, span)
        return item

    def _elapsed(self, at: float) -> float:
        if self._t0 is None:
            self._t0 = at
        return at - self._t0

    def on_stats(self, snap: StatsSnapshot) -> None:
        self.t.push(self._elapsed(snap.at))
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
        self._last_p99_ms = snap.p99_ms
        # An idle engine still publishes (zeros, 40 a second): keep the samples, but repaint
        # for them once a second, not 30 times; the paint time goes to the plots that move
        # (a load run's, measured: bench/bench_gui_load.py).
        moved = (snap.completed, snap.errors, snap.in_flight, snap.queue_depth)
        if moved == self._last_moved and snap.at - self._idle_drawn_at < 1.0:
            return
        self._last_moved = moved
        self._idle_drawn_at = snap.at
        self._turns.data_moved()

    def on_finished(self, done: list[Work]) -> None:
        """Requests finished since the bridge's last tick: feed the histogram, and keep the
        slowest of them as a point when it is at or beyond the current p99."""
        ok = [w for w in done if w.status == "ok"]
        if not ok:
            return
        self.recent_ms.extend(np.fromiter((w.latency_us for w in ok), np.float64, len(ok)) / 1000)
        slowest = max(ok, key=lambda w: w.latency_us)
        slowest_ms = slowest.latency_us / 1000
        if self._last_p99_ms > 0 and slowest_ms >= self._last_p99_ms:
            self.slow.append((self._elapsed(time.monotonic()), slowest_ms, slowest.request_id))
        self._turns.data_moved()

    def _on_slow_clicked(self, _item: Any, points: Any, *_: Any) -> None:
        if len(points):
            self.sigOpenRequest.emit(str(points[0].data()))

    def _draw_series(self, plot: pg.PlotItem, names: tuple[str, ...]) -> None:
        t = self.t.view()
        top = draw_curves(self.curves, self.series, t, names)
        if plot is self.latency_plot and self.slow:
            xs, ys, ids = zip(*self.slow, strict=True)
            self.slow_points.setData(x=list(xs), y=list(ys), data=list(ids))
            visible = [y for x, y in zip(xs, ys, strict=True) if len(t) and x >= t[0]]
            top = max(top, *visible) if visible else top
        fit_range(plot, t, top)

    def _draw_latency(self) -> None:
        self._draw_series(self.latency_plot, ("p50", "p95", "p99"))

    def _draw_histogram(self) -> None:
        recent = self.recent_ms.view()
        if len(recent):
            # The top 0.1 % would stretch the axis and squash the body of the distribution.
            upper = float(np.quantile(recent, 0.999)) or 1.0
            counts, edges = np.histogram(recent, bins=HISTOGRAM_BINS, range=(0.0, upper))
            self.histogram_curve.setData(edges, counts)
            fit_range(self.histogram_plot, edges, float(counts.max()))

    def _draw_rates(self) -> None:
        self._draw_series(self.rate_plot, ("throughput", "errors"))

    def _draw_queue(self) -> None:
        self._draw_series(self.queue_plot, ("queue", "in_flight"))

    def _draw_stages(self) -> None:
        t = self.t.view()
        stacked = np.zeros(len(t))
        for stage, curve in zip(STAGES, self.stage_curves, strict=True):
            stacked = stacked + self.series[stage].view()
            curve.setData(t, stacked)
        fit_range(self.stage_plot, t, float(stacked.max()) if len(stacked) else 0.0)

    def add_panel(self, widget: QWidget) -> None:
        """A self-contained panel below the plots, full width (the targets' status timeline)."""
        self._grid.addWidget(widget, self._grid.rowCount(), 0, 1, 2)

    def scroll_to_panels(self) -> None:
        """Show the panels below the plots (the targets' timeline, the load plots)."""
        bar = self._scroll.verticalScrollBar()
        bar.setValue(bar.maximum())
