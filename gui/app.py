"""`inferdeck` / `inferdeck gui`: the desktop app on a qasync loop.

The database opens first and every view over it is built before the window's first paint; the
models load and warm in the executor after it (a request made meanwhile waits in the engine's
queue, and the status bar says the models are loading). Closing the window drains the engine
and awaits the writer's last commit, and no traceback ever reaches the user:
an excepthook logs it and shows a short message instead.

The first paint pays only for what it shows (≤ 600 ms from `run_app`, bench/bench_gui.py):
the views' pyqtgraph plots (a dozen, ~30-50 ms each) are built one per loop turn after it
(`gui.shared.plots.BuildInTurns`; a tab opened sooner builds its own at once); the system
keyring, whose backend scan and test write take ~100-350 ms, is opened in a worker thread
while the window is built; the models' loading, the targets' probers and their stored history
start once the window has painted (`_first_paint`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.cli.load_args import LoadRequest
    from engine.pipeline import Engine
    from engine.remote.secrets import TokenStore
    from engine.tasks import TaskOwner
    from gui.main_window import MainWindow
    from gui.shared.bridge import EngineBridge
    from gui.shared.loop_lag import LoopLagMonitor

log = logging.getLogger(__name__)
FIRST_PAINT_S = 0.5
NO_PAINT_MS = 1000  # a window that never paints (started minimised) waits no longer than this

_HEADLESS_PLATFORMS = {"offscreen", "minimal", "vnc"}


def has_display() -> bool:
    if sys.platform != "linux":
        return True
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform.split(":")[0] in _HEADLESS_PLATFORMS:
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_gui(args: argparse.Namespace, db_path: Path) -> int:
    from engine.cli.load_args import LoadStartError, load_from_args

    try:
        load, autostart = load_from_args(args)
    except LoadStartError as exc:
        from engine.cli.common import printable  # the URL or file it names may hold controls

        print(printable(f"inferdeck: {exc}"), file=sys.stderr)
        return 2
    if not has_display():
        print(
            "inferdeck: no display found; use the command line (inferdeck --help) "
            "or run the app under Xvfb (xvfb-run -a inferdeck)",
            file=sys.stderr,
        )
        return 2
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("InferDeck")
    sys.excepthook = _excepthook
    outcome: tuple[dict[str, Any] | None, str | None] = (None, None)
    with contextlib.suppress(asyncio.CancelledError):
        outcome = qasync.run(run_app(db_path, args.autoquit, load=load, autostart=autostart))
    return _load_exit(outcome, args.json) if autostart else 0


def _load_exit(outcome: tuple[dict[str, Any] | None, str | None], as_json: bool) -> int:
    """`--autostart`'s end: the run's summary line and exit status, as `inferdeck load` gives."""
    from engine.cli.common import emit_json, printable

    summary, error = outcome
    if summary is None:
        print(printable(f"inferdeck: {error or 'the load run did not start'}"), file=sys.stderr)
        return 2
    if as_json:
        emit_json(summary)
    return 1 if summary["failed"] or summary["rejected"] else 0


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    # The traceback goes to the crash log (engine/logs.py); stderr gets one line.
    log.error("unexpected error: %s: %s", kind.__name__, exc, exc_info=(kind, exc, tb))
    from PySide6.QtWidgets import QApplication, QMessageBox

    window = QApplication.activeWindow()
    box = QMessageBox(QMessageBox.Icon.Warning, "InferDeck", f"Something went wrong: {exc}")
    if window is not None:
        box.setParent(window)
    box.open()  # never exec(): it would re-enter the qasync loop


async def run_app(
    db_path: Path,
    autoquit: float | None,
    on_ready: Callable[[MainWindow], Coroutine[Any, Any, None]] | None = None,
    load: LoadRequest | None = None,
    autostart: bool = False,
) -> tuple[dict[str, Any] | None, str | None]:
    """The desktop app's public entry point: runs it on the current (qasync) loop until its
    window closes; returns the `--autostart` run's (summary, error). `on_ready` drives the
    window once the models are ready (the screenshot tool, the GUI benchmark, end-to-end tests);
    the window itself, with every view and menu, is shown before they are."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from engine.models import ModelRegistry
    from engine.pipeline import EngineConfig
    from engine.startup import opened_engine
    from engine.tasks import TaskOwner
    from gui.main_window import MainWindow, settings
    from gui.shared.bridge import EngineBridge
    from gui.shared.loop_lag import LoopLagMonitor
    from gui.shared.qt_executor import QThreadPoolExecutor
    from gui.shared.theme import Theme

    # The keyring first, in a thread: its plugin scan (it runs `gcc` to look for macOS's
    # library, even on Linux) and test write overlap the window's build instead of delaying it.
    tokens = asyncio.get_running_loop().run_in_executor(None, _open_tokens)
    # The window is built from the manifests (read without torch) and shown once its views
    # over the database are in; torch and the models load in the executor after that.
    registry = ModelRegistry.discover()
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    theme = Theme(app, settings())
    theme.apply()
    window = MainWindow([registry.models[n] for n in registry.names()], db_path)
    window.use_theme(theme)
    lag = LoopLagMonitor()
    lag.start()
    bridge = EngineBridge()
    bridge.sigStats.connect(window.on_stats)
    recent_lag = lag.open_window()

    def show_recent_lag() -> None:
        nonlocal recent_lag
        window.show_lag(lag.close_window(recent_lag))
        recent_lag = lag.open_window()

    lag_timer = QTimer()
    lag_timer.timeout.connect(show_recent_lag)
    lag_timer.start(1000)

    closed = asyncio.get_running_loop().create_future()

    def request_close() -> None:
        if not closed.done():
            closed.set_result(None)

    window.sigCloseRequested.connect(request_close)

    def ready(engine: Engine) -> None:
        window.set_models_ready(engine.registry.names(), len(engine.registry.problems))
        if autoquit is not None:
            # Counted from here, not from launch: loading torch and the models takes seconds
            # more on a busy machine, and an --autostart run must get its S seconds.
            QTimer.singleShot(int(autoquit * 1000), window.close)

    try:
        async with opened_engine(
            db_path,
            registry,
            # Snapshots at 40 Hz (~0.6 ms each): every 30 Hz bridge tick has a fresh one.
            EngineConfig(publish_hz=40.0),
            QThreadPoolExecutor(max_workers=1),
            on_open=lambda db: db.guard.on_trip.append(window.show_database_failure),
            fast_thread_switch=False,
        ) as engine:
            try:
                return await _serve_window(
                    window,
                    engine,
                    bridge,
                    lag,
                    TaskOwner(),
                    closed,
                    on_ready,
                    load,
                    autostart,
                    ready,
                    tokens,
                )
            finally:
                lag.stop()
                bridge.stop()
                window.monitor_view.stop()
                lag_timer.stop()
    finally:
        window.finish_close()


