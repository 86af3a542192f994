"""The live pyqtgraph plots' common parts: their colours, how one is made, their sample rings.

pyqtgraph paints its own backgrounds, axes and titles and ignores the Qt palette, so every
plot takes its colours from `plot_colours` when the theme changes (`gui.shared.theme`). The
Monitor's plots and the load plots share a base (`LivePlotsWidget`): plots made alike, ranges
set with the data rather than auto-ranged (`plot_turns.fit_range`), a GridItem instead of the
axes' grid, and one stale plot redrawn per timer tick (`plot_turns.PlotTurns`). Samples wait
in float64 rings (`Ring`) until a plot's turn to redraw comes. Their time plots share the
Monitor's clock axis (`time_axis.TimeAxis`, `attach_time`): x belongs to it, y to the data.

Making a plot is dear (~30-50 ms each: a PlotWidget, its axes, menus and legend), and the window
holds a dozen that its first paint never shows (the Monitor's, the load's). So a plots widget is
made empty and builds its plots on demand (`ensure_built`): when it is first shown, when a caller
reads one of them, or one plot per event-loop turn once the window has painted
(`BuildInTurns`). Data that comes before waits in the rings and is drawn once they exist.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QGraphicsScene, QWidget

from gui.shared.plot_titles import PlotTitles
from gui.shared.plot_turns import PlotTurns, fit_range, on_screen, steady_top
from gui.shared.time_axis import TimeAxis


@dataclass(frozen=True, slots=True)
class PlotColours:
    """What a plot paints in one theme; `plot_colours` hands it to each view's `set_dark`."""

    background: str
    foreground: str  # axes, tick labels, titles, legend text
    grid: str


LIGHT = PlotColours(background="#ffffff", foreground="#3c3f44", grid="#e4e6ea")
DARK = PlotColours(background="#1e1f22", foreground="#b8bcc4", grid="#34363a")


def plot_colours(dark: bool) -> PlotColours:
    return DARK if dark else LIGHT


def paint_axes(plot: pg.PlotItem, foreground: str) -> None:
    """The plot's axes, tick labels and legend text in `foreground`."""
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(foreground)
        axis.setTextPen(foreground)
    legend = plot.legend
    if legend is not None:
        legend.setLabelTextColor(foreground)  # (for entries added later)
        # pyqtgraph only notes the colour on the entries there already; each is drawn again
        # here, or it keeps the colour it was made with (grey, on white or on near-black).
        for _sample, label in legend.items:
            label.setText(label.text, color=foreground)


