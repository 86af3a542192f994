"""How late the GUI event loop runs: a timer's drift, recorded in HDR histograms.

A QTimer asks to fire every `interval_ms`; the time beyond that between two firings is the lag a
user feels as stutter. The app shows it and stores it in run summaries (`ui_loop_lag_ms`): the
whole session's in the GUI run, and each file job's own window in its run.
"""

from __future__ import annotations

import time

from hdrh.histogram import HdrHistogram
from PySide6.QtCore import QObject, Qt, QTimer

from engine.stats import new_histogram, percentile_values, record_us


def summary_ms(histogram: HdrHistogram) -> dict[str, float]:
    """`ui_loop_lag_ms` as the `--json` contract names it: p50, p99, max."""
    if histogram.get_total_count() == 0:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    pct = percentile_values(histogram, [50, 99])
    return {
        "p50": pct[50] / 1000,
        "p99": pct[99] / 1000,
        "max": histogram.get_max_value() / 1000,
    }


class LoopLagMonitor(QObject):
    """The GUI loop's lag, whole session and per window; `gui.app` starts it, runs read windows."""

    def __init__(self, interval_ms: int = 10, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self.histogram = new_histogram()
        self._windows: list[HdrHistogram] = []
        self._last = 0
        self._timer = QTimer(self)
        # A coarse timer may fire up to 5 % early or late by design; a precise one measures
        # the loop, not Qt's timer slack.
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = time.perf_counter_ns()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def open_window(self) -> HdrHistogram:
        """A histogram that records from now until `close_window` (one run's own lag)."""
        window = new_histogram()
        self._windows.append(window)
        return window

    def close_window(self, window: HdrHistogram) -> dict[str, float]:
        if window in self._windows:
            self._windows.remove(window)
        return summary_ms(window)

    def _tick(self) -> None:
        now = time.perf_counter_ns()
        lag_us = max((now - self._last) // 1000 - self.interval_ms * 1000, 0)
        self._last = now
        record_us(self.histogram, lag_us)
        for window in self._windows:
            record_us(window, lag_us)

    def summary_ms(self) -> dict[str, float]:
        return summary_ms(self.histogram)
