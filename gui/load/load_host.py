"""Runs a load test from the desktop app: a `LoadRunner` on a thread and loop of its own, watched
by a timer on the GUI thread.

Sending, measuring and recording up to 1,000 requests a second would take most of a core; on
the qasync loop, which is the GUI thread, the window would stutter and the run would fall behind
its rate. So the whole run (the preflight, the runner's client, its schedule and its recorder,
and a `Database` of its own on the same SQLite file, closed at its end) goes on an
`engine.remote.load.threaded.LoopThread`. The GUI thread only reads what the run publishes: a
QTimer asks `LoadRunner.latest()` (an immutable snapshot, published by the run's loop every
`1/poll_hz` s) at most `poll_hz` times a second and emits it only when something moved; the
load panel's figures and the Monitor's load plots draw from those. Everything else crosses by
the loops' `call_soon_threadsafe`: stop() into the run, its start and its end back out.

Before any traffic the target's health is probed once (`engine.remote.load.preflight`): a
target that is down is refused with its reason, one that is up is told as such.

The run is stored like `inferdeck load`'s (kind "load", every request), and its summary gets
the UI loop lag measured while it ran (`ui_loop_lag_ms`), as a dropped-file run's does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson
from PySide6.QtCore import QObject, QTimer, Signal

from engine.cli.load_args import LoadRequest, LoadStartError
from engine.remote.load.threaded import LoopThread
from engine.remote.payloads import PayloadError, PayloadSource
from engine.remote.target_store import TargetError, TargetStore
from engine.tasks import TaskOwner
from gui.load.load_plots import LoadPlots
from gui.shared.loop_lag import LoopLagMonitor
from storage import Database, open_database
from storage.database import StorageError, is_live_database

if TYPE_CHECKING:
    from hdrh.histogram import HdrHistogram

    from engine.remote.load import LoadRunner, LoadSnapshot
    from engine.remote.load.preflight import Health
    from gui.load.load_panel import LoadPanel
    from gui.main_window import MainWindow


POLL_HZ = 20.0  # snapshots a second, at most (the plots redraw at ≤ 30 Hz)
TRACE_EVERY = 50  # client phases (connect, send, wait) for 1 request in 50, as the CLI does
LAG_WAIT_S = 5.0  # how long the run's end waits for the GUI thread to close its lag window


async def build_payloads(db: Database | None, request: LoadRequest) -> PayloadSource:
    choice = request.payload
    try:
        if choice.kind == "form":
            try:
                value: Any = orjson.loads(choice.text or "{}")
            except orjson.JSONDecodeError as exc:
                raise LoadStartError(f"the payload is not JSON: {exc}") from None
            if not isinstance(value, dict):
                raise LoadStartError("the payload must be a JSON object")
            return PayloadSource.single(value)
        if choice.kind == "file":
            if not choice.text:
                raise LoadStartError("choose a payload file")
            if is_live_database(choice.text):  # never opened: see storage.database
                raise LoadStartError(
                    f"{choice.text} is the database InferDeck has open, not a payload file"
                )
            return await asyncio.to_thread(PayloadSource.from_file, choice.text)
        if choice.kind == "history":
            if db is None or not request.target.model:
                raise LoadStartError("replaying history needs a model")
            return await PayloadSource.from_history(db, request.target.model)
    except PayloadError as exc:
        raise LoadStartError(str(exc)) from None
    return PayloadSource.model_example()


@dataclass(frozen=True)
class _Outcome:
    """How a run on the load thread ended: its stored summary and final figures, or why not."""

    summary: dict[str, Any] | None = None
    final: LoadSnapshot | None = None
    error: str | None = None


class LoadHost(QObject):
    """One load run at a time, on a thread of its own, its snapshots as signals; `attach_load`
    builds it."""

    sigStarted = Signal(str)  # the target is not down (its health, in words); traffic starts
    sigSnapshot = Signal(object)  # LoadSnapshot, at most `poll_hz` a second
    sigFinished = Signal(dict)  # the stored summary
    sigFailed = Signal(str)  # why the run could not start

    def __init__(
        self,
        db: Database | None,
        tasks: TaskOwner,
        lag: LoopLagMonitor | None = None,
        poll_hz: float = POLL_HZ,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.db = db
        self.tasks = tasks
        self.lag = lag
        # The run's runner once it sends (read here only through its thread-safe `latest()`).
        self.runner: LoadRunner | None = None
        self.task: asyncio.Task[dict[str, Any] | None] | None = None
        self.last_summary: dict[str, Any] | None = None
        self.last_error: str | None = None
        self.health: Health | None = None  # the last run's preflight
        self.load_thread: LoopThread[_Outcome] | None = None  # the run's thread, from its preflight
        self._stop_asked = False  # set here, read by the run's thread before it sends
        self._sending: LoadRunner | None = None  # set and read on the run's thread only
        self._last_key: tuple[int, int, int] | None = None
        interval_ms = max(int(1000 / poll_hz), 34)
        self._publish_s = interval_ms / 1000  # how often the run publishes what the timer reads
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._poll)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self, request: LoadRequest) -> bool:
        """Start a run unless one is going; False if one is."""
        if self.running:
            return False
        self.last_summary = None
        self.last_error = None
        self.health = None
        self.load_thread = None
        self._stop_asked = False
        self.task = self.tasks.spawn(self.run(request), "load-run")
        return True

    def stop(self) -> None:
        """End the run early; what was recorded stays (the runner stores it as it goes)."""
        self._stop_asked = True  # heard after the preflight, if the run has not begun yet
        if self.load_thread is not None:
            self.load_thread.call_soon(self._stop_sending)

    def _stop_sending(self) -> None:
        # On the run's loop, where its runner's events live.
        if self._sending is not None:
            self._sending.stop()

    async def aclose(self) -> None:
        """Stop a run and wait for its summary to be stored and its thread to end (before the
        database closes)."""
        self.stop()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        thread = self.load_thread
        if thread is not None:  # (the task may have been cancelled while the run went on)
            await asyncio.gather(asyncio.wrap_future(thread.future), return_exceptions=True)
            await asyncio.to_thread(thread.join)
        self._timer.stop()

    async def run(self, request: LoadRequest) -> dict[str, Any] | None:
        """The run's summary, or None when it could not start (`sigFailed` says why)."""
        try:
            payloads = await build_payloads(self.db, request)  # (history reads this loop's db)
        except LoadStartError as exc:
            self._fail(str(exc))
            return None
        lag = self.lag
        window = lag.open_window() if lag is not None else None
        gui_loop = asyncio.get_running_loop()
        thread = LoopThread(lambda: self._run_off_loop(request, payloads, gui_loop, window))
        self.load_thread = thread
        try:
            outcome = await asyncio.wrap_future(thread.start())
        finally:
            self._timer.stop()
            self.runner = None
            if lag is not None and window is not None:
                lag.close_window(window)  # (done already if the run stored its summary)
        if outcome.error is not None or outcome.summary is None:
            self._fail(outcome.error or "the run ended without a summary")
            return None
        if outcome.final is not None:
            self._emit(outcome.final)  # the final figures, whatever the timer last saw
        self.last_summary = outcome.summary
        self.sigFinished.emit(outcome.summary)
        return outcome.summary

    async def _run_off_loop(
        self,
        request: LoadRequest,
        payloads: PayloadSource,
        gui_loop: asyncio.AbstractEventLoop,
        window: HdrHistogram | None,
    ) -> _Outcome:
        """The run itself, on its own thread and loop: nothing here touches a Qt object (the
        GUI side hears of it through `gui_loop.call_soon_threadsafe` and the outcome)."""
        # The runner's package (sender, schedule, recorder) is imported by the first run, not
        # with the window, whose first paint does not need it.
        from engine.remote.load import LoadError, LoadRunner
        from engine.remote.load.preflight import check_health

        # One round of the target's health probes before any traffic: a target that is down is
        # refused, with why, instead of a run of refused requests. It goes on while the store
        # opens and the runner prepares, so it adds no wait of its own.
        probing = asyncio.ensure_future(check_health(request.target, request.token))
        # The app's Database belongs to the GUI loop (its aiosqlite connections answer there):
        # the run opens its own on the same file (WAL), meanwhile too, closed (flushed) below.
        opening = asyncio.ensure_future(_open_store(self.db))
        db: Database | None = None
        try:
            runner = LoadRunner(
                request.target,
                request.plan,
                payloads,
                db=None,  # (given below, once open)
                token=request.token,
                trace_every=TRACE_EVERY,
                summary_extra=lambda: self._lag_extra(gui_loop, window),
                publish_every_s=self._publish_s,
            )
            health, checked, opened = await asyncio.gather(
                probing, runner.check(), opening, return_exceptions=True
            )
            if isinstance(opened, BaseException):
                if not isinstance(checked, BaseException):
                    await runner.aclose()  # (a failed check closed its client itself)
                if isinstance(opened, StorageError):
                    return _Outcome(error=str(opened))
                raise opened  # (a failure that is not the store's: a bug)
            if opened is not None:
                db = opened
                runner.store_in(db)
            if isinstance(health, BaseException):
                raise health  # (the probe judges every failure itself: this is a bug)
            self.health = health
            if health.down or isinstance(checked, BaseException):
                if not isinstance(checked, LoadError):
                    await runner.aclose()  # (a failed check closed its client itself)
                    if checked is not None and not health.down:
                        raise checked
                return _Outcome(error=health.text() if health.down else str(checked))
            if self._stop_asked:
                await runner.aclose()
                return _Outcome(error="stopped before it began")
            # From here a stop() reaches the runner (no await between the check and this).
            self._sending = runner
            gui_loop.call_soon_threadsafe(self._on_started, runner, health.text())
            try:
                result = await runner.run()
            except Exception as exc:  # the runner stores what it recorded before it gave up
                return _Outcome(error=f"the run ended with an error: {exc}")
            finally:
                self._sending = None
            return _Outcome(result.summary, runner.latest())
        finally:
            if db is not None:
                await db.close()  # every row handed to its writer is committed first

    async def _lag_extra(
        self, gui_loop: asyncio.AbstractEventLoop, window: HdrHistogram | None
    ) -> dict[str, Any]:
        """`ui_loop_lag_ms` over the run, from the GUI thread's monitor (on the run's loop)."""
        lag = self.lag
        if lag is None or window is None:
            return {}
        closed: concurrent.futures.Future[dict[str, float]] = concurrent.futures.Future()

        def close() -> None:  # on the GUI loop, which owns the monitor's histograms
            if closed.set_running_or_notify_cancel():
                closed.set_result(lag.close_window(window))

        try:
            gui_loop.call_soon_threadsafe(close)
            lag_ms = await asyncio.wait_for(asyncio.wrap_future(closed), LAG_WAIT_S)
        except (RuntimeError, TimeoutError):  # the GUI loop has closed, or no longer turns
            return {}
        return {"ui_loop_lag_ms": lag_ms}

    def _on_started(self, runner: LoadRunner, text: str) -> None:
        self.runner = runner
        self._last_key = None
        self._timer.start()
        self.sigStarted.emit(text)

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.sigFailed.emit(message)
        return None

    def _poll(self) -> None:
        runner = self.runner
        snap = runner.latest() if runner is not None else None
        if snap is None:
            return
        key = (snap.sent, snap.completed, snap.in_flight)
        if key == self._last_key:
            return  # nothing moved: no signal, no redraw
        self._last_key = key
        self.sigSnapshot.emit(snap)

    def _emit(self, snap: LoadSnapshot) -> None:
        self._last_key = (snap.sent, snap.completed, snap.in_flight)
        self.sigSnapshot.emit(snap)


