"""The latency histogram's log x-axis: plain millisecond labels, only as many as fit.

pyqtgraph's log axis labels every decade's 2…9 as "3·10¹", whatever the room: at 1024 px the
labels ran into each other. `LatencyAxis` labels the densest of 1-2-…-9, 1-2-5, 1-3 and 1 a
decade (then every other decade, …) whose labels, as wide as the font draws them, leave a gap
between neighbours; the other steps of the decade keep a tick without a label.
"""

from __future__ import annotations

import itertools
import math

import pyqtgraph as pg
from PySide6.QtGui import QFontMetricsF

# Per decade, densest first: the first whose labels fit is labelled.
STEPS = ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 5), (1, 3), (1,))
GAP_PX = 10  # between two neighbouring labels


def ms_text(ms: float) -> str:
    """A tick's label: 0.5, 2, 20, 200, 2,000 (the axis says ms)."""
    return f"{ms:,.0f}" if ms >= 1 else f"{ms:.3g}"


def _decade_values(lo: float, hi: float, steps: tuple[int, ...], every: int = 1) -> list[float]:
    """log10 of step·10^d for the decades d (every `every`-th) whose values lie in [lo, hi]."""
    found = []
    for decade in range(math.floor(lo), math.ceil(hi) + 1):
        if decade % every:
            continue
        for step in steps:
            value = decade + math.log10(step)
            if lo <= value <= hi:
                found.append(value)
    return found


class LatencyAxis(pg.AxisItem):  # type: ignore[misc]  # (pyqtgraph is untyped)
    """A bottom axis for a log-x plot of milliseconds (`MonitorView`'s histogram)."""

    def _fits(self, values: list[float], lo: float, hi: float, size: float) -> bool:
        metrics = QFontMetricsF(self.style["tickFont"] or self.font())
        scale = size / (hi - lo)
        placed = [((v - lo) * scale, metrics.horizontalAdvance(ms_text(10**v))) for v in values]
        return all(
            right_x - left_x >= (left_w + right_w) / 2 + GAP_PX
            for (left_x, left_w), (right_x, right_w) in itertools.pairwise(placed)
        )

    def labelled_values(self, lo: float, hi: float, size: float) -> list[float]:
        """The log10 values to label over [lo, hi] drawn `size` px long."""
        for steps in STEPS:
            values = _decade_values(lo, hi, steps)
            if self._fits(values, lo, hi, size):
                return values
        every = 2
        while True:  # one label every `every` decades; a single label always fits
            values = _decade_values(lo, hi, (1,), every)
            if len(values) <= 1 or self._fits(values, lo, hi, size):
                return values
            every *= 2

    def tickValues(
        self, minVal: float, maxVal: float, size: float
    ) -> list[tuple[float, list[float]]]:
        if not self.logMode:
            return list(super().tickValues(minVal, maxVal, size))
        lo, hi = sorted((float(minVal), float(maxVal)))
        if hi - lo <= 0 or size <= 0:
            return []
        labelled = self.labelled_values(lo, hi, size)
        others = [v for v in _decade_values(lo, hi, STEPS[0]) if v not in labelled]
        # (spacing is only passed back to `tickStrings`: 1 labels, 0 the unlabelled ticks)
        return [(1.0, labelled), (0.0, others)]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        if not self.logMode:
            return list(super().tickStrings(values, scale, spacing))
        if spacing == 0.0:
            return ["" for _ in values]
        return [ms_text(10**v) for v in values]
