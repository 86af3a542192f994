"""The Load tab's own compact live chart: throughput and latency of the running load, side by
side, so the run can be watched where it was started (the Monitor has the full set).

Fed by the load host's throttled snapshots (≤ 20 a second) into ring buffers, redrawn in turns
like every live plot (`gui.shared.plots.LivePlotsWidget`); each run starts on an empty chart.
Its two plots are built on demand (when the Load tab is first shown, or in the turns after the
window's first paint), in the height kept for them from the start, so the form never moves;
they follow the theme as the Monitor's do (`set_dark`, wired by `attach_load`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QWidget

from gui.shared.plot_turns import fit_range
from gui.shared.plots import LivePlotsWidget, Ring, draw_curves

if TYPE_CHECKING:
    from engine.remote.load import LoadSnapshot

CHART_HEIGHT = 150  # px: room for the form above at 1024×700
SERIES = ("ok_s", "errors_s", "p50", "p99")


class LoadLiveChart(LivePlotsWidget):
    """Throughput (ok and errors a second) and latency (p50, p99) of the load now running."""

    def __init__(
        self, history: int = 1200, redraw_hz: float = 10.0, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._history = history
        self.t = Ring(history)
        self.series = {name: Ring(history) for name in SERIES}
        self._redraw_hz = redraw_hz
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        # The plots' height is the chart's from the start: built later, they move nothing.
        self.setMinimumHeight(CHART_HEIGHT - 30)
        self.setMaximumHeight(CHART_HEIGHT)
        self._parts: tuple[pg.PlotItem, pg.PlotItem, dict[str, pg.PlotDataItem]] | None = None
        self.set_dark(False)

    def _build(self) -> Iterator[None]:
        rate, rate_plot = self._new_plot(
            "Live throughput (/s)", min_height=CHART_HEIGHT - 30, max_height=CHART_HEIGHT
        )
        self._layout.addWidget(rate)
        yield
        latency, latency_plot = self._new_plot(
            "Live latency (ms)", min_height=CHART_HEIGHT - 30, max_height=CHART_HEIGHT
        )
        self._layout.addWidget(latency)
        curves = {
            "ok_s": rate_plot.plot(pen="#82b366", name="ok/s"),
            "errors_s": rate_plot.plot(pen="#b85450", name="errors/s"),
            "p50": latency_plot.plot(pen="#6c8ebf", name="p50"),
            "p99": latency_plot.plot(pen="#b85450", name="p99"),
        }
        self._parts = (rate_plot, latency_plot, curves)
        self._take_turns(
            (self._draw_rates, self._draw_latency), self._redraw_hz, (rate_plot, latency_plot)
        )

    def _built_parts(self) -> tuple[pg.PlotItem, pg.PlotItem, dict[str, pg.PlotDataItem]]:
        self.ensure_built()
        assert self._parts is not None
        return self._parts

    @property
    def rate_plot(self) -> pg.PlotItem:
        return self._built_parts()[0]

    @property
    def latency_plot(self) -> pg.PlotItem:
        return self._built_parts()[1]

    @property
    def curves(self) -> dict[str, pg.PlotDataItem]:
        return self._built_parts()[2]

    def reset(self) -> None:
        """A new run: start from an empty chart (its clock starts at 0 again)."""
        self.t = Ring(self._history)
        self.series = {name: Ring(self._history) for name in SERIES}
        if self.built:  # (not built yet: there is nothing drawn to clear)
            for curve in self.curves.values():
                curve.setData([], [])

    def on_snapshot(self, snap: LoadSnapshot) -> None:
        self.t.push(snap.elapsed_s)
        values = (snap.throughput_per_s, snap.errors_per_s, snap.p50_ms, snap.p99_ms)
        for name, value in zip(SERIES, values, strict=True):
            self.series[name].push(value)
        self._turns.data_moved()

    def _draw_rates(self) -> None:
        t = self.t.view()
        fit_range(self.rate_plot, t, draw_curves(self.curves, self.series, t, ("ok_s", "errors_s")))

    def _draw_latency(self) -> None:
        t = self.t.view()
        fit_range(self.latency_plot, t, draw_curves(self.curves, self.series, t, ("p50", "p99")))