async def _open_store(app_db: Database | None) -> Database | None:
    """The run's own Database on the app's file (None without one), on the running loop."""
    return None if app_db is None else await open_database(app_db.path)


# -- the window's side ------------------------------------------------------------------------


@dataclass
class LoadWiring:
    """What `attach_load` put into the window; `aclose()` before the database closes."""

    panel: LoadPanel
    plots: LoadPlots
    host: LoadHost
    store: TargetStore | None
    # The window's status-bar figure (`MainWindow.show_load_rate(per_s, p99_ms, running)`):
    # called with the live figures while a run goes, once with the stored ones at its end.
    show_rate: Callable[[float, float | None, bool], None] | None = None
    _rate_shown: bool = False  # a live figure is in the status bar (a run is sending)

    def start(self, request: LoadRequest) -> bool:
        """Start `request` from the panel or the command line; the token of a stored target is
        read from the store here, at start, never kept by the panel."""
        if request.token is None and self.store is not None:
            stored = self.panel.stored_target()
            if stored is not None and stored.target.name == request.target.name:
                request = replace(request, token=self.store.token(stored.target.name))
        if not self.host.start(request):
            self.panel.message.setText("A load run is going: stop it first")
            return False
        self.panel.on_preparing(request.target, request.plan)
        return True

    def connect(self) -> None:
        panel, host = self.panel, self.host
        panel.sigStart.connect(self.start)
        panel.sigStop.connect(host.stop)
        host.sigStarted.connect(panel.on_started)
        host.sigSnapshot.connect(panel.on_snapshot)
        host.sigSnapshot.connect(self.plots.on_snapshot)
        host.sigFinished.connect(panel.on_finished)
        host.sigFailed.connect(panel.on_failed)
        host.sigSnapshot.connect(self._live_rate)
        host.sigFinished.connect(self._final_rate)
        host.sigFailed.connect(self._no_rate)

    def _live_rate(self, snap: LoadSnapshot) -> None:
        if self.show_rate is not None and not snap.done:
            self._rate_shown = True
            self.show_rate(snap.throughput_per_s, snap.p99_ms, True)

    def _final_rate(self, summary: dict[str, Any]) -> None:
        self._rate_shown = False
        if self.show_rate is not None:
            p99 = (summary.get("latency_ms") or {}).get("p99")
            self.show_rate(float(summary.get("throughput_per_s", 0.0)), p99, False)

    def _no_rate(self, _message: str) -> None:
        # A run that ended in an error after sending: the bar must not say it still runs.
        if self.show_rate is not None and self._rate_shown:
            self._rate_shown = False
            self.show_rate(0.0, None, False)

    async def aclose(self) -> None:
        await self.host.aclose()
        self.plots.stop()


async def attach_load(
    window: MainWindow,
    db: Database,
    tasks: TaskOwner,
    lag: LoopLagMonitor | None,
    store: TargetStore | None = None,
    *,
    list_targets: bool = True,
) -> LoadWiring:
    """Add the Load tab and the Monitor's load plots to the window, wired to one `LoadHost`;
    the panel lists the store's targets (unless `list_targets` is False: the caller feeds it
    the list the Targets view reads, `LoadPanel.set_targets`, rather than read it twice)."""
    from gui.load.load_panel import LoadPanel  # (it imports this module)

    panel = LoadPanel()
    plots = LoadPlots()
    host = LoadHost(db, tasks, lag, parent=panel)
    wiring = LoadWiring(panel, plots, host, store, window.show_load_rate)
    wiring.connect()
    window.add_load_view(panel)
    window.monitor_view.add_panel(plots)
    if window.theme is not None:
        for themed in (plots, panel.chart):  # pyqtgraph ignores the palette: told each change
            window.theme.sigThemeChanged.connect(themed.set_dark)
            themed.set_dark(window.theme.dark)
    if store is not None and list_targets:
        try:
            panel.set_targets(await store.list_all())
        except TargetError as exc:
            panel.message.setText(str(exc))
    return wiring