def _open_tokens() -> TokenStore:
    """The system keyring if a usable one answers, else memory (`engine.remote.secrets`); made
    in a worker thread, then used on the loop's thread only."""
    from engine.remote.secrets import TokenStore

    return TokenStore()


def _first_paint(window: MainWindow) -> asyncio.Future[None]:
    """Done at `window`'s first paint (or after `NO_PAINT_MS`, for a window that is not painted:
    started minimised); the work that can wait for it starts then, not ahead of it."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    painted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Watch(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint:
                done()
            return False

    def done() -> None:
        window.removeEventFilter(watch)
        if not painted.done():
            painted.set_result(None)

    watch = Watch(window)
    window.installEventFilter(watch)
    QTimer.singleShot(NO_PAINT_MS, watch, done)
    return painted


async def _load_models(
    window: MainWindow, engine: Engine, painted: asyncio.Future[None] | None = None
) -> bool:
    """Load and warm the models after the first paint (torch's import in the executor holds
    the interpreter most of the time, and would slow the paint); False (and a plain sentence
    in the status bar) if that failed."""
    from engine.startup import start_engine

    if painted is not None:
        await painted
    try:
        await start_engine(engine)
    except Exception as exc:  # the window stays up for what is stored; it says why, once
        log.error("models did not load: %s", exc, exc_info=True)
        window.set_models_failed(f"models did not load: {exc}")
        return False
    return True


async def _serve_window(
    window: MainWindow,
    engine: Engine,
    bridge: EngineBridge,
    lag: LoopLagMonitor,
    tasks: TaskOwner,
    closed: asyncio.Future[None],
    on_ready: Callable[[MainWindow], Coroutine[Any, Any, None]] | None,
    load: LoadRequest | None = None,
    autostart: bool = False,
    ready: Callable[[Engine], None] | None = None,
    tokens: Awaitable[TokenStore] | None = None,
) -> tuple[dict[str, Any] | None, str | None]:
    """Wires the views to the opened engine, shows the window, loads the models, then waits
    for the window to close. `tokens`: the keyring being opened (`_open_tokens`)."""
    from engine.contracts import PredictRequest
    from engine.pipeline import Origin
    from engine.runs import begin_run, end_run
    from engine.work import FutureSink
    from gui.history.requests_table_model import RequestsTableModel
    from gui.history.requests_view import RequestsView
    from gui.load.load_host import attach_load
    from gui.models.models_host import attach_models
    from gui.predict.drop_runner import DropRunner
    from gui.runs.runs_view import RunsView
    from gui.shared.plots import BuildInTurns
    from gui.targets.targets_view import attach_targets
    from storage import queries
    from storage.database import DatabaseFilesChangedError
    from storage.queries import RequestFilter

    db = engine.db
    engine.subscribe(bridge.on_snapshot)
    engine.on_finished(bridge.on_finished)
    table = RequestsTableModel(db, tasks)
    requests_view = RequestsView(table, engine.registry.names())
    runs_view = RunsView(db, tasks)
    window.add_views(requests_view, runs_view)
    monitor = window.monitor_view
    bridge.sigFinished.connect(requests_view.add_live)
    bridge.sigFinished.connect(monitor.on_finished)
    bridge.sigStats.connect(monitor.on_stats)
    table.set_filter(RequestFilter())
    runs_view.refresh()
    run = await begin_run(db, "gui", {})
    origin = Origin(run, FutureSink(), "form", "gui")
    remote_targets = await attach_targets(
        window, db, tasks, run, None if tokens is None else await tokens, start=False
    )
    loads = await attach_load(window, db, tasks, lag, remote_targets.view.store, list_targets=False)
    remote_targets.view.sigTargetsChanged.connect(loads.panel.set_targets)
    models = attach_models(window, engine, tasks)
    # Listed once, before the first paint (the side pane, the Targets table, the Predict and
    # Load choices show them); probed from just after it.
    await remote_targets.list_targets()
    # The side pane's choice scopes every view that has one to that target (None: local).
    for scoped in (
        remote_targets.remote.use_target,
        requests_view.set_scope,
        monitor.set_scope,
        loads.panel.select_target,
    ):
        window.sigScopeChanged.connect(scoped)
    # History's target box starts at the scope the window starts in, not "every target".
    requests_view.set_scope(window.targets.scope)

    async def predict(model: str, payload: dict[str, object]) -> None:
        request = PredictRequest(client_id="gui", model=model, input_payload=payload)
        work = await engine.predict(request, origin, acknowledge=True)
        window.predict_view.show_result(work)

    async def open_request(request_id: str) -> None:
        row = await queries.get_request(db.reader, request_id)
        if row is None:
            window.statusBar().showMessage(f"request {request_id} is not stored yet", 4000)
            return
        window.open_trace(row)

    window.predict_view.sigPredict.connect(
        lambda model, payload: tasks.spawn(predict(model, payload), "form-predict")
    )
    # Run again: a request of its own (source "rerun") linked to the one it repeats, where that
    # one went (a remote target's, on that target); its answer opens in the Trace view, not in
    # the Predict form (whose inputs may differ).
    from gui.history.rerun import Rerunner

    rerunner = Rerunner(
        engine,
        run,
        window.open_trace,
        lambda text: window.statusBar().showMessage(text, 8000),
        remote_targets.view.store,
    )

    async def run_summary(run_id: str) -> dict[str, Any] | None:
        found = await queries.get_run(db.reader, run_id)
        return None if found is None else found.summary

    window.trace_view.set_lookup(
        lambda request_id: queries.get_request(db.reader, request_id), tasks, run_summary
    )

    def rerun(original_id: str, model: str, payload: dict[str, Any]) -> None:
        tasks.spawn(rerunner.rerun(original_id, model, payload), "rerun")

    window.trace_view.sigRerun.connect(rerun)
    # The Requests view's signal names no request: the one it repeats is its selected row.
    requests_view.sigRerun.connect(
        lambda model, payload: rerun(
            str((requests_view.selected_row() or {}).get("request_id") or ""), model, payload
        )
    )
    for open_signal in (monitor.sigOpenRequest, window.drop_panel.sigOpenRequest):
        # A slow point in the Monitor, a bad row in the Files area: its stored trace.
        open_signal.connect(lambda request_id: tasks.spawn(open_request(request_id), "open-trace"))
    drop = DropRunner(
        engine,
        window.drop_panel,
        lag,
        say=lambda text: window.statusBar().showMessage(text, 4000),
        on_run_done=runs_view.refresh,
    )
    window.sigFilesDropped.connect(lambda paths: drop.start(paths, tasks))
    window.drop_panel.sigCancel.connect(drop.cancel)
    tasks.spawn(drop.offer_stored(tasks), "files-resume-offer")  # a job stopped last time
    # Every view and menu is in: the first paint shows them all. Their plots, which it does
    # not show, are built one per loop turn from then on, the Monitor's first.
    plots = BuildInTurns(window, [monitor, loads.panel.chart, loads.plots])
    window.show()
    painted = _first_paint(window)

    async def after_first_paint() -> None:
        await painted
        plots.start()
        await remote_targets.start_probing()

    after_paint = tasks.spawn(after_first_paint(), "after-first-paint")
    starting = asyncio.ensure_future(_load_models(window, engine, painted))
    either: set[asyncio.Future[Any]] = {starting, closed}
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if closed.done():
        await starting  # queued requests need the models to finish before the engine drains
        on_ready = load = None
    elif starting.result() and ready is not None:
        ready(engine)
    if not closed.done():
        # Checked now (loaded, or moved to the problems); Add, Remove and Reload open, even
        # after a failed load: a reload is how a fixed folder comes back.
        models.set_ready(engine.registry)
    script: asyncio.Task[None] | None = None
    if on_ready is not None:  # scripted use (screenshots, benchmarks, end-to-end tests)
        script = tasks.spawn(_scripted(on_ready, window), "on-ready")
    if load is not None:  # `inferdeck gui --target URL [... --autostart]`
        loads.panel.fill(load)
        if autostart:
            window.tabs.setCurrentWidget(window.monitor_view)
            loads.plots.setVisible(True)
            loads.host.sigFailed.connect(lambda _message: window.close())
            # The Monitor's first paint (every plot at once, ~100 ms) comes before the run, not
            # into its first requests' latency.
            await asyncio.sleep(FIRST_PAINT_S)
            loads.start(load)
    await closed
    await starting
    drop.interrupt()  # a file job stops and is stored `interrupted` (a later drop resumes it)
    await models.aclose()  # a model being added: its child process is stopped
    await loads.aclose()  # a running load stops and stores its summary
    await asyncio.gather(after_paint, return_exceptions=True)  # no prober starts after this
    await remote_targets.aclose()  # probers stop before the database closes
    await tasks.wait()
    # If the database stopped taking writes, the window has said so; quitting still works.
    with contextlib.suppress(DatabaseFilesChangedError):
        await end_run(db, run, extra={"ui_loop_lag_ms": lag.summary_ms()})
    failure = None if script is None or script.cancelled() else script.exception()
    if failure is not None:
        raise failure  # the script's failure is its caller's (a test, the screenshot tool)
    return loads.host.last_summary, loads.host.last_error


async def _scripted(
    on_ready: Callable[[MainWindow], Coroutine[Any, Any, None]], window: MainWindow
) -> None:
    """Runs a script on the ready window; if it fails, the app closes (as its user would have
    it close) and `run_app` raises the failure, instead of leaving a window nobody drives."""
    try:
        await on_ready(window)
    except BaseException:
        window.sigCloseRequested.emit()
        raise
