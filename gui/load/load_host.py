"""Runs a load test from the desktop app: a `LoadProcess` (a child process of its own), watched
by a timer on the GUI thread.

Sending, measuring and recording up to 1,000 requests a second takes about a core of Python.
On the GUI thread the window would stutter and the run fall behind its rate; on a thread of the
app's own process it still shares the interpreter lock with the GUI thread (measured: 754 of
1,000 /s, UI lag p99 146 ms). So the whole run (the payloads, the target's health check, the
client, schedule and recorder, and a `Database` of its own on the same SQLite file) goes to a
child process, `engine.remote.load.process`, as `inferdeck load` would run it. The GUI thread
only reads what the child publishes: a QTimer asks `LoadProcess.latest()` (an immutable
snapshot) at most `poll_hz` times a second and emits it only when something moved; the load
panel's figures and the Monitor's load plots draw from those. The child's start and end come
back by the loop's `call_soon_threadsafe`; stop() goes to the child on its stdin.

The run is stored like `inferdeck load`'s (kind "load", every request), and its summary gets
the UI loop lag measured while its traffic went (`ui_loop_lag_ms`, from the first request to
the summary), as a dropped-file run's does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, Signal

from engine.cli.load_args import LoadRequest
from engine.remote.load.process import LoadOutcome, LoadProcess, LoadSpec
from engine.remote.target_store import TargetError, TargetStore
from engine.tasks import TaskOwner
from gui.load.load_plots import LoadPlots
from gui.shared.loop_lag import LoopLagMonitor
from storage import Database

if TYPE_CHECKING:
    from hdrh.histogram import HdrHistogram

    from engine.remote.load import LoadSnapshot
    from gui.load.load_panel import LoadPanel
    from gui.main_window import MainWindow


POLL_HZ = 20.0  # snapshots a second, at most (the plots redraw at ≤ 30 Hz)
TRACE_EVERY = 50  # client phases (connect, send, wait) for 1 request in 50, as the CLI does
LAG_WAIT_S = 4.0  # how long the run's end waits for the GUI thread to close its lag window
# How long closing waits for a stopped run's process: its requests' grace (1 s), the summary
# and the last rows stored take a few seconds; one that has not ended by then is killed.
STOP_WAIT_S = 30.0


class LoadHost(QObject):
    """One load run at a time, in a process of its own, its snapshots as signals;
    `attach_load` builds it."""

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
        # The run's process once it sends (read here only through its thread-safe `latest()`).
        self.runner: LoadProcess | None = None
        self.task: asyncio.Task[dict[str, Any] | None] | None = None
        self.last_summary: dict[str, Any] | None = None
        self.last_error: str | None = None
        self.process: LoadProcess | None = None  # the run's process, from its start
        self._lag_window: HdrHistogram | None = None  # the GUI loop's lag while traffic goes
        self._stop_asked = False  # stop() came: a process made from now on starts stopped
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
        self.process = None
        self._stop_asked = False
        self.task = self.tasks.spawn(self.run(request), "load-run")
        return True

    def stop(self) -> None:
        """End the run early; what was recorded stays (the child stores it as it goes). Before
        its process exists, the process is made stopped (the run does not begin)."""
        self._stop_asked = True
        if self.process is not None:
            self.process.stop()

    async def aclose(self) -> None:
        """Stop a run and wait for its summary to be stored and its process to end (before
        the database closes); a process that has not ended `STOP_WAIT_S` after the stop is
        killed, so quitting the app never waits on it for longer."""
        self.stop()
        if self.task is not None:
            await self._within_stop_wait(self.task)
        process = self.process
        if process is not None:  # (the task may have been cancelled while the run went on)
            await self._within_stop_wait(asyncio.wrap_future(process.future))
            await asyncio.to_thread(process.join)
        self._timer.stop()

    async def _within_stop_wait(self, ending: asyncio.Future[Any]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(ending), STOP_WAIT_S)
        except TimeoutError:
            if self.process is not None:
                self.process.kill()
        except Exception:  # the run's own failure: `run` says it
            pass
        await asyncio.gather(ending, return_exceptions=True)

    async def run(self, request: LoadRequest) -> dict[str, Any] | None:
        """The run's summary, or None when it could not start (`sigFailed` says why)."""
        gui_loop = asyncio.get_running_loop()
        spec = LoadSpec(
            request.target,
            request.plan,
            payload_kind=request.payload.kind,
            payload_text=request.payload.text,
            token=request.token,
            db_path=None if self.db is None else str(self.db.path),
            trace_every=TRACE_EVERY,
            publish_every_s=self._publish_s,
        )

        def started(text: str) -> None:  # on the process's reader thread
            with contextlib.suppress(RuntimeError):  # the app's loop has closed: nobody to tell
                gui_loop.call_soon_threadsafe(self._on_started, process, text)

        process = LoadProcess(
            spec,
            on_started=started,
            summary_extra=lambda: self._lag_extra(gui_loop),
        )
        self.process = process
        if self._stop_asked:  # stopped (or the window closed) before there was a process
            process.stop()
        try:
            outcome: LoadOutcome = await asyncio.wrap_future(process.start())
        finally:
            self._timer.stop()
            self.runner = None
            self._close_lag_window()  # (done already if the run stored its summary)
        if outcome.error is not None or outcome.summary is None:
            self._fail(outcome.error or "the run ended without a summary")
            return None
        if outcome.final is not None:
            self._emit(outcome.final)  # the final figures, whatever the timer last saw
        self.last_summary = outcome.summary
        self.sigFinished.emit(outcome.summary)
        return outcome.summary

    def _lag_extra(self, gui_loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
        """`ui_loop_lag_ms` over the run's traffic, from the GUI thread's monitor (called on
        the process's reader thread, as the child is about to store its summary)."""
        if self.lag is None:
            return {}
        closed: concurrent.futures.Future[dict[str, float] | None] = concurrent.futures.Future()

        def close() -> None:  # on the GUI loop, which owns the monitor's histograms
            if closed.set_running_or_notify_cancel():
                closed.set_result(self._close_lag_window())

        try:
            gui_loop.call_soon_threadsafe(close)
            lag_ms = closed.result(LAG_WAIT_S)
        except (RuntimeError, TimeoutError):  # the GUI loop has closed, or no longer turns
            closed.cancel()
            return {}
        return {} if lag_ms is None else {"ui_loop_lag_ms": lag_ms}

    def _close_lag_window(self) -> dict[str, float] | None:
        window, self._lag_window = self._lag_window, None
        if self.lag is None or window is None:
            return None
        return self.lag.close_window(window)

    def _on_started(self, process: LoadProcess, text: str) -> None:
        # The lag window is the traffic's: from the first request to the summary.
        if self.lag is not None and self._lag_window is None:
            self._lag_window = self.lag.open_window()
        self.runner = process
        self._last_key = None
        self._timer.start()
        self.sigStarted.emit(text)

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.sigFailed.emit(message)

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
        self.plots.on_preparing()
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
        host.sigFailed.connect(self.plots.on_not_started)
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
