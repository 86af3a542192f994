"""The Monitor view: ring buffers, throttled redraws, stacked stages, one clock axis shared by
every plot (crosshair, pause, time range), the sections' order and the wheel."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QImage, QPainter, QWheelEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from engine.remote.load import LoadSnapshot
from engine.stats import RunRecorder, StatsSnapshot
from engine.work import FutureSink, Work
from gui.load.load_plots import LoadPlots
from gui.monitor.monitor_view import MonitorView
from gui.shared.plot_turns import steady_top
from gui.shared.plots import BuildInTurns, Ring
from gui.shared.time_axis import STEPS_PER_WINDOW
from gui.targets.status_timeline import StatusTimeline
from storage.queries import ProbeRow


def _snap(at: float, p99: float) -> StatsSnapshot:
    return StatsSnapshot(
        at=at,
        throughput_per_s=100.0,
        errors_per_s=1.0,
        p50_ms=p99 / 3,
        p95_ms=p99 / 2,
        p99_ms=p99,
        queue_depth=5,
        in_flight=2,
        completed=10,
        errors=1,
        stage_ms={"queue_wait": 1.0, "inference": 2.0, "write": 0.5},
    )


def test_ring_keeps_the_newest_in_order() -> None:
    ring = Ring(4)
    for v in range(6):
        ring.push(float(v))
    assert ring.view().tolist() == [2.0, 3.0, 4.0, 5.0]


def test_monitor_plots_snapshots_with_bounded_redraws(qtbot: QtBot) -> None:
    view = MonitorView(history=100, redraw_hz=20)
    qtbot.addWidget(view)
    view.resize(1024, 2000)  # every plot on screen (one scrolled away is not redrawn)
    view.show()
    started = time.monotonic()
    for i in range(300):  # far more snapshots than the history and than redraws
        view.on_stats(_snap(started - 30 + i * 0.1, float(i)))
    # The plots take turns, one per tick: wait until the last of them (the stages) is drawn,
    # however slowly a busy machine delivers the ticks.
    qtbot.waitUntil(lambda: view.stage_curves[-1].getData()[1] is not None, timeout=10_000)
    elapsed = time.monotonic() - started
    x, y = view.curves["p99"].xData, view.curves["p99"].yData  # (getData: as drawn, thinned)
    assert x is not None and y is not None
    assert len(y) == 100 and y[-1] == 299.0  # the ring holds the newest 100
    assert np.all(np.diff(x) > 0)
    _, top = view.stage_curves[-1].getData()
    assert top is not None and top[-1] == 3.5  # stacked: 1 + 2 + 0.5 + 0 + 0
    assert 1 <= view.redraws <= 20 * elapsed + 1  # ≤ 20 Hz, never once per snapshot
    view.stop()


def _work(request_id: str, latency_ms: float, status: str = "ok") -> Work:
    return Work(
        request_id=request_id,
        run=RunRecorder("run", "test"),
        sink=FutureSink(),
        source="form",
        client_id="gui",
        model=None,
        features=None,
        priority=0,
        input_json=None,
        accepted_ns=0,
        created_us=0,
        spans=[],
        status=status,
        latency_us=int(latency_ms * 1000),
    )


def test_ring_extend_matches_pushes() -> None:
    pushed, extended = Ring(5), Ring(5)
    values = np.arange(13, dtype=np.float64)
    for v in values:
        pushed.push(float(v))
    extended.extend(values[:3])
    extended.extend(values[3:11])
    extended.extend(values[11:])
    assert extended.view().tolist() == pushed.view().tolist() == [8.0, 9.0, 10.0, 11.0, 12.0]


def test_histogram_and_slow_points_open_their_trace(qtbot: QtBot) -> None:
    view = MonitorView(history=100, redraw_hz=30)
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    view.on_stats(_snap(time.monotonic(), 10.0))  # p99 now 10 ms
    fast = [_work(f"fast-{i}", 2.0 + (i % 5) * 0.1) for i in range(200)]
    view.on_finished([*fast, _work("slow-one", 40.0), _work("bad", 90.0, status="failed")])
    view.on_finished([_work(f"ok-{i}", 3.0) for i in range(50)])  # none beyond p99: no point
    qtbot.waitUntil(lambda: view.redraws >= 1)
    edges, counts = view.histogram_curve.getData()
    assert edges is not None and counts is not None
    assert counts.sum() >= 250  # the failed request is not a latency sample
    assert [p.data() for p in view.slow_points.points()] == ["slow-one"]

    # Click the point where it is drawn, as a person would.
    qtbot.wait(100)  # let the view box fit its range to the data
    point = view.slow_points.points()[0]
    widget = view._widgets[0]
    scene_pos = view.latency_plot.getViewBox().mapViewToScene(point.pos())
    where = widget.mapFromScene(scene_pos)
    with qtbot.waitSignal(view.sigOpenRequest, timeout=2000) as opened:
        qtbot.mouseClick(widget.viewport(), Qt.MouseButton.LeftButton, pos=where)  # type: ignore[no-untyped-call]
    assert opened.args == ["slow-one"]
    view.stop()


# -- one clock axis, crosshair, pause, range, order, wheel ---------------------------------------


class FakeClock:
    """Wall-clock time the test moves; snapshots carry the matching `time.monotonic()`."""

    def __init__(self) -> None:
        self.now = time.time()
        self._mono_offset = time.monotonic() - self.now

    def __call__(self) -> float:
        return self.now

    def mono(self, wall: float) -> float:
        return wall + self._mono_offset


def _load_snap(elapsed_s: float, ok_s: float, done: bool = False) -> LoadSnapshot:
    return LoadSnapshot(
        elapsed_s=elapsed_s,
        sent=int(elapsed_s * ok_s),
        in_flight=3,
        completed=int(elapsed_s * ok_s),
        ok=int(elapsed_s * ok_s),
        failed=0,
        errors={},
        throughput_per_s=ok_s,
        errors_per_s=0.0,
        p50_ms=2.0,
        p99_ms=9.0,
        stage_ms={},
        done=done,
    )


def _timeline_with(name: str, at: float) -> StatusTimeline:
    timeline = StatusTimeline()
    rows = [
        ProbeRow(name, int((at - 60 + i * 5) * 1e6), "live", 200, True, 1500, None, "up")
        for i in range(12)
    ]
    timeline.set_stored(name, rows)
    return timeline


def _monitor(qtbot: QtBot, clock: FakeClock | None = None) -> MonitorView:
    view = MonitorView(redraw_hz=30, clock=clock or time.time)
    qtbot.addWidget(view)
    view.resize(1024, 700)
    view.show()
    return view


def _x(plot: pg.PlotItem) -> tuple[float, float]:
    left, right = plot.getViewBox().viewRange()[0]
    return float(left), float(right)


def test_every_plot_is_on_one_linked_clock_axis(qtbot: QtBot) -> None:
    clock = FakeClock()  # (building the plots takes seconds on a busy machine: time stands)
    view = _monitor(qtbot, clock)
    load = LoadPlots(redraw_hz=30)
    view.add_panel(load)
    timeline = _timeline_with("edge", clock.now)
    view.add_panel(timeline)
    lane = timeline.lanes["edge"]
    plots = [
        view.latency_plot,
        view.rate_plot,
        view.queue_plot,
        view.stage_plot,
        load.rate_plot,
        load.latency_plot,
        load.error_plot,
        load.in_flight_plot,
        lane.plot,
    ]
    for plot in plots:
        assert isinstance(plot.getAxis("bottom"), pg.DateAxisItem)
    now = clock.now
    left, right = _x(view.latency_plot)
    assert right - 300 == left and now <= right < now + 300 / STEPS_PER_WINDOW  # the last 5 min
    # Zoom one plot (the load's): every other plot, the targets' lane included, follows.
    load.latency_plot.getViewBox().setXRange(now - 90, now - 30, padding=0)
    for plot in [*plots, lane.band]:
        got = _x(plot)
        assert abs(got[0] - (now - 90)) < 0.01 and abs(got[1] - (now - 30)) < 0.01, plot
    view.stop()
    load.stop()


def test_crosshair_readout_follows_the_mouse(qtbot: QtBot) -> None:
    view = _monitor(qtbot)
    now = time.time()
    for i in range(300):  # 30 s of snapshots; p99 = i
        view.on_stats(_snap(time.monotonic() - 30 + i * 0.1, float(i)))
    view.axis.set_window(60.0)
    qtbot.waitUntil(lambda: view.curves["p99"].getData()[0] is not None, timeout=10_000)
    widget = view._widgets[0]
    box = view.latency_plot.getViewBox()

    def move_to(clock_x: float) -> None:
        scene = box.mapViewToScene(QPointF(clock_x, 1.0))
        where = widget.mapFromScene(scene)
        qtbot.mouseMove(widget.viewport(), where)  # type: ignore[no-untyped-call]

    move_to(now - 25)  # ~ sample 50
    qtbot.waitUntil(lambda: "p99 " in view.readout_label.text(), timeout=5_000)
    first = view.readout_label.text()
    assert view.axis.crosshair_x is not None and abs(view.axis.crosshair_x - (now - 25)) < 1
    move_to(now - 5)  # ~ sample 250
    qtbot.waitUntil(lambda: view.readout_label.text() != first, timeout=5_000)
    p99_at = float(view.readout_label.text().split("p99 ")[1].split(" ms")[0])
    assert 240 <= p99_at <= 260
    for line in view.axis.lines.values():  # one line across every plot
        assert line.isVisible() and abs(line.value() - (now - 5)) < 1
    view.stop()


def test_pause_holds_the_range_and_slow_points_stay_clickable(qtbot: QtBot) -> None:
    clock = FakeClock()
    view = _monitor(qtbot, clock)
    view.axis.set_window(60.0)
    view.on_stats(_snap(clock.mono(clock.now), 10.0))  # p99 10 ms
    view.on_finished([_work("slow-old", 40.0), *(_work(f"f{i}", 2.0) for i in range(20))])
    qtbot.waitUntil(lambda: len(view.slow_points.points()) == 1, timeout=10_000)
    # The latency plot follows the clock on its own turn: pause once its range shows now
    # (the slow point), not while it still shows the range it had before.
    qtbot.waitUntil(
        lambda: _x(view.latency_plot)[0] <= clock.now <= _x(view.latency_plot)[1], timeout=10_000
    )
    view.follow_button.click()  # Pause
    assert view.axis.paused and view.follow_button.text() == "Follow live"
    held = _x(view.latency_plot)
    redraws = view.redraws
    for step in range(1, 351):  # two minutes on, and more slow requests than are kept
        clock.now += 0.35
        view.on_stats(_snap(clock.mono(clock.now), 10.0))
        view.on_finished([_work(f"slow-{step}", 50.0)])
    view._tick()  # what the arrange timer does: follow the clock (not while paused)
    qtbot.waitUntil(lambda: view.redraws > redraws, timeout=10_000)  # every plot drew it
    assert _x(view.latency_plot) == held  # new data arrived, the axis did not move
    assert "slow-old" not in [s[2] for s in view.slow]  # gone from the newest 300 ...
    assert [p.data() for p in view.slow_points.points()] == ["slow-old"]  # ... yet still drawn
    bottom, top = view.latency_plot.getViewBox().viewRange()[1]
    assert bottom <= 40.0 <= top  # ... and inside the plot's height, where it can be clicked

    point = view.slow_points.points()[0]
    widget = view._widgets[0]
    where = widget.mapFromScene(view.latency_plot.getViewBox().mapViewToScene(point.pos()))
    with qtbot.waitSignal(view.sigOpenRequest, timeout=2000) as opened:
        qtbot.mouseClick(widget.viewport(), Qt.MouseButton.LeftButton, pos=where)  # type: ignore[no-untyped-call]
    assert opened.args == ["slow-old"]

    view.follow_button.click()  # Follow live: the range jumps to now
    assert not view.axis.paused
    left, right = _x(view.latency_plot)
    assert right >= clock.now > left >= clock.now - 61
    view.stop()


def test_histogram_range_tops_at_a_round_count_and_stays_while_counts_grow(qtbot: QtBot) -> None:
    """The counts grow every tick; a y range that followed them re-made the axis and grid on
    every redraw. The top is a round number above the tallest bin, kept until it is outgrown."""
    clock = FakeClock()
    view = _monitor(qtbot, clock)

    def tallest() -> int:
        _, counts = view.histogram_curve.getData()
        return 0 if counts is None else int(counts.max())

    def top() -> float:
        return float(view.histogram_plot.getViewBox().viewRange()[1][1])

    view.on_finished([_work(f"a-{i}", 3.0) for i in range(430)])
    qtbot.waitUntil(lambda: tallest() == 430, timeout=10_000)
    first_top = top()
    assert 430 < first_top <= 520  # 430 * 1.08 rounded up to 500, plus the view's padding
    view.on_finished([_work(f"b-{i}", 3.0) for i in range(20)])
    qtbot.waitUntil(lambda: tallest() == 450, timeout=10_000)
    assert top() == first_top  # grown, still under the round top: the range stays
    view.on_finished([_work(f"c-{i}", 3.0) for i in range(300)])
    qtbot.waitUntil(lambda: tallest() == 750, timeout=10_000)
    assert 750 < top() <= 1020  # outgrown: the next round number (810 rounds up to 1,000)
    view.stop()


def test_histogram_counts_only_the_time_range(qtbot: QtBot) -> None:
    clock = FakeClock()
    view = _monitor(qtbot, clock)

    def total() -> int:
        _, counts = view.histogram_curve.getData()
        return 0 if counts is None else int(counts.sum())

    view.on_finished([_work(f"file-{i}", 3.0) for i in range(500)])  # a file job
    qtbot.waitUntil(lambda: total() == 500, timeout=10_000)
    clock.now += 600  # ten minutes later, a few form requests
    view.on_finished([_work(f"form-{i}", 5.0) for i in range(7)])
    qtbot.waitUntil(lambda: total() == 7, timeout=10_000)  # last 5 min: the job is gone
    assert "7 requests" in view.histogram_plot.titleLabel.text
    view.range_box.setCurrentIndex(2)  # Last 15 min
    view.range_box.activated.emit(2)
    view.on_stats(_snap(clock.mono(clock.now), 5.0))
    qtbot.waitUntil(lambda: total() == 507, timeout=10_000)
    view.stop()


def test_a_running_load_comes_first_and_the_scope_reorders(qtbot: QtBot) -> None:
    view = _monitor(qtbot)
    load = LoadPlots(redraw_hz=30)
    view.add_panel(load)
    view.add_panel(_timeline_with("edge", time.time()))
    assert view.order() == ["local", "targets"]  # no load yet: its plots are not shown
    # Start clicked, the target still being checked: the load's plots come first already, so
    # the re-layout is at the click, not in the traffic's first second. A run that is refused
    # gives the place back.
    load.on_preparing()
    view._arrange()  # (what the view's 250 ms timer does)
    assert load.running and view.order() == ["load", "targets", "local"]
    load.on_not_started("down")
    view._arrange()
    assert not load.running and view.order() == ["local", "load", "targets"]
    for i in range(5):
        load.on_snapshot(_load_snap(i * 0.25, 300.0))
    view._arrange()
    assert view.order() == ["load", "targets", "local"]
    assert view.local_section.collapsed  # the idle local engine folds away below
    assert "click to show" in view.local_section.header.text()
    load.on_snapshot(_load_snap(1.5, 300.0, done=True))
    view._arrange()
    assert view.order() == ["local", "load", "targets"]
    assert not view.local_section.collapsed
    view.set_scope("edge")
    assert view.order() == ["load", "targets", "local"]
    view.set_scope(None)
    assert view.order() == ["local", "load", "targets"]
    # A load while the local engine works too: the local plots keep their place, open.
    view.on_finished([_work("busy", 2.0)])
    load.on_snapshot(_load_snap(0.0, 300.0))
    view._arrange()
    assert load.running and view.order() == ["local", "load", "targets"]
    assert not view.local_section.collapsed
    view.stop()
    load.stop()


def test_wheel_over_a_plot_scrolls_the_page_and_ctrl_wheel_zooms(qtbot: QtBot) -> None:
    view = _monitor(qtbot)
    view.add_panel(_timeline_with("edge", time.time()))
    bar = view._scroll.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=5_000)  # 1024x700: the page scrolls
    widget = view._widgets[0]
    held = _x(view.latency_plot)

    def wheel(modifiers: Qt.KeyboardModifier) -> None:
        centre = QPointF(widget.viewport().rect().center())
        event = QWheelEvent(
            centre,
            QPointF(widget.viewport().mapToGlobal(centre.toPoint())),
            QPoint(0, 0),
            QPoint(0, -120),
            Qt.MouseButton.NoButton,
            modifiers,
            Qt.ScrollPhase.NoScrollPhase,
            False,
        )
        QApplication.sendEvent(widget.viewport(), event)

    wheel(Qt.KeyboardModifier.NoModifier)
    assert bar.value() > 0  # the page scrolled ...
    assert _x(view.latency_plot) == held  # ... and the plot did not zoom
    scrolled = bar.value()
    wheel(Qt.KeyboardModifier.ControlModifier)
    left, right = _x(view.latency_plot)
    assert right - left > held[1] - held[0]  # wheel down with Ctrl: zoomed out in time
    assert bar.value() == scrolled
    assert view.axis.paused  # the user took the axis: it stops following
    view.stop()


def test_the_targets_lanes_follow_the_clock_and_hold_while_paused(qtbot: QtBot) -> None:
    clock = FakeClock()
    view = _monitor(qtbot, clock)
    timeline = _timeline_with("edge", clock.now)
    view.add_panel(timeline)
    lane = timeline.lanes["edge"]
    clock.now += 120
    view._tick()  # one lane (its band and latency line) moves per tick
    left, right = view.axis.x_range()
    assert _x(lane.band) == _x(lane.plot) == (left, right) == (right - 300, right)
    assert clock.now <= right < clock.now + 300 / STEPS_PER_WINDOW  # now, to a step
    view.follow_button.click()  # Pause
    clock.now += 120
    view._tick()
    assert _x(lane.plot)[1] == right  # held where it was
    view.stop()


# -- plots built on demand, after the window's first paint ----------------------------------------


def test_plots_are_built_on_first_show_and_draw_what_came_before(qtbot: QtBot) -> None:
    """The window's first paint does not pay for the Monitor's plots: the view is made without
    them, keeps the snapshots and finished requests that come meanwhile, and draws them all
    once it is shown (or a caller reads a plot)."""
    view = MonitorView(history=100, redraw_hz=30)
    qtbot.addWidget(view)
    view.resize(1024, 700)
    started = time.monotonic()
    for i in range(50):
        view.on_stats(_snap(started - 5 + i * 0.1, float(i)))
    view.on_finished([_work("slow-early", 400.0)])
    assert not view.built and view.redraws == 0
    view.show()  # opened: built before it paints
    assert view.built
    qtbot.waitUntil(lambda: view.stage_curves[-1].getData()[1] is not None, timeout=10_000)
    y = view.curves["p99"].yData
    assert y is not None and len(y) == 50 and y[-1] == 49.0  # nothing was lost
    assert [p.data() for p in view.slow_points.points()] == ["slow-early"]
    assert view.latency_plot in view.axis.plots  # on the shared clock axis, once
    assert len(view.axis.plots) == len(set(view.axis.plots)) == 4
    view.stop()


def test_plots_are_built_one_per_loop_turn_in_the_background(qtbot: QtBot) -> None:
    owner = MonitorView(history=10)  # any QObject parent; its own plots are built on demand
    qtbot.addWidget(owner)
    monitor = MonitorView(history=100)
    load = LoadPlots()
    monitor.add_panel(load)
    qtbot.addWidget(monitor)
    monitor.set_dark(True)  # the theme chosen before the plots exist
    builds = BuildInTurns(owner, [monitor, load])
    assert not monitor.built and not load.built
    steps: list[int] = []
    builds._step_timer.timeout.connect(lambda: steps.append(len(monitor._plots)))
    builds.start()
    qtbot.waitUntil(lambda: builds.done, timeout=10_000)
    assert monitor.built and load.built
    assert steps[:5] == [1, 2, 3, 4, 5]  # one plot a turn: the loop runs in between
    assert monitor._widgets[0].backgroundBrush().color().lightness() < 80
    assert load.rate_plot in monitor.axis.plots  # the hosted panel's plots joined the axis
    for view in (owner, monitor):
        view.stop()


# -- ranges that stay put between steps (what keeps a followed plot cheap to paint) -----------


def test_following_moves_the_range_in_steps_not_on_every_redraw(qtbot: QtBot) -> None:
    """A shift of a fraction of a pixel re-made the time axis and the grid of every plot on
    every redraw; the range now moves once per step of the window (about a pixel)."""
    clock = FakeClock()
    step = 300 / STEPS_PER_WINDOW
    clock.now = (int(clock.now / step) + 1) * step + 0.001  # just past a step's edge
    view = _monitor(qtbot, clock)
    view.on_stats(_snap(clock.mono(clock.now), 10.0))
    qtbot.waitUntil(lambda: view.redraws >= 1, timeout=10_000)
    moves: list[tuple[float, float]] = []
    view.latency_plot.getViewBox().sigXRangeChanged.connect(lambda _v, r: moves.append(r))

    def redrawn_past(done: int) -> Callable[[], bool]:
        return lambda: view.redraws > done

    for _ in range(8):  # eight redraws of every plot within one step: new data, same range
        clock.now += step / 10
        view.on_stats(_snap(clock.mono(clock.now), 10.0 + clock.now % 1))  # p99 wobbles
        qtbot.waitUntil(redrawn_past(view.redraws), timeout=10_000)
    assert moves == []
    assert view.latency_plot.getViewBox().viewRange()[1] == [0.0, 12.0]  # steady: 10.x -> 12
    clock.now += step  # the next step: it moves, once
    view.on_stats(_snap(clock.mono(clock.now), 10.0))
    qtbot.waitUntil(lambda: len(moves) >= 1, timeout=10_000)
    assert _x(view.latency_plot) == view.axis.x_range()
    view.stop()


def test_a_steady_top_is_a_round_number_above_the_data() -> None:
    assert steady_top(10.0) == steady_top(10.9) == 12.0  # a wobble keeps the range
    assert steady_top(0.0) == 1.0 and steady_top(float("nan")) == 1.0
    assert steady_top(950.0) == 1200.0
    for top in (0.003, 0.7, 3.3, 41.0, 99.0, 12_345.0):
        assert top * 1.08 <= steady_top(top) <= top * 1.08 * 1.25


# -- read at 1024 px: tick labels, titles, the targets' lanes ------------------------------------

MONITOR_AT_1024 = (810, 640)  # the Monitor tab's size in a 1024×700 window, side pane open
MONITOR_AT_1440 = (1220, 820)


def _tick_labels(axis: pg.AxisItem) -> list[tuple[str, QRectF]]:
    """The labels the axis draws and where (the specs its paint uses)."""
    image = QImage(8, 8, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        _, _, texts = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [(text, rect) for rect, _flags, text in texts if text]


def _overlaps(labels: list[tuple[str, QRectF]]) -> list[tuple[str, str]]:
    return [
        (a, b) for i, (a, ra) in enumerate(labels) for b, rb in labels[i + 1 :] if ra.intersects(rb)
    ]


def test_the_latency_histograms_tick_labels_never_overlap(qtbot: QtBot) -> None:
    """Its log axis labelled every 2…9 of a decade as "3·10¹" and the labels ran into each
    other at 1024 px: now plain ms, as many as fit, apart, at either width."""
    for size in (MONITOR_AT_1024, MONITOR_AT_1440):
        view = MonitorView(history=100, redraw_hz=30)
        qtbot.addWidget(view)
        view.resize(*size)
        view.show()
        latencies = np.geomspace(15.0, 3500.0, 400)  # a body and a long tail
        view.on_finished([_work(f"r-{i}", ms) for i, ms in enumerate(latencies)])
        axis = view.histogram_plot.getAxis("bottom")

        def drawn(view: MonitorView = view, axis: pg.AxisItem = axis) -> bool:
            title = view.titles.title(view.histogram_plot)
            return "400 requests" in title and len(_tick_labels(axis)) >= 3

        qtbot.waitUntil(drawn, timeout=20_000)
        labels = _tick_labels(axis)
        assert not _overlaps(labels), (size, labels)
        texts = [text for text, _ in labels]
        assert all(text.replace(",", "").replace(".", "").isdigit() for text in texts), texts
        assert "100" in texts and "1,000" in texts, texts
        view.stop()


def test_at_1024_every_plot_title_fits_its_plot(qtbot: QtBot) -> None:
    """A title wider than its plot widened the plot past its widget (four load plots in a row,
    the histogram's long title): title and plot edge were cut off. Each title is now elided
    to its plot, whole in its tooltip, and every plot lies within its widget."""
    view = MonitorView(history=100, redraw_hz=30)
    qtbot.addWidget(view)
    load = LoadPlots(redraw_hz=30)
    view.add_panel(load)
    # 1024 px wide, tall enough that every plot is on screen (one scrolled away waits to draw)
    view.resize(MONITOR_AT_1024[0], 2000)
    view.show()
    load.on_snapshot(_load_snap(0.5, 300.0))  # a run: the load plots show
    view.on_finished([_work(f"r-{i}", 3.0) for i in range(12_345)])
    qtbot.waitUntil(lambda: "12,345" in view.titles.title(view.histogram_plot), timeout=20_000)
    qtbot.waitUntil(lambda: load.isVisible() and load.built, timeout=20_000)

    def cut() -> list[str]:
        found = []
        for owner in (view, load):
            for widget, plot in zip(owner._widgets, owner._plots, strict=True):
                title = plot.titleLabel.item.sceneBoundingRect()
                edge = float(widget.viewport().width())
                if (
                    title.left() < 0
                    or title.right() > edge
                    or plot.sceneBoundingRect().right() > edge + 1
                ):
                    found.append(owner.titles.title(plot))
        return found

    qtbot.waitUntil(lambda: not cut(), timeout=20_000)
    for owner in (view, load):
        for plot in owner._plots:
            shown, full = plot.titleLabel.text, owner.titles.title(plot)
            assert shown == full or (shown.endswith("…") and plot.titleLabel.toolTip() == full)
    assert "12,345 requests" in view.histogram_plot.titleLabel.text  # the count is never elided
    view.stop()


def test_the_targets_lanes_are_tall_enough_to_read(qtbot: QtBot) -> None:
    """Each target's latency line had a 20 px plot whose tick labels ran into each other."""
    clock = FakeClock()
    view = _monitor(qtbot, clock)
    view.resize(*MONITOR_AT_1024)
    timeline = StatusTimeline()
    for n, name in enumerate(("serve", "serve-oip", "staging")):
        rows = [
            ProbeRow(
                name,
                int((clock.now - 60 + i * 5) * 1e6),
                "live",
                200,
                True,
                (20 + 100 * n + (i % 4) * 40) * 1000,
                None,
                "up",
            )
            for i in range(12)
        ]
        timeline.set_stored(name, rows)
    view.add_panel(timeline)
    view.set_scope("serve")

    def heights() -> list[float]:
        return [lane.plot.getViewBox().height() for lane in timeline.lanes.values()]

    qtbot.waitUntil(lambda: min(heights()) >= 60, timeout=20_000)
    for lane in timeline.lanes.values():
        labels = _tick_labels(lane.plot.getAxis("left"))
        assert len(labels) >= 3 and not _overlaps(labels), (lane.name, labels)
    view.stop()


def test_a_plot_scrolled_out_of_sight_waits_and_draws_when_scrolled_back(qtbot: QtBot) -> None:
    """Plots no one sees take no share of the GUI thread: off screen a plot stays behind the
    data; scrolled into view it draws everything that came meanwhile."""
    view = _monitor(qtbot)
    view.resize(1024, 300)  # the stages plot is below the fold
    started = time.monotonic()
    for i in range(50):
        view.on_stats(_snap(started - 5 + i * 0.1, float(i)))
    latency = view.curves["p99"]
    qtbot.waitUntil(lambda: latency.yData is not None and latency.yData[-1] == 49.0, timeout=10_000)
    stages = view._widgets[-1]
    assert stages.viewport().visibleRegion().isEmpty()

    def drawn_up_to(last: float) -> Callable[[], bool]:
        return lambda: latency.yData is not None and latency.yData[-1] == last

    for i in range(50, 53):  # more data, more turns: the plots on screen redraw, not it
        view.on_stats(_snap(started - 5 + i * 0.1, float(i)))
        qtbot.waitUntil(drawn_up_to(float(i)))
    assert view.stage_curves[-1].yData is None
    view._scroll.ensureWidgetVisible(stages)
    qtbot.waitUntil(lambda: view.stage_curves[-1].yData is not None, timeout=10_000)
    top = view.stage_curves[-1].yData
    assert top is not None and len(top) == 53 and top[-1] == 3.5  # all of it: 1 + 2 + 0.5
    view.stop()
