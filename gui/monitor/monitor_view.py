"""The Monitor view: live plots of the local engine, a remote load and the targets, on one clock.

Snapshots and finished requests land in ring buffers (float64 numpy arrays); a timer redraws
with `setData` at most `redraw_hz` times a second, and only when something changed, so a busy
engine never means a busy GUI. Plots clip to view and downsample by peak, as pyqtgraph
recommends for scrolling data. Slow requests are drawn as points on the latency plot; clicking
one asks for its trace (`sigOpenRequest`).

Every time plot, the hosted panels' included (`add_panel`: the load plots, the targets' status
timeline), is on one clock-time axis (`gui.shared.time_axis.TimeAxis`): linked pan and zoom, a
crosshair with a readout, Follow/Pause and a time range; the latency histogram counts only the
requests of that range (`latency_window.LatencyWindow`). The page scrolls (the wheel over a plot
scrolls it; Ctrl+wheel zooms time), and its sections come in the order of what is active: a
running load's plots first, the local engine's folded below while it idles (`set_scope` too).

The view is made without its plots (the window's first paint does not show them); they are
built on demand (`LivePlotsWidget.ensure_built`: shown, read, or in the turns after the first
paint), and the snapshots that come before wait in the rings.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from engine.stats import StatsSnapshot
from engine.work import Work
from gui.monitor.latency_axis import LatencyAxis
from gui.monitor.latency_window import EDGES_MS, LatencyWindow
from gui.monitor.sections import Section
from gui.shared.plot_turns import steady_top
from gui.shared.plots import LivePlotsWidget, Ring, draw_curves, plot_colours, sample_at
from gui.shared.time_axis import RANGES, TimeAxis

SERIES = ("p50", "p95", "p99", "throughput", "errors", "queue", "in_flight")
STAGES = ("queue_wait", "inference", "write", "validate", "metadata")
STAGE_PENS = ("#d6b656", "#82b366", "#b85450", "#6c8ebf", "#9673a6")
SLOW_POINTS = 300  # the newest slow requests kept as clickable points
PLOT_MIN_HEIGHT = 170  # px: below this a plot's axes crowd out its data
HISTORY = 36_000  # samples per series: an hour of the engine's ≤ 10 snapshots a second
LOCAL_IDLE_S = 10.0  # the local engine is "flat" after this long without a finished request
ARRANGE_MS = 250  # how often the range follows the clock and the sections are ordered
SECTION_TITLES = {
    "local": "Local engine",
    "load": "Remote load",
    "targets": "Targets' health",
    "panel": "More",
}


@dataclass(frozen=True, slots=True)
class LocalPlots:
    """The local engine's plots and what is drawn in them; `MonitorView._build` makes them."""

    latency_plot: pg.PlotItem
    histogram_plot: pg.PlotItem
    rate_plot: pg.PlotItem
    queue_plot: pg.PlotItem
    stage_plot: pg.PlotItem
    curves: dict[str, pg.PlotDataItem]
    slow_points: pg.ScatterPlotItem
    histogram_curve: pg.PlotDataItem
    stage_curves: list[pg.PlotDataItem]


