"""The Load tab's own compact live chart: throughput and latency of the running load, side by
side, so the run can be watched where it was started (the Monitor has the full set).

Fed by the load host's throttled snapshots (≤ 20 a second) into ring buffers, redrawn in turns
like every live plot (`gui.shared.plots.LivePlotsWidget`); each run starts on an empty chart.
"""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QWidget

from engine.remote.load import LoadSnapshot
from gui.shared.plot_turns import fit_range
from gui.shared.plots import LivePlotsWidget, Ring, draw_curves

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
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        rate, self.rate_plot = self._new_plot(
            "Live throughput (/s)", min_height=CHART_HEIGHT - 30, max_height=CHART_HEIGHT
        )
        latency, self.latency_plot = self._new_plot(
            "Live latency (ms)", min_height=CHART_HEIGHT - 30, max_height=CHART_HEIGHT
        )
        layout.addWidget(rate)
        layout.addWidget(latency)
        self.curves = {
            "ok_s": self.rate_plot.plot(pen="#82b366", name="ok/s"),
            "errors_s": self.rate_plot.plot(pen="#b85450", name="errors/s"),
            "p50": self.latency_plot.plot(pen="#6c8ebf", name="p50"),
            "p99": self.latency_plot.plot(pen="#b85450", name="p99"),
        }
        self._take_turns((self._draw_rates, self._draw_latency), redraw_hz)
        self.set_dark(False)

    def reset(self) -> None:
        """A new run: start from an empty chart (its clock starts at 0 again)."""
        self.t = Ring(self._history)
        self.series = {name: Ring(self._history) for name in SERIES}
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
