"""The targets' status timeline: per target, a band of coloured state segments over time (up
green, degraded amber, down red) above a line of probe latency, as Uptime Kuma and Gatus draw it.

Self-contained: it is fed plain data, the probe rows stored by earlier sessions
(`set_stored`, from `engine.remote.prober.load_history`) and the probers' snapshots as they move
(`add_rounds`, throttled by `probe_host`), and knows nothing of the database or the probers.
Rounds are merged by their time, so a round both stored and still in a prober's memory counts
once. Each lane keeps at most `max_points` rounds (numpy arrays, redrawn with `setData`).

In the Monitor its lanes join the shared clock axis (`attach_time`: linked x, crosshair,
Follow/Pause): the range is then the axis's, not the lane's own `window_s`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from engine.remote.prober import ProbeRound, ProberSnapshot
from gui.shared.plots import paint_axes, plot_colours
from gui.shared.time_axis import TimeAxis
from storage.queries import ProbeRow

STATE_COLOURS = {"up": "#2e9e44", "degraded": "#e0a100", "down": "#d03b3b", "unknown": "#9aa0a6"}
# One target's lane: at 96 px its latency line had a 20 px plot whose tick labels ran into each
# other; the line now has room for three labelled ticks and readable ups and downs.
LANE_PX = 156  # band + latency plot of one target
BAND_PX = 44  # the state band, its title above it


@dataclass(frozen=True, slots=True)
class Point:
    """One probe round on a lane: when, its state and live latency; `_Lane` keeps them in order."""

    at_s: float  # wall clock, seconds since the epoch
    state: str
    latency_ms: float


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of one state on a lane's band; `segments` cuts them from a lane's points."""

    start_s: float
    end_s: float
    state: str

    @property
    def colour(self) -> str:
        return STATE_COLOURS.get(self.state, STATE_COLOURS["unknown"])


def points_from_rows(rows: list[ProbeRow]) -> list[Point]:
    """Stored probes (one row per kind) as rounds: the rows of a round share its time; its
    latency is the live probe's."""
    rounds: dict[int, tuple[str, float]] = {}
    for row in rows:
        state = row.state or "unknown"
        latency = row.latency_us / 1000
        if row.at_us not in rounds or row.kind == "live":
            rounds[row.at_us] = (state, latency)
    return [Point(at / 1e6, s, ms) for at, (s, ms) in sorted(rounds.items())]


def points_from_rounds(rounds: tuple[ProbeRound, ...]) -> list[Point]:
    found = []
    for done in rounds:
        live = done.result("live")
        latency = (live or done.results[0]).latency_us / 1000 if done.results else 0.0
        found.append(Point(done.at_us / 1e6, done.state, latency))
    return found


def segments(points: list[Point], end_s: float | None = None) -> list[Segment]:
    """Runs of one state; each lasts until the next round that differs, the last one until
    `end_s` (or one more median gap past its last round)."""
    if not points:
        return []
    if end_s is None:
        gaps = np.diff([p.at_s for p in points])
        end_s = points[-1].at_s + (float(np.median(gaps)) if len(gaps) else 1.0)
    found: list[Segment] = []
    start, state = points[0].at_s, points[0].state
    for p in points[1:]:
        if p.state != state:
            found.append(Segment(start, p.at_s, state))
            start, state = p.at_s, p.state
    found.append(Segment(start, max(end_s, start), state))
    return found