class MonitorView(LivePlotsWidget):
    """The Monitor tab's live plots and panels; `MainWindow` holds it, `gui.app` feeds it."""

    sigOpenRequest = Signal(str)  # request ID of a clicked slow point

    def __init__(
        self,
        history: int = HISTORY,
        redraw_hz: float = 30.0,
        recent_seconds: int = 3700,
        clock: Callable[[], float] = time.time,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.history = history
        self.clock = clock
        self._redraw_hz = redraw_hz
        self._local: LocalPlots | None = None  # built on demand (`ensure_built`)
        self.t = Ring(history)  # clock time of each snapshot
        self.series: dict[str, Ring] = {name: Ring(history) for name in (*SERIES, *STAGES)}
        self.recent_ms = LatencyWindow(recent_seconds)  # ok requests' latencies by second
        self.slow: deque[tuple[float, float, str]] = deque(maxlen=SLOW_POINTS)
        # Snapshots carry time.monotonic(); the axis is the wall clock.
        self._wall_offset = clock() - time.monotonic()
        self._last_p99_ms = 0.0
        self._last_moved: tuple[int, int, int, int] | None = None
        self._idle_drawn_at = 0.0
        self._local_moved_at = float("-inf")
        self._hist_key: tuple[int, int, int] | None = None
        self._hist_ranges: tuple[tuple[float, float], tuple[float, float]] | None = None
        self._scope: str | None = None
        self._order: tuple[str, ...] = ()
        self.sections: list[Section] = []
        self._foreground = plot_colours(False).foreground
        self.axis = TimeAxis(clock=clock, parent=self)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addLayout(self._toolbar())
        # The plots, the targets' timeline and the load plots scroll together: squeezed into
        # one window height they became unreadable slivers. The wheel over a plot scrolls this
        # page (`time_axis.WheelScrollsPage`); Ctrl+wheel zooms the time axis.
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        content = QWidget()
        self._page = QVBoxLayout(content)
        self._page.setContentsMargins(0, 0, 0, 0)
        self._page.addStretch(1)
        scroll.setWidget(content)
        outer.addWidget(scroll)
        self._scroll = scroll

        local = QWidget()
        layout = QGridLayout(local)
        layout.setContentsMargins(0, 0, 0, 0)
        self._grid = layout
        self.local_section = self._add_section("local", local)
        self.attach_time(self.axis)
        self.axis.sigCrosshair.connect(self._on_crosshair)
        self.axis.sigPausedChanged.connect(self._on_paused)
        self._arrange_timer = QTimer(self)
        self._arrange_timer.setInterval(ARRANGE_MS)
        self._arrange_timer.timeout.connect(self._tick)
        self._arrange_timer.start()
        self._arrange()
        self.set_dark(False)

    def _build(self) -> Iterator[None]:
        """The local engine's five plots, one a step (see `LivePlotsWidget.ensure_built`)."""
        layout = self._grid
        latency_plot = self._plot("Latency (ms); click a point to open its trace", layout, 0, 0)
        yield
        histogram_plot = self._plot(
            "Latency of the requests in the time range", layout, 0, 1, scrolling=False
        )
        # Plain ms labels, only as many as fit (pyqtgraph's own ran into each other).
        histogram_plot.setAxisItems({"bottom": LatencyAxis(orientation="bottom")})
        histogram_plot.setLogMode(x=True, y=False)  # the tail and the body both readable
        histogram_plot.setLabel("bottom", "ms")
        histogram_plot.setLabel("left", "requests")
        histogram_plot.setMouseEnabled(x=False, y=False)
        yield
        rate_plot = self._plot("Throughput and errors (/s)", layout, 1, 0)
        yield
        queue_plot = self._plot("Queue depth and in flight", layout, 1, 1)
        yield
        stage_plot = self._plot("Time per stage, stacked (ms)", layout, 2, 0, span=2)
        curves = {
            "p50": latency_plot.plot(pen="#6c8ebf", name="p50"),
            "p95": latency_plot.plot(pen="#d6b656", name="p95"),
            "p99": latency_plot.plot(pen="#b85450", name="p99"),
            "throughput": rate_plot.plot(pen="#82b366", name="ok/s"),
            "errors": rate_plot.plot(pen="#b85450", name="errors/s"),
            "queue": queue_plot.plot(pen="#d6b656", name="queue"),
            "in_flight": queue_plot.plot(pen="#6c8ebf", name="in flight"),
        }
        slow_points = pg.ScatterPlotItem(
            size=8, pen=pg.mkPen("#b85450"), brush=pg.mkBrush("#f8cecc"), name="slow requests"
        )
        slow_points.setToolTip("A slow request: click to open its trace")
        slow_points.sigClicked.connect(self._on_slow_clicked)
        latency_plot.addItem(slow_points)
        histogram_curve = histogram_plot.plot(
            stepMode="center", fillLevel=0, brush=pg.mkBrush("#6c8ebf80"), pen="#6c8ebf"
        )
        stage_curves = [
            stage_plot.plot(pen=pen, fillLevel=0, brush=pg.mkBrush(pen), name=name)
            for name, pen in zip(STAGES, STAGE_PENS, strict=True)
        ]
        # Each curve is the running total up to its stage and fills down to 0, so the lower
        # stages must be drawn over the higher ones for every band to show its own colour.
        for z, curve in enumerate(stage_curves):
            curve.setZValue(len(stage_curves) - z)
        self._local = LocalPlots(
            latency_plot,
            histogram_plot,
            rate_plot,
            queue_plot,
            stage_plot,
            curves,
            slow_points,
            histogram_curve,
            stage_curves,
        )
        self._take_turns(
            (
                self._draw_latency,
                self._draw_histogram,
                self._draw_rates,
                self._draw_queue,
                self._draw_stages,
            ),
            self._redraw_hz,
            (latency_plot, histogram_plot, rate_plot, queue_plot, stage_plot),
        )

    def local_plots(self) -> LocalPlots:
        """The local engine's plots, built now if they were not yet."""
        self.ensure_built()
        assert self._local is not None
        return self._local

    @property
    def latency_plot(self) -> pg.PlotItem:
        return self.local_plots().latency_plot

    @property
    def histogram_plot(self) -> pg.PlotItem:
        return self.local_plots().histogram_plot

    @property
    def rate_plot(self) -> pg.PlotItem:
        return self.local_plots().rate_plot

    @property
    def queue_plot(self) -> pg.PlotItem:
        return self.local_plots().queue_plot

    @property
    def stage_plot(self) -> pg.PlotItem:
        return self.local_plots().stage_plot

    @property
    def curves(self) -> dict[str, pg.PlotDataItem]:
        return self.local_plots().curves

    @property
    def slow_points(self) -> pg.ScatterPlotItem:
        return self.local_plots().slow_points

    @property
    def histogram_curve(self) -> pg.PlotDataItem:
        return self.local_plots().histogram_curve

    @property
    def stage_curves(self) -> list[pg.PlotDataItem]:
        return self.local_plots().stage_curves

    # -- layout ---------------------------------------------------------------------------------

    def _toolbar(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        self.follow_button = QPushButton("Pause")
        self.follow_button.setCheckable(True)
        self.follow_button.setToolTip(
            "Pause: the plots stop moving so points can be inspected and clicked; "
            "Follow live: back to the newest data. Panning or zooming a plot pauses too."
        )
        self.follow_button.toggled.connect(lambda on: self.axis.set_paused(on))
        self.range_box = QComboBox()
        for text, seconds in RANGES:
            self.range_box.addItem(text, seconds)
        self.range_box.setCurrentIndex([s for _, s in RANGES].index(self.axis.window_s))
        self.range_box.setToolTip("The time range every plot and the histogram show")
        self.range_box.activated.connect(
            lambda i: self.axis.set_window(float(self.range_box.itemData(i)))
        )
        self.readout_label = QLabel("Move the mouse over a plot to read its values")
        self.readout_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        hint = QLabel("Ctrl+wheel zooms time")
        hint.setEnabled(False)
        bar.addWidget(self.follow_button)
        bar.addWidget(self.range_box)
        bar.addWidget(self.readout_label, 1)
        bar.addWidget(hint)
        return bar

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

    def _add_section(self, role: str, body: QWidget) -> Section:
        section = Section(role, SECTION_TITLES.get(role, SECTION_TITLES["panel"]), body)
        self.sections.append(section)
        self._page.insertWidget(self._page.count() - 1, section)
        section.setVisible(role != "load")  # (the load's shows with its first run: `_arrange`)
        return section

    def add_panel(self, widget: QWidget) -> None:
        """A self-contained panel on the page, full width (the targets' status timeline, the
        load plots); its time plots join the shared clock axis (`attach_time`)."""
        role = str(getattr(widget, "monitor_role", "panel"))
        self._add_section(role, widget)
        attach = getattr(widget, "attach_time", None)
        if callable(attach):
            attach(self.axis)
        self._order = ()  # lay out again with the newcomer in its place
        self._arrange()

    def scroll_to_panels(self) -> None:
        """Show the panels below the plots (the targets' timeline, the load plots)."""
        bar = self._scroll.verticalScrollBar()
        bar.setValue(bar.maximum())

    def set_scope(self, name: str | None) -> None:
        """The side pane's choice: a remote target's plots (load, status timeline) first for a
        target name, the local engine's for None."""
        self._scope = name
        for section in self.sections:
            focus = getattr(section.body, "focus_target", None)
            if callable(focus):
                focus(name)
        self._arrange()
        self._scroll.verticalScrollBar().setValue(0)

    def order(self) -> list[str]:
        """The sections' roles top to bottom, the shown ones only."""
        found = []
        for i in range(self._page.count()):
            item = self._page.itemAt(i)
            widget = item.widget() if item is not None else None
            if isinstance(widget, Section) and not widget.isHidden():
                found.append(widget.role)
        return found

    def load_running(self) -> bool:
        return any(bool(getattr(s.body, "running", False)) for s in self.sections)

    def local_flat(self) -> bool:
        return self.clock() - self._local_moved_at > LOCAL_IDLE_S

    def _tick(self) -> None:
        self.axis.follow()
        self._arrange()

    def _arrange(self) -> None:
        """Sections in the order of what is active; only re-laid out when the order changes."""
        for section in self.sections:
            if section.role == "load":  # shown once a run has sent something
                section.setVisible(not section.body.isHidden() or section.collapsed)
        flat = self.local_flat()
        remote_first = (self.load_running() and flat) or self._scope is not None
        ranks = ("load", "targets", "panel", "local") if remote_first else ("local", "load")
        order = tuple(
            sorted(
                (s.role for s in self.sections),
                key=lambda r: ranks.index(r) if r in ranks else len(ranks),
            )
        )
        self.local_section.set_note("idle" if flat and self.t.count else "")
        if order == self._order:
            return
        self._order = order
        ordered = sorted(self.sections, key=lambda s: order.index(s.role))
        for section in ordered:
            self._page.removeWidget(section)
        for i, section in enumerate(ordered):
            self._page.insertWidget(i, section)
        # Idle local plots under a running load fold away; the user can open them again.
        self.local_section.set_collapsed(remote_first and flat and self.load_running())

    # -- data -----------------------------------------------------------------------------------

    def on_stats(self, snap: StatsSnapshot) -> None:
        self.t.push(snap.at + self._wall_offset)
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
        if snap.in_flight or snap.queue_depth:
            self._local_moved_at = self.clock()
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
        now = self.clock()
        self._local_moved_at = now
        if not ok:
            return
        latencies = np.fromiter((w.latency_us for w in ok), np.float64, len(ok)) / 1000
        self.recent_ms.add(now, latencies)
        slowest = max(ok, key=lambda w: w.latency_us)
        slowest_ms = slowest.latency_us / 1000
        if self._last_p99_ms > 0 and slowest_ms >= self._last_p99_ms:
            self.slow.append((now, slowest_ms, slowest.request_id))
        self._turns.data_moved()

    def _on_slow_clicked(self, _item: Any, points: Any, *_: Any) -> None:
        if len(points):
            self.sigOpenRequest.emit(str(points[0].data()))

    # -- the clock axis -------------------------------------------------------------------------

    def _on_paused(self, paused: bool) -> None:
        self.follow_button.blockSignals(True)
        self.follow_button.setChecked(paused)
        self.follow_button.blockSignals(False)
        self.follow_button.setText("Follow live" if paused else "Pause")
        self._turns.data_moved()  # the histogram's range is now the one on screen

    def _on_crosshair(self, x: float) -> None:
        self.readout_label.setText(self.axis.readout(x))

    def readout(self, x: float) -> str | None:
        i = sample_at(self.t.view(), x)
        if i is None:
            return None
        v = {name: float(ring.view()[i]) for name, ring in self.series.items()}
        return (
            f"p99 {v['p99']:.1f} ms, p50 {v['p50']:.1f} ms, {v['throughput']:.0f} ok/s, "
            f"{v['errors']:.1f} err/s, queue {v['queue']:.0f}, in flight {v['in_flight']:.0f}"
        )

    # -- drawing --------------------------------------------------------------------------------

    def _draw_series(self, plot: pg.PlotItem, names: tuple[str, ...]) -> None:
        t = self.t.view()
        visible = self._begin(plot, t)
        top = draw_curves(self.curves, self.series, t, names, visible)
        if plot is self.latency_plot and self.slow:
            if not self.axis.paused:  # paused, the points stay put and clickable
                xs, ys, ids = zip(*self.slow, strict=True)
                self.slow_points.setData(x=list(xs), y=list(ys), data=list(ids))
            # Fit to the points as drawn: paused, they may be older than the newest kept.
            drawn_x, drawn_y = self.slow_points.getData()
            left, right = self.axis.x_range()
            shown = [float(y) for x, y in zip(drawn_x, drawn_y, strict=True) if left <= x <= right]
            top = max(top, *shown) if shown else top
        self._fit_y(plot, t, top)

    def _draw_latency(self) -> None:
        self._draw_series(self.latency_plot, ("p50", "p95", "p99"))

    def _draw_histogram(self) -> None:
        left, right = self.axis.data_range(self.clock())
        key = (self.recent_ms.version, int(left), int(right))
        if key == self._hist_key:
            return
        self._hist_key = key
        counts = self.recent_ms.counts(left, right)
        filled = np.flatnonzero(counts)
        total = int(counts.sum())
        # (the count first: a narrow plot elides the title's end, `PlotTitles`)
        self.titles.set_title(
            self.histogram_plot, f"Latency of {total:,} requests in the time range"
        )
        if not len(filled):
            self.histogram_curve.setData([], [])
            return
        lo, hi = int(filled[0]), int(filled[-1]) + 1
        edges = EDGES_MS[lo : hi + 1]
        self.histogram_curve.setData(edges, counts[lo:hi])
        # A round top (`steady_top`): the counts grow with every tick, and a range that moved
        # each time re-made the axis, its ticks and the grid on every redraw.
        x_range = (float(np.log10(edges[0])), float(np.log10(edges[-1])))
        y_range = (0.0, steady_top(float(counts.max())))
        if (x_range, y_range) != self._hist_ranges:
            self._hist_ranges = (x_range, y_range)
            self.histogram_plot.setRange(xRange=x_range, yRange=y_range, padding=0.02)

    def _draw_rates(self) -> None:
        self._draw_series(self.rate_plot, ("throughput", "errors"))

    def _draw_queue(self) -> None:
        self._draw_series(self.queue_plot, ("queue", "in_flight"))

    def _draw_stages(self) -> None:
        t = self.t.view()
        visible = self._begin(self.stage_plot, t)
        shown_t = t[visible]
        stacked = np.zeros(len(shown_t))
        for stage, curve in zip(STAGES, self.stage_curves, strict=True):
            stacked = stacked + self.series[stage].view()[visible]
            curve.setData(shown_t, stacked)
        self._fit_y(self.stage_plot, t, float(stacked.max()) if len(stacked) else 0.0)

    def set_dark(self, dark: bool) -> None:
        self._foreground = plot_colours(dark).foreground
        super().set_dark(dark)

    def stop(self) -> None:
        super().stop()
        self._arrange_timer.stop()
