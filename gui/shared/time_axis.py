"""One clock-time x-axis for every live plot: linked views, follow or pause, a range, a crosshair.

The Monitor's own plots, the load plots and the targets' status timeline all plot against wall
clock time (seconds since the epoch, drawn by `pg.DateAxisItem`) and are x-linked (`_on_x_changed`),
so a pan or zoom on any of them moves them all to the same time span, as Grafana's panels do.

Following live, each plot moves its own range to [now - window, now] when its turn to redraw
comes (`place`), in the paint its new data costs anyway: a range change pushed to every
linked plot at once would repaint them all in one tick (~2-3 ms each, ~30 ms for the page),
which is what the plots' turns exist to avoid (`plot_turns`). The plots' ranges so differ by
at most one turn (~1/30 s). A pan or zoom by the user is pushed to every plot at once, and
pauses following, as does the Pause button: the range then stays where it is, so points stay
under the mouse and can be clicked.

The crosshair is a vertical line in every registered plot; a mouse move over any of them moves
all the lines (coalesced to ~30 Hz) and emits the time under it for the readout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QAbstractScrollArea, QApplication

RANGES = (("Last 1 min", 60.0), ("Last 5 min", 300.0), ("Last 15 min", 900.0), ("Last 1 h", 3600.0))
DEFAULT_WINDOW_S = 300.0
STEPS_PER_WINDOW = 600  # the followed range moves in steps of about a pixel (see `x_range`)
FREE_PER_TICK = 2  # plots not redrawn in turns (a lane: band and line) moved per `follow`
LEFT_AXIS_PX = 52  # every time plot's left axis alike, so one time sits at one x in a column
CROSSHAIR_PEN = pg.mkPen("#9aa0a6", width=1, style=Qt.PenStyle.DashLine)

Readout = Callable[[float], "str | None"]


def clock_label(at_s: float) -> str:
    return datetime.fromtimestamp(at_s).strftime("%H:%M:%S")


class WheelScrollsPage(QObject):
    """Over a plot the wheel scrolls the page; with Ctrl held it zooms the plot's time axis.

    Installed on a plot's viewport. The event is handed to the nearest scroll area around the
    plot (the Monitor's page) rather than left to propagate: Qt propagates only the window
    system's own wheel events, and a plot in no scroll area should not zoom by accident."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() != QEvent.Type.Wheel:
            return False
        assert isinstance(event, QWheelEvent)
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            return False  # the plot zooms
        page = _page_around(watched)
        if page is not None:
            QApplication.sendEvent(page.viewport(), event)
        return True


def _page_around(viewport: QObject) -> QAbstractScrollArea | None:
    """The scroll area holding the plot whose viewport this is (not the plot's own view)."""
    view = viewport.parent()
    widget = view.parent() if view is not None else None
    while widget is not None:
        if isinstance(widget, QAbstractScrollArea):
            return widget
        widget = widget.parent()
    return None


class TimeAxis(QObject):
    """The shared clock-time range, its follow/pause state and the crosshair; `MonitorView`
    owns one and hands it to every panel it hosts (`attach_time`)."""

    sigPausedChanged = Signal(bool)
    sigCrosshair = Signal(float)  # the clock time under the mouse
    sigUserRange = Signal()  # the user panned or zoomed: the plots draw the new range

    def __init__(
        self,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.time,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.clock = clock
        self.window_s = window_s
        self.paused = False
        self.plots: list[pg.PlotItem] = []
        self.lines: dict[pg.PlotItem, pg.InfiniteLine] = {}
        self.readouts: list[Readout] = []
        self.crosshair_x: float | None = None
        self.wheel = WheelScrollsPage(self)
        self._master: pg.ViewBox | None = None
        self._views: list[pg.ViewBox] = []
        self._free: list[pg.ViewBox] = []  # moved by `follow`, not by their owner's redraws
        self._next_free = 0
        self._syncing = False
        self._scenes: set[int] = set()
        self._pending_x: float | None = None
        self._crosshair_timer = QTimer(self)
        self._crosshair_timer.setSingleShot(True)
        self._crosshair_timer.setInterval(33)
        self._crosshair_timer.timeout.connect(self._move_crosshair)

    # -- plots ----------------------------------------------------------------------------------

    def add(self, plot: pg.PlotItem, *, date_axis: bool = True, placed: bool = True) -> None:
        """Put `plot` on the shared clock axis: a date axis, x linked, x-only mouse, a crosshair.
        `placed`: its owner calls `place` when it redraws; otherwise `follow` moves it."""
        if date_axis:
            plot.setAxisItems({"bottom": pg.DateAxisItem(orientation="bottom")})
        plot.getAxis("left").setWidth(LEFT_AXIS_PX)
        plot.setMouseEnabled(x=True, y=False)
        # Its "auto-range" button would hand x back to pyqtgraph, away from the shared range.
        plot.hideButtons()
        view = plot.getViewBox()
        if self._master is None:
            self._master = view
        self._views.append(view)
        if not placed:
            self._free.append(view)
        self._set_x(view, *self.x_range())
        view.sigXRangeChanged.connect(self._on_x_changed)
        view.sigRangeChangedManually.connect(self._on_manual_range)
        line = pg.InfiniteLine(angle=90, movable=False, pen=CROSSHAIR_PEN)
        line.setZValue(100)  # over the filled curves (the stages' bands, the error classes)
        line.setVisible(self.crosshair_x is not None)
        if self.crosshair_x is not None:
            line.setValue(self.crosshair_x)
        plot.addItem(line, ignoreBounds=True)
        self.lines[plot] = line
        self.plots.append(plot)
        scene = plot.scene()
        if scene is not None and id(scene) not in self._scenes:
            self._scenes.add(id(scene))
            scene.sigMouseMoved.connect(lambda pos, s=scene: self._on_mouse(s, pos))
            for view_widget in scene.views():
                view_widget.viewport().installEventFilter(self.wheel)

    def discard(self, plot: pg.PlotItem) -> None:
        """`plot` is going away (a removed target's lane)."""
        if plot in self.lines:
            self.plots.remove(plot)
            del self.lines[plot]
            view = plot.getViewBox()
            self._views.remove(view)
            if view in self._free:
                self._free.remove(view)
            view.sigXRangeChanged.disconnect(self._on_x_changed)

    def add_readout(self, readout: Readout) -> None:
        """`readout(x)` says what its plots show at clock time x (None: nothing there)."""
        self.readouts.append(readout)

    # -- range ----------------------------------------------------------------------------------

    def _on_x_changed(self, view: pg.ViewBox, x: tuple[float, float]) -> None:
        """One view's time range moved by the user (a pan, a zoom): give every other view the
        same range. (pyqtgraph's own `setXLink` aligns views by their pixels, so
        plots side by side, or of different widths, would each show another time span.)"""
        if self._syncing:
            return
        self._syncing = True
        try:
            left, right = float(x[0]), float(x[1])
            for other in self._views:
                if other is not view:
                    other.setXRange(left, right, padding=0)
        finally:
            self._syncing = False
        self.sigUserRange.emit()

    def x_range(self) -> tuple[float, float]:
        """The clock range the plots show: the last `window_s` while following, else what the
        user left on screen."""
        if self.paused and self._master is not None:
            left, right = self._master.viewRange()[0]
            return float(left), float(right)
        # The right edge steps, a window's 1/STEPS_PER_WINDOW at a time (about a pixel), and
        # is just ahead of now: between steps a plot's range stays put, so its time axis and
        # grid are not re-made for a shift of a fraction of a pixel on every redraw.
        step = self.window_s / STEPS_PER_WINDOW
        right = math.ceil(self.clock() / step) * step
        return right - self.window_s, right

    def data_range(self, now: float | None = None) -> tuple[float, float]:
        """The range whose data the plots summarise (the histogram)."""
        return self.x_range()

    def place(self, view: pg.ViewBox) -> None:
        """Move `view` to the followed range; its owner calls this as it redraws (see above)."""
        if not self.paused:
            self._set_x(view, *self.x_range())

    def _set_x(self, view: pg.ViewBox, left: float, right: float) -> None:
        if view.viewRange()[0] == [left, right]:
            return  # already there: nothing to re-make or repaint
        self._syncing = True  # one view moved by us: not a change to push to the others
        try:
            view.setXRange(left, right, padding=0)
        finally:
            self._syncing = False

    def follow(self) -> None:
        """The owner's timer tick: move the plots that do not redraw in turns (the targets'
        lanes), one lane a tick, so a dozen lanes never repaint in one tick."""
        if self.paused or not self._free:
            return
        for _ in range(min(FREE_PER_TICK, len(self._free))):
            self._next_free %= len(self._free)
            self.place(self._free[self._next_free])
            self._next_free += 1

    def _apply_follow(self) -> None:
        """Every plot to the followed range at once (after a choice of the user's)."""
        left, right = self.x_range()
        for view in self._views:
            self._set_x(view, left, right)

    def set_window(self, window_s: float) -> None:
        """A new time range: follow live over it."""
        self.window_s = window_s
        self.set_paused(False)
        self._apply_follow()

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            self._apply_follow()
        self.sigPausedChanged.emit(paused)

    def _on_manual_range(self, *_: Any) -> None:
        self.set_paused(True)  # the user took the axis: stop moving it under them

    # -- crosshair ------------------------------------------------------------------------------

    def _on_mouse(self, scene: Any, pos: QPointF) -> None:
        for plot in self.plots:
            if plot.scene() is not scene:
                continue
            view = plot.getViewBox()
            if view.sceneBoundingRect().contains(pos):
                self.point_at(float(view.mapSceneToView(pos).x()))
                return

    def point_at(self, x: float) -> None:
        """Move the crosshair to clock time `x` (coalesced: at most ~30 moves a second)."""
        self._pending_x = x
        if not self._crosshair_timer.isActive():
            self._crosshair_timer.start()

    def _move_crosshair(self) -> None:
        x = self._pending_x
        if x is None:
            return
        self.crosshair_x = x
        for line in self.lines.values():
            line.setValue(x)
            line.setVisible(True)
        self.sigCrosshair.emit(x)

    def readout(self, x: float) -> str:
        parts = [clock_label(x)]
        for readout in self.readouts:
            text = readout(x)
            if text:
                parts.append(text)
        return "  ·  ".join(parts)