class LivePlotsWidget(QWidget):
    """Base of `MonitorView`, `LoadPlots` and `LoadLiveChart`: plots made alike, on demand
    (`ensure_built`), redrawn in turns, themed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._widgets: list[pg.PlotWidget] = []
        self._plots: list[pg.PlotItem] = []
        self._grids: list[pg.GridItem] = []
        self._time_plots: list[pg.PlotItem] = []
        self.titles = PlotTitles(self)  # each elided to its plot's width (`plot_titles`)
        self._joined = 0  # how many of `_time_plots` are on `time_axis` (they join as built)
        self.time_axis: TimeAxis | None = None
        self._followed_at = 0.0  # time.monotonic() of the last redraw asked for by the clock
        self._turns = PlotTurns(())
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.redraw)
        self._dark = False
        self._steps: Iterator[None] | None = None  # the build under way, one plot a step
        self._built = False
        self._stopped = False

    # -- building on demand -----------------------------------------------------------------

    def _build(self) -> Iterator[None]:
        """Make the plots (`_new_plot`) and their curves, yielding after each plot (a point
        where the build may wait for another turn of the event loop); end with `_take_turns`.
        Subclasses lay them out in layouts made, empty, in their `__init__`."""
        return iter(())

    @property
    def built(self) -> bool:
        return self._built

    def build_step(self) -> bool:
        """Make the next plot; True once every plot exists."""
        if self._built:
            return True
        if self._steps is None:
            self._steps = self._build()
        try:
            next(self._steps)
        except StopIteration:
            self._finish_build()
            return True
        return False

    def ensure_built(self) -> None:
        """Make every plot not made yet, now (the widget is shown, or a caller wants them)."""
        while not self.build_step():
            pass

    def _finish_build(self) -> None:
        self._built = True
        self._steps = None
        if self.isVisible():  # added to a shown layout, Qt would show them a turn late
            for widget in self._widgets:
                widget.show()
        self._join_time()
        self.set_dark(self._dark)  # the theme chosen before the plots existed
        # Whatever came before the plots is in the rings: every plot draws it.
        self._turns.data_moved()
        if not self._stopped:
            self._timer.start()

    def showEvent(self, event: QShowEvent) -> None:
        # Shown before the background build reached it: build the rest now, before it paints.
        self.ensure_built()
        super().showEvent(event)

    def _new_plot(
        self,
        title: str,
        *,
        min_height: int,
        max_height: int | None = None,
        scrolling: bool = True,
    ) -> tuple[pg.PlotWidget, pg.PlotItem]:
        """A plot for the subclass to lay out, its range left to `fit_range`."""
        widget = pg.PlotWidget()
        # No spatial index over the plot's items: every range step moves all of them, and a
        # BSP tree re-made for a handful of items at each move costs more than it saves.
        widget.scene().setItemIndexMethod(QGraphicsScene.ItemIndexMethod.NoIndex)
        widget.setMinimumHeight(min_height)
        if max_height is not None:
            widget.setMaximumHeight(max_height)
        item = widget.getPlotItem()
        self.titles.add(widget, item, title)
        item.addLegend(offset=(5, 5))
        if scrolling:  # (clipping would cut a histogram's bins apart)
            item.setClipToView(True)
            # An hour of samples is far more points than pixels: draw each pixel's peaks.
            item.setDownsampling(auto=True, mode="peak")
            self._time_plots.append(item)
        item.disableAutoRange()  # ranges are set with the data (`plot_turns.fit_range`)
        # The axes' own grid (showGrid) made each plot ~10 ms slower to paint; a GridItem with
        # an opaque pen draws the same lines in well under 1 ms.
        grid = pg.GridItem(textPen=None)
        # Two levels of lines (about 10 and 1 across), not three: the finest level was ~100
        # nearly transparent lines an axis, most of the cost of re-making the grid each time a
        # range moves.
        grid.setTickSpacing(x=[None, None], y=[None, None])
        item.addItem(grid)
        self._widgets.append(widget)
        self._plots.append(item)
        self._grids.append(grid)
        return widget, item

    def attach_time(self, axis: TimeAxis) -> None:
        """Put the time plots on `axis` (the Monitor's clock axis), those built now and those
        built later; the others' wheel scrolls the page too."""
        self.time_axis = axis
        axis.add_readout(self.readout)
        axis.sigUserRange.connect(lambda: self._turns.data_moved())
        if self._built:
            self._join_time()
        self._turns.data_moved()

    def _join_time(self) -> None:
        axis = self.time_axis
        if axis is None:
            return
        for plot in self._time_plots[self._joined :]:
            axis.add(plot)
        self._joined = len(self._time_plots)
        for widget in self._widgets:
            widget.viewport().installEventFilter(axis.wheel)  # (installed twice: still once)

    def readout(self, x: float) -> str | None:
        """What the plots show at clock time `x`, for the crosshair's readout."""
        return None

    def _fit_y(self, plot: pg.PlotItem, t: np.ndarray, top: float) -> None:
        """The y range for the data; x belongs to the shared time axis once attached."""
        if self.time_axis is None:
            fit_range(plot, t, top)
        else:
            bottom_now, top_now = plot.getViewBox().viewRange()[1]
            wanted = steady_top(top)
            if (bottom_now, top_now) != (0.0, wanted):  # unchanged: axis and grid stay as drawn
                plot.setYRange(0.0, wanted, padding=0)

    def _begin(self, plot: pg.PlotItem, t: np.ndarray) -> slice:
        """A drawer's first step: the plot to the followed time range (before `setData`, so
        the curves are clipped once), and the samples to draw: those in that range and one
        either side. (An hour of samples handed to `setData` on each redraw cost more than the
        few hundred on screen; a pan while paused asks for a redraw: `attach_time`.)"""
        # ~5 samples a pixel (pyqtgraph's default) is 5 times the points to stroke for no
        # visible difference: a min and a max per two pixels (peak mode), one point a pixel.
        # A filled curve costs by its edges: a min and a max per four pixels (the stacked
        # stages with five minutes of history painted in ~7 ms instead of ~11).
        for item in plot.listDataItems():
            filled = item.opts.get("fillLevel") is not None
            item.opts["autoDownsampleFactor"] = 0.25 if filled else 0.5
        if self.time_axis is None or not len(t):
            return slice(0, len(t))
        self.time_axis.place(plot.getViewBox())
        left, right = self.time_axis.x_range()
        first = max(int(np.searchsorted(t, left)) - 1, 0)
        return slice(first, int(np.searchsorted(t, right, "right")) + 1)

    def _take_turns(
        self,
        drawers: Sequence[Callable[[], None]],
        redraw_hz: float,
        plots: Sequence[pg.PlotItem],
    ) -> None:
        """Redraw with `drawers`, one a tick, each at most `redraw_hz` times a second (the
        timer starts once the build is done); `plots[i]` is what `drawers[i]` draws, skipped
        while it is off screen."""
        self._turns = PlotTurns(drawers, [on_screen(plot) for plot in plots])
        # A tick per plot and `redraw_hz` period; spare ticks cost nothing (nothing is stale).
        self._timer.setInterval(max(int(1000 / redraw_hz / len(self._turns)), 1))

    def redraw(self) -> None:
        """Refresh the next plot that is behind the data (they take turns: `PlotTurns`)."""
        if self._built and self.isVisible():
            if self.time_axis is not None and not self.time_axis.paused:
                # Following the clock, the range moves without new data: redraw (and so move)
                # every plot at least once a second.
                now = time.monotonic()
                if now - self._followed_at >= 1.0:
                    self._followed_at = now
                    self._turns.data_moved()
            self._turns.draw_next()

    @property
    def redraws(self) -> int:
        """How often the least refreshed plot has been redrawn (0 before they are built)."""
        return self._turns.least_redrawn if len(self._turns) else 0

    def set_dark(self, dark: bool) -> None:
        """pyqtgraph paints its own background: follow the app's palette (plots built later
        take it when they are made)."""
        self._dark = dark
        colours = plot_colours(dark)
        for plot in self._plots:
            paint_axes(plot, colours.foreground)
        self.titles.set_colour(colours.foreground)
        for widget in self._widgets:
            widget.setBackground(colours.background)
        for grid in self._grids:
            grid.setPen(pg.mkPen(colours.grid))

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        self._stopped = True
        self._timer.stop()


class BuildInTurns(QObject):
    """Builds plots widgets one plot per turn of the event loop, once `start`ed (the app: at
    its window's first paint).

    The first paint then pays only for what it shows, and the plots exist before anyone opens
    their tab; between two plots the loop runs (input, paints, the asyncio tasks). A widget
    shown before its turn builds itself at once (`LivePlotsWidget.showEvent`).
    """

    def __init__(self, parent: QObject, widgets: Sequence[LivePlotsWidget]) -> None:
        super().__init__(parent)  # the window: it goes with it, and the widgets with it
        self.pending = list(widgets)
        self._step_timer = QTimer(self)
        self._step_timer.setInterval(0)  # a turn of the loop between two plots
        self._step_timer.timeout.connect(self._step)

    def start(self) -> None:
        if self.pending:
            self._step_timer.start()

    @property
    def done(self) -> bool:
        return not self.pending

    def _step(self) -> None:
        while self.pending and (self.pending[0].built or self.pending[0].stopped):
            self.pending.pop(0)
        if not self.pending:
            self._step_timer.stop()
            return
        self.pending[0].build_step()


class Ring:
    """A fixed-size ring of float64 samples, read oldest first; the live plots keep theirs in it."""

    def __init__(self, size: int) -> None:
        self.values = np.zeros(size)
        self.count = 0

    def push(self, value: float) -> None:
        self.values[self.count % len(self.values)] = value
        self.count += 1

    def extend(self, values: np.ndarray) -> None:
        """Push many at once (the newest `len(self.values)` survive)."""
        n = len(self.values)
        values = values[-n:]
        start = self.count % n
        first = min(len(values), n - start)
        self.values[start : start + first] = values[:first]
        self.values[: len(values) - first] = values[first:]
        self.count += len(values)

    def view(self) -> np.ndarray:
        n = len(self.values)
        if self.count <= n:
            return self.values[: self.count]
        start = self.count % n
        return np.concatenate((self.values[start:], self.values[:start]))


def draw_curves(
    curves: Mapping[str, pg.PlotDataItem],
    series: Mapping[str, Ring],
    t: np.ndarray,
    names: tuple[str, ...],
    visible: slice | None = None,
) -> float:
    """Give the named curves their rings' samples over `t`, only the `visible` ones (default
    all); the highest of them, for the y range."""
    shown = slice(None) if visible is None else visible
    top = 0.0
    for name in names:
        values = series[name].view()[shown]
        curves[name].setData(t[shown], values)
        # A series may have gaps (NaN: the server's figures before its first interval).
        finite = values[np.isfinite(values)]
        top = max(top, float(finite.max()) if len(finite) else 0.0)
    return top


def sample_at(t: np.ndarray, x: float, max_gap_s: float = 2.0) -> int | None:
    """The index of the sample nearest clock time `x`, if one lies within `max_gap_s`."""
    if not len(t):
        return None
    i = int(np.searchsorted(t, x))
    nearest = min((j for j in (i - 1, i) if 0 <= j < len(t)), key=lambda j: abs(t[j] - x))
    return nearest if abs(t[nearest] - x) <= max_gap_s else None
