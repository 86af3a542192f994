"""Live plots of a load run for the Monitor view: throughput, latency p50/p99, errors by class,
requests in flight — drawn from the load host's snapshots — and, where the target offers them,
the server's own figures beside the client's (`engine.remote.server_stats`): its throughput on
the throughput plot, its queue and compute time per request on the latency plot, its pending
requests (its queue depth) beside the client's in-flight count; a line under the plots names the
sources, what is missing, and whether the two views agree (Little's law).

The same rules as the Monitor's own plots (`gui.monitor.monitor_view`): samples go into float64 ring
buffers as snapshots arrive (≤ 20 a second), and a timer redraws one stale plot per tick, so a
plot repaints at most `redraw_hz` times a second and the four never paint in the same tick; the
view range is set with the data (no auto-range second paint), and a GridItem replaces the axes'
slow grid. Errors are drawn per class, stacked, as rates: the difference of the snapshot's
running counts over the time between snapshots.

Time is the wall clock (a run's start plus its elapsed seconds), the Monitor's shared axis
(`attach_time`); `running` tells the Monitor to put these plots first while a run goes.

Hidden until a run sends its first snapshot, the plots are built on demand, not with the window
(`LivePlotsWidget.ensure_built`: in the turns after its first paint, or when first shown).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from engine.remote.load.server_view import server_status, server_values
from gui.shared.plots import LivePlotsWidget, Ring, draw_curves, sample_at

if TYPE_CHECKING:
    from engine.remote.load import LoadSnapshot

ERROR_PENS = ("#b85450", "#d79b00", "#9673a6", "#6c8ebf", "#56517e", "#a0522d")
OTHER = "other"  # classes beyond the pens' count are summed under this name
PLOT_HEIGHT = 170  # the same as the Monitor's own plots (it scrolls)
# Below this width the four plots go two by two: four in a row at 1024 px left each ~130 px
# of data and cut their titles.
FOUR_IN_A_ROW_PX = 1100
STALE_S = 5.0  # a run that sent no snapshot for this long is no longer running (it failed)
CLIENT_SERIES = ("ok_s", "errors_s", "p50", "p99", "in_flight")
# The server's own figures (NaN while it has none: the curves leave a gap).
SERVER_SERIES = ("server_s", "server_queue", "server_compute", "server_pending")
SERVER_PENS = {
    "server_s": "#9673a6",
    "server_queue": "#d6b656",
    "server_compute": "#82b366",
    "server_pending": "#d79b00",
}
SERVER_NAMES = {
    "server_s": "server/s",
    "server_queue": "server queue",
    "server_compute": "server compute",
    "server_pending": "server pending",
}


@dataclass(frozen=True, slots=True)
class _Plots:
    """The four plots and the fixed curves; `LoadPlots._build` makes them."""

    rate_plot: pg.PlotItem
    latency_plot: pg.PlotItem
    error_plot: pg.PlotItem
    in_flight_plot: pg.PlotItem
    curves: dict[str, pg.PlotDataItem]


class LoadPlots(LivePlotsWidget):
    """A load run's four live plots; `attach_load` puts them in the Monitor and feeds them."""

    monitor_role = "load"  # the Monitor's section for it (`MonitorView.add_panel`)

    def __init__(
        self, history: int = 36_000, redraw_hz: float = 15.0, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        # 36,000 samples: half an hour of a run at the host's <= 20 snapshots a second, so
        # the longer time ranges still show the whole of a run.
        self.t = Ring(history)
        self.series = {name: Ring(history) for name in (*CLIENT_SERIES, *SERVER_SERIES)}
        self.error_rates: dict[str, Ring] = {}  # class -> errors/s
        self._history = history
        self._prev: LoadSnapshot | None = None
        self._run_start = 0.0  # clock time of the run's elapsed 0
        self._last_at = float("-inf")  # time.monotonic() of the newest snapshot
        self._done = True
        self._preparing = False  # a run was started and has not sent its first snapshot yet
        self._redraw_hz = redraw_hz
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self._layout = QGridLayout()
        outer.addLayout(self._layout)
        # The server's sources, what is missing and whether its view agrees with the client's.
        self.server_label = QLabel("")
        self.server_label.setWordWrap(True)
        self.server_label.setVisible(False)
        outer.addWidget(self.server_label)
        self._columns = 4
        self._parts: _Plots | None = None  # built on demand (`ensure_built`)
        self.error_curves: dict[str, pg.PlotDataItem] = {}
        self.setVisible(False)
        self.set_dark(False)

    def _build(self) -> Iterator[None]:
        rate_plot = self._plot("Load: throughput (/s)")
        yield
        latency_plot = self._plot("Load: latency (ms)")
        yield
        error_plot = self._plot("Load: errors by class (/s)")
        yield
        in_flight_plot = self._plot("Load: in flight")
        curves = {
            "ok_s": rate_plot.plot(pen="#82b366", name="ok/s"),
            "errors_s": rate_plot.plot(pen="#b85450", name="errors/s"),
            "p50": latency_plot.plot(pen="#6c8ebf", name="p50"),
            "p99": latency_plot.plot(pen="#b85450", name="p99"),
            "in_flight": in_flight_plot.plot(pen="#6c8ebf", name="in flight"),
        }
        for name, plot in (
            ("server_s", rate_plot),
            ("server_queue", latency_plot),
            ("server_compute", latency_plot),
            ("server_pending", in_flight_plot),
        ):
            pen = pg.mkPen(SERVER_PENS[name], style=Qt.PenStyle.DashLine)
            curves[name] = plot.plot(pen=pen, name=SERVER_NAMES[name])
        self._parts = _Plots(rate_plot, latency_plot, error_plot, in_flight_plot, curves)
        self._take_turns(
            (self._draw_rates, self._draw_latency, self._draw_errors, self._draw_queue),
            self._redraw_hz,
            (rate_plot, latency_plot, error_plot, in_flight_plot),
        )

    def _plot(self, title: str) -> pg.PlotItem:
        widget, item = self._new_plot(title, min_height=PLOT_HEIGHT, max_height=PLOT_HEIGHT + 80)
        self._place(widget, len(self._widgets) - 1)
        return item

    def _place(self, widget: QWidget, i: int) -> None:
        self._layout.addWidget(widget, i // self._columns, i % self._columns)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        columns = 4 if event.size().width() >= FOUR_IN_A_ROW_PX else 2
        if columns != self._columns:
            self._columns = columns
            for i, widget in enumerate(self._widgets):
                self._layout.removeWidget(widget)
                self._place(widget, i)
            for column in range(4):  # (the columns a wider layout used stretch no more)
                self._layout.setColumnStretch(column, 1 if column < columns else 0)

    def _built_parts(self) -> _Plots:
        self.ensure_built()
        assert self._parts is not None
        return self._parts

    @property
    def rate_plot(self) -> pg.PlotItem:
        return self._built_parts().rate_plot

    @property
    def latency_plot(self) -> pg.PlotItem:
        return self._built_parts().latency_plot

    @property
    def error_plot(self) -> pg.PlotItem:
        return self._built_parts().error_plot

    @property
    def in_flight_plot(self) -> pg.PlotItem:
        return self._built_parts().in_flight_plot

    @property
    def curves(self) -> dict[str, pg.PlotDataItem]:
        return self._built_parts().curves

    # -- data -----------------------------------------------------------------------------------

    def on_preparing(self) -> None:
        """A run was started (its target is being checked): the Monitor puts these plots first
        now, so the re-layout that moves them comes at the Start click, not into the traffic."""
        self._preparing = True
        if self.isHidden():
            self.setVisible(True)

    def on_not_started(self, _why: str = "") -> None:
        """The run ended before it sent (refused or failed): the plots no longer claim the top."""
        self._preparing = False

    def on_snapshot(self, snap: LoadSnapshot) -> None:
        self._preparing = False
        prev = self._prev
        if prev is not None and snap.elapsed_s < prev.elapsed_s:
            prev = None  # a new run: its clock restarts at 0
        if prev is None:
            self._run_start = time.time() - snap.elapsed_s
        self._prev = snap
        self._last_at = time.monotonic()
        self._done = snap.done
        self.t.push(self._run_start + snap.elapsed_s)
        values = {
            "ok_s": snap.throughput_per_s,
            "errors_s": snap.errors_per_s,
            "p50": snap.p50_ms,
            "p99": snap.p99_ms,
            "in_flight": float(snap.in_flight),
            **server_values(snap.server),
        }
        for name, ring in self.series.items():
            ring.push(values[name])
        text = server_status(snap)
        if text != self.server_label.text():
            self.server_label.setText(text)
            self.server_label.setVisible(bool(text))
        self._push_error_rates(prev, snap)
        self._turns.data_moved()
        if self.isHidden():
            self.setVisible(True)

    def _push_error_rates(self, prev: LoadSnapshot | None, snap: LoadSnapshot) -> None:
        dt = snap.elapsed_s - prev.elapsed_s if prev is not None else 0.0
        grouped = self._grouped(snap.errors)
        before = self._grouped(prev.errors) if prev is not None else {}
        for name in grouped:
            if name not in self.error_rates:
                ring = Ring(self._history)
                # A class first seen now had no errors before: zeros keep the rings aligned.
                ring.extend(np.zeros(self.t.count - 1))
                self.error_rates[name] = ring
        for name, ring in self.error_rates.items():
            delta = grouped.get(name, 0) - before.get(name, 0)
            ring.push(delta / dt if dt > 0 else 0.0)

    def _grouped(self, errors: dict[str, int]) -> dict[str, int]:
        """Counts by class, the classes past the palette's size summed as `other`."""
        known = [n for n in self.error_rates if n != OTHER]
        out: dict[str, int] = {}
        for name, count in sorted(errors.items(), key=lambda kv: -kv[1]):
            if name in known or len(known) < len(ERROR_PENS) - 1:
                if name not in known:
                    known.append(name)
                out[name] = count
            else:
                out[OTHER] = out.get(OTHER, 0) + count
        return out

    @property
    def running(self) -> bool:
        """A run is starting or sending snapshots now (the Monitor shows these plots first)."""
        if self._preparing:
            return True
        return not self._done and time.monotonic() - self._last_at < STALE_S

    def readout(self, x: float) -> str | None:
        i = sample_at(self.t.view(), x)
        if i is None:
            return None
        v = {name: float(ring.view()[i]) for name, ring in self.series.items()}
        text = (
            f"load {v['ok_s']:.0f} ok/s, {v['errors_s']:.1f} err/s, p99 {v['p99']:.1f} ms, "
            f"in flight {v['in_flight']:.0f}"
        )
        if np.isfinite(v["server_s"]):
            text += f"; server {v['server_s']:.0f}/s"
            if np.isfinite(v["server_pending"]):
                text += f", pending {v['server_pending']:.0f}"
        return text

    # -- drawing --------------------------------------------------------------------------------

    def _draw(self, plot: pg.PlotItem, names: tuple[str, ...]) -> None:
        t = self.t.view()
        visible = self._begin(plot, t)
        self._fit_y(plot, t, draw_curves(self.curves, self.series, t, names, visible))

    def _draw_rates(self) -> None:
        self._draw(self.rate_plot, ("ok_s", "errors_s", "server_s"))

    def _draw_latency(self) -> None:
        self._draw(self.latency_plot, ("p50", "p99", "server_queue", "server_compute"))

    def _draw_queue(self) -> None:
        self._draw(self.in_flight_plot, ("in_flight", "server_pending"))

    def _draw_errors(self) -> None:
        t = self.t.view()
        visible = self._begin(self.error_plot, t)
        shown_t = t[visible]
        stacked = np.zeros(len(shown_t))
        for i, (name, ring) in enumerate(self.error_rates.items()):
            curve = self.error_curves.get(name)
            if curve is None:
                pen = ERROR_PENS[min(i, len(ERROR_PENS) - 1)]
                curve = self.error_plot.plot(
                    pen=pen, fillLevel=0, brush=pg.mkBrush(pen + "90"), name=name
                )
                # Running totals fill down to 0: the first class must lie on top.
                curve.setZValue(len(ERROR_PENS) - i)
                self.error_curves[name] = curve
            stacked = stacked + ring.view()[-len(t) :][visible] if len(t) else stacked
            curve.setData(shown_t, stacked)
        self._fit_y(self.error_plot, t, float(stacked.max()) if len(stacked) else 0.0)