class _Lane:
    """One target's band and latency plot; `StatusTimeline` keeps one per target."""

    def __init__(self, layout: pg.GraphicsLayout, row: int, name: str) -> None:
        self.name = name
        self.points: dict[float, Point] = {}
        self.band = layout.addPlot(row=row, col=0)
        # A left axis without labels, as wide as the plots' (`time_axis.LEFT_AXIS_PX`): the
        # band's times then sit right above the latency line's and the Monitor's plots'.
        self.band.getAxis("left").setStyle(showValues=False, tickLength=0)
        self.band.getAxis("left").setPen(pg.mkPen(None))  # (its line drew a stub under the band)
        self.band.hideAxis("bottom")
        self.band.setMouseEnabled(x=True, y=False)
        self.band.setMinimumHeight(BAND_PX)
        self.band.setMaximumHeight(BAND_PX)
        self.band.setTitle(name, size="9pt")
        self.band.setYRange(0, 1, padding=0)
        # (pyqtgraph 0.13 cannot build a bar item from empty lists: start with an invisible one)
        self.bars = pg.BarGraphItem(
            x0=[0.0], x1=[0.0], y0=[0.0], y1=[0.0], brushes=["#00000000"], pen=None
        )
        self.band.addItem(self.bars)
        self.plot = layout.addPlot(
            row=row + 1, col=0, axisItems={"bottom": pg.DateAxisItem(orientation="bottom")}
        )
        self.plot.setMinimumHeight(LANE_PX - BAND_PX)
        self.plot.setMaximumHeight(LANE_PX - BAND_PX)
        self.plot.setLabel("left", "ms")
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.setXLink(self.band)
        self.curve = self.plot.plot(pen=pg.mkPen("#6c8ebf", width=1.5))
        self.segments: list[Segment] = []

    def add(self, points: list[Point], keep: int) -> None:
        for p in points:
            self.points[round(p.at_s, 6)] = p
        if len(self.points) > keep:
            for at in sorted(self.points)[: len(self.points) - keep]:
                del self.points[at]

    def state_at(self, x: float) -> str | None:
        """The lane's state and nearest latency at clock time `x`, for the crosshair."""
        for seg in self.segments:
            if seg.start_s <= x <= seg.end_s:
                near = min(self.points.values(), key=lambda p: abs(p.at_s - x))
                return f"{self.name} {seg.state} {near.latency_ms:.1f} ms"
        return None

    def draw(self, window_s: float, own_x: bool = True) -> None:
        ordered = [self.points[at] for at in sorted(self.points)]
        self.segments = segs = segments(ordered)
        if not segs:
            return
        self.bars.setOpts(
            x0=np.array([s.start_s for s in segs]),
            x1=np.array([s.end_s for s in segs]),
            y0=np.zeros(len(segs)),
            y1=np.ones(len(segs)),
            brushes=[pg.mkBrush(s.colour) for s in segs],
        )
        x = np.fromiter((p.at_s for p in ordered), np.float64, len(ordered))
        y = np.fromiter((p.latency_ms for p in ordered), np.float64, len(ordered))
        self.curve.setData(x, y)
        right = segs[-1].end_s
        left = max(x[0], right - window_s)
        if own_x:  # (in the Monitor, x belongs to the shared clock axis)
            self.band.setXRange(left, right, padding=0.01)
        visible = y[x >= left]
        top = float(visible.max()) if len(visible) else 1.0
        self.plot.setYRange(0, top * 1.15 or 1.0, padding=0)
        state = ordered[-1].state
        self.band.setTitle(
            f"{self.name} — <span style='color:{STATE_COLOURS.get(state, '#9aa0a6')}'>"
            f"{state}</span> · {ordered[-1].latency_ms:.1f} ms",
            size="9pt",
        )

    def remove_from(self, layout: pg.GraphicsLayout) -> None:
        layout.removeItem(self.band)
        layout.removeItem(self.plot)


