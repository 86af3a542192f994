"""Finished requests' latencies by the second, so the histogram shows one time range and forgets
the rest (a file job ten minutes ago no longer shapes "the last 5 min").

Each second of clock time gets a row of counts over fixed log-spaced latency bins (30 a
decade, 10 µs to 1,000 s), as an HDR histogram keeps them: adding a batch is one
`np.bincount`, whatever the request rate, and the counts over any range of seconds are one
matrix-vector product over at most an hour of rows (~0.3 ms), with no per-request Python.
"""

from __future__ import annotations

import numpy as np

BINS_PER_DECADE = 30
LOW_MS, HIGH_MS = 0.01, 1_000_000.0
EDGES_MS = np.logspace(
    np.log10(LOW_MS), np.log10(HIGH_MS), int(np.log10(HIGH_MS / LOW_MS)) * BINS_PER_DECADE + 1
)


class LatencyWindow:
    """Per-second latency histograms for the newest `seconds` seconds; `MonitorView` owns one."""

    def __init__(self, seconds: int = 3700) -> None:
        self.rows = np.zeros((seconds, len(EDGES_MS) - 1))
        self.second_of_row = np.full(seconds, -1, dtype=np.int64)
        self.count = 0  # every latency ever added
        self.version = 0

    def add(self, at_s: float, latencies_ms: np.ndarray) -> None:
        """Latencies of requests that finished at clock time `at_s`."""
        if not len(latencies_ms):
            return
        second = int(at_s)
        row = second % len(self.rows)
        if self.second_of_row[row] != second:
            self.rows[row] = 0.0  # a second an hour old: its row is reused
            self.second_of_row[row] = second
        bins = np.clip(np.searchsorted(EDGES_MS, latencies_ms, "right") - 1, 0, len(EDGES_MS) - 2)
        self.rows[row] += np.bincount(bins, minlength=len(EDGES_MS) - 1)
        self.count += len(latencies_ms)
        self.version += 1

    def counts(self, left_s: float, right_s: float) -> np.ndarray:
        """Counts per bin of the requests that finished between the two clock times."""
        inside = (self.second_of_row >= int(left_s)) & (self.second_of_row <= int(right_s))
        result: np.ndarray = inside.astype(np.float64) @ self.rows
        return result

    def total(self, left_s: float, right_s: float) -> int:
        return int(self.counts(left_s, right_s).sum())
