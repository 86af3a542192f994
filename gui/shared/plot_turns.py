"""Plots that take turns redrawing, and ranges set with the data: what keeps live plots cheap.

Painting one pyqtgraph plot after new data costs ~2-3 ms (axes re-tick, paths rebuild); a
panel of four or five redrawn at once held the GUI loop for ~15 ms. So each tick redraws only
the next plot that is behind the data, and every plot still redraws `redraw_hz` times a
second. (Two per tick, measured, raised the loop's p99 lag from ~13 to ~18 ms for no visible
gain.) The Monitor's own plots and the load plots both run on this.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pyqtgraph as pg


class PlotTurns:
    """Round-robin redraws of the plots whose data moved; `LivePlotsWidget` owns one."""

    def __init__(
        self,
        drawers: Sequence[Callable[[], None]],
        shown: Sequence[Callable[[], bool]] | None = None,
    ) -> None:
        self._drawers = tuple(drawers)
        # Whether each drawer's plot is on screen: one scrolled out of the page (or in a hidden
        # section) stays behind the data and draws when it is back, so the plots no one sees
        # take no share of the GUI thread.
        self._shown = tuple(shown) if shown is not None else tuple(_always for _ in drawers)
        self.version = 0  # bumps with new data; a plot is stale until it draws it
        self._drawn = [0] * len(self._drawers)  # the data version each plot shows
        self.redraw_counts = [0] * len(self._drawers)
        self._next = 0

    def __len__(self) -> int:
        return len(self._drawers)

    def data_moved(self) -> None:
        self.version += 1

    def draw_next(self) -> None:
        """Redraw the next plot that is behind the data, if any."""
        n = len(self._drawers)
        for step in range(n):
            i = (self._next + step) % n
            if self._drawn[i] < self.version and self._shown[i]():
                self._drawn[i] = self.version
                self._drawers[i]()
                self.redraw_counts[i] += 1
                self._next = (i + 1) % n
                return

    @property
    def least_redrawn(self) -> int:
        """How often the least refreshed plot on screen has been redrawn (of them all when
        none is on screen)."""
        on_screen = [n for n, shown in zip(self.redraw_counts, self._shown, strict=True) if shown()]
        return min(on_screen or self.redraw_counts)


def _always() -> bool:
    return True


def on_screen(plot: pg.PlotItem) -> Callable[[], bool]:
    """Whether some of `plot`'s widget is visible now (not scrolled away, not hidden)."""

    def shown() -> bool:
        widget = plot.getViewWidget()  # (its viewport covers it: ask the viewport)
        return widget is None or not widget.viewport().visibleRegion().isEmpty()

    return shown


_NICE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def steady_top(top: float) -> float:
    """The top of a y range for data that reaches `top`: some headroom, rounded up to a
    round number, so a value that wobbles leaves the range (and so the axis, its ticks and
    the grid, which are re-made on every range change) as it is most frames."""
    wanted = top * 1.08
    if not wanted > 0.0 or not math.isfinite(wanted):
        return 1.0
    scale = 10.0 ** math.floor(math.log10(wanted))
    return next(m * scale for m in _NICE if m * scale >= wanted)


def fit_range(plot: pg.PlotItem, x: np.ndarray, top: float) -> None:
    """Set the view's range with the data. Left to auto-range, a plot finds its new range
    while painting and paints a second time: twice the cost of every frame."""
    if len(x) == 0:
        return
    right = max(float(x[-1]), float(x[0]) + 1.0)
    plot.setRange(xRange=(float(x[0]), right), yRange=(0.0, steady_top(top)), padding=0)