class StatusTimeline(QWidget):
    """Per target, state segments over probe latency; `attach_targets` adds it to the Monitor."""

    monitor_role = "targets"  # the Monitor's section for it (`MonitorView.add_panel`)

    def __init__(
        self, window_s: float = 3600.0, max_points: int = 2000, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.window_s = window_s
        self.max_points = max_points
        self.lanes: dict[str, _Lane] = {}
        self.redraws = 0
        self.time_axis: TimeAxis | None = None
        self.focus: str | None = None
        self.empty = QLabel("No remote targets yet: add one in the Targets view to see its health.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setToolTip("Probe states: green up, amber degraded, red down; line: latency")
        self.layout_item = self.graphics.ci
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.empty)
        layout.addWidget(self.graphics)
        self._resize()
        self.set_dark(False)

    def _lane(self, name: str) -> _Lane:
        lane = self.lanes.get(name)
        if lane is None:
            lane = _Lane(self.layout_item, 2 * len(self.lanes), name)
            self.lanes[name] = lane
            if self.time_axis is not None:
                self._join(lane, self.time_axis)
            self._style(lane)
            self._resize()
        return lane

    def _resize(self) -> None:
        count = len(self.lanes)
        self.empty.setVisible(count == 0)
        self.graphics.setVisible(count > 0)
        # The lanes' rows, the layout's spacing between them and its margins (the Monitor
        # scrolls): less, and pyqtgraph squeezed the latency plots below their minimum.
        grid = self.layout_item.layout
        _, top, _, bottom = grid.getContentsMargins()
        between = grid.verticalSpacing() * max(2 * count - 1, 0)
        self.setMinimumHeight(int(LANE_PX * max(count, 1) + between + top + bottom) + 8)

    def attach_time(self, axis: TimeAxis) -> None:
        """Put every lane on the Monitor's clock axis (linked x, crosshair), now and later."""
        self.time_axis = axis
        for lane in self.lanes.values():
            self._join(lane, axis)
            lane.draw(self.window_s, own_x=False)
        axis.add_readout(self.readout)

    @staticmethod
    def _join(lane: _Lane, axis: TimeAxis) -> None:
        # The axis keeps the band and the line on one time span; pyqtgraph's own link would
        # shift one against the other by the pixels their left edges differ.
        lane.plot.setXLink(None)
        axis.add(lane.band, date_axis=False, placed=False)
        axis.add(lane.plot, date_axis=False, placed=False)

    def readout(self, x: float) -> str | None:
        found = [text for lane in self.lanes.values() if (text := lane.state_at(x))]
        return ", ".join(found) or None

    def focus_target(self, name: str | None) -> None:
        """`name`'s lane first (the side pane's scope); None keeps the order."""
        self.focus = name
        if name in self.lanes and next(iter(self.lanes)) != name:
            order = [name, *(n for n in self.lanes if n != name)]
            self._relayout(order)

    def _draw(self, lane: _Lane) -> None:
        lane.draw(self.window_s, own_x=self.time_axis is None)

    def set_stored(self, name: str, rows: list[ProbeRow]) -> None:
        """What earlier sessions stored for `name` (older than anything probed now)."""
        lane = self._lane(name)
        lane.add(points_from_rows(rows), self.max_points)
        self._draw(lane)
        self.redraws += 1

    def add_rounds(self, snapshots: dict[str, ProberSnapshot]) -> None:
        """New rounds from the probers (only the targets that moved)."""
        for name, snap in snapshots.items():
            lane = self._lane(name)
            lane.add(points_from_rounds(snap.recent), self.max_points)
            self._draw(lane)
        if snapshots:
            self.redraws += 1

    def remove(self, name: str) -> None:
        lane = self.lanes.get(name)
        if lane is None:
            return
        self._relayout([n for n in self.lanes if n != name])

    def _relayout(self, order: list[str]) -> None:
        """Lanes sit in rows by position: lay out the ones in `order` again, in that order."""
        for lane in self.lanes.values():
            lane.remove_from(self.layout_item)
            if self.time_axis is not None:
                self.time_axis.discard(lane.band)
                self.time_axis.discard(lane.plot)
        kept, self.lanes = self.lanes, {}
        for other_name in order:
            fresh = self._lane(other_name)
            fresh.points = kept[other_name].points
            self._draw(fresh)
        self._resize()

    def segments(self, name: str) -> list[Segment]:
        lane = self.lanes.get(name)
        return [] if lane is None else list(lane.segments)

    def set_dark(self, dark: bool) -> None:
        self._dark = dark
        self.graphics.setBackground(plot_colours(dark).background)
        for lane in self.lanes.values():
            self._style(lane)

    def _style(self, lane: _Lane) -> None:
        foreground = plot_colours(self._dark).foreground
        paint_axes(lane.plot, foreground)
        lane.band.titleLabel.setText(lane.band.titleLabel.text, color=foreground)
