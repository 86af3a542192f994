"""`inferdeck` / `inferdeck gui`: the desktop app on a qasync loop.

The window is shown before torch loads (models warm up in the executor meanwhile), closing it
drains the engine and awaits the writer's last commit, and no traceback ever reaches the user:
an excepthook logs it and shows a short message instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.file_job import FileJob
    from engine.tasks import TaskOwner
    from gui.loop_lag import LoopLagMonitor
    from gui.main_window import MainWindow

log = logging.getLogger(__name__)

_HEADLESS_PLATFORMS = {"offscreen", "minimal", "vnc"}


def has_display() -> bool:
    if sys.platform != "linux":
        return True
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform.split(":")[0] in _HEADLESS_PLATFORMS:
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_gui(args: argparse.Namespace, db_path: Path) -> int:
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
    with contextlib.suppress(asyncio.CancelledError):
        qasync.run(_main(db_path, args.autoquit))
    return 0


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    log.error("unexpected error: %s", "".join(traceback.format_exception(kind, exc, tb)))
    from PySide6.QtWidgets import QApplication, QMessageBox

    window = QApplication.activeWindow()
    box = QMessageBox(QMessageBox.Icon.Warning, "InferDeck", f"Something went wrong: {exc}")
    if window is not None:
        box.setParent(window)
    box.open()  # never exec(): it would re-enter the qasync loop


async def _main(
    db_path: Path,
    autoquit: float | None,
    on_ready: Callable[[MainWindow], Coroutine[Any, Any, None]] | None = None,
) -> None:
    from concurrent.futures import Executor

    from PySide6.QtCore import QTimer

    from engine.contracts import PredictRequest
    from engine.engine import Engine, Origin
    from engine.models import ModelRegistry
    from engine.runs import begin_run, end_run
    from engine.tasks import TaskOwner, freeze_startup_objects
    from engine.work import FutureSink
    from gui.bridge import EngineBridge
    from gui.loop_lag import LoopLagMonitor
    from gui.main_window import MainWindow
    from gui.qt_executor import QThreadPoolExecutor
    from gui.requests_model import RequestsTableModel
    from gui.requests_view import RequestsView
    from storage import open_database
    from storage.queries import RequestFilter

    registry = ModelRegistry.discover()
    window = MainWindow([registry.models[n] for n in registry.names()], db_path)
    window.show()
    lag = LoopLagMonitor()
    lag.start()
    bridge = EngineBridge()
    bridge.sigStats.connect(window.on_stats)
    lag_timer = QTimer()
    lag_timer.timeout.connect(lambda: window.show_lag(lag.summary_ms()))
    lag_timer.start(500)

    closed = asyncio.get_running_loop().create_future()

    def request_close() -> None:
        if not closed.done():
            closed.set_result(None)

    window.sigCloseRequested.connect(request_close)
    if autoquit is not None:
        QTimer.singleShot(int(autoquit * 1000), window.close)

    executor: Executor = QThreadPoolExecutor(max_workers=1)
    db = await open_database(db_path)
    engine = Engine(db, registry, executor)
    tasks = TaskOwner()
    try:
        await engine.start()
        freeze_startup_objects()
        window.set_models_ready(registry.names())
        engine.subscribe(bridge.on_snapshot)
        engine.on_finished(bridge.on_finished)
        table = RequestsTableModel(db, tasks)
        requests_view = RequestsView(table, registry.names())
        window.add_requests_view(requests_view)
        bridge.sigFinished.connect(table.add_live)
        bridge.sigStats.connect(window.monitor_view.on_stats)
        table.set_filter(RequestFilter())
        run = await begin_run(db, "gui", {})
        origin = Origin(run, FutureSink(), "form", "gui")

        async def predict(model: str, payload: dict[str, object]) -> None:
            request = PredictRequest(client_id="gui", model=model, input_payload=payload)
            work = await engine.predict(request, origin, acknowledge=True)
            window.predict_view.show_result(work)

        window.predict_view.sigPredict.connect(
            lambda model, payload: tasks.spawn(predict(model, payload), "form-predict")
        )
        for rerun_signal in (requests_view.sigRerun, window.trace_view.sigRerun):
            rerun_signal.connect(
                lambda model, payload: tasks.spawn(predict(model, payload), "rerun")
            )
        drop = _DropRunner(engine, window, lag)
        window.sigFilesDropped.connect(lambda paths: drop.start(paths, tasks))
        window.drop_panel.sigCancel.connect(drop.cancel)
        if on_ready is not None:  # scripted use (screenshots)
            tasks.spawn(on_ready(window), "on-ready")
        await closed
        drop.cancel()
        await tasks.wait()
        await end_run(db, run, extra={"ui_loop_lag_ms": lag.summary_ms()})
    finally:
        lag.stop()
        bridge.stop()
        if hasattr(window, "monitor_view"):
            window.monitor_view.stop()
        lag_timer.stop()
        await engine.stop()
        await db.close()
        executor.shutdown(wait=True)
        window.finish_close()


class _DropRunner:
    """Runs dropped files one after another as a `files` run (batch tier: the form overtakes)."""

    def __init__(self, engine: Engine, window: MainWindow, lag: LoopLagMonitor) -> None:
        self.engine = engine
        self.window = window
        self.lag = lag
        self.job: FileJob | None = None
        self.busy = False

    def start(self, paths: list[Path], tasks: TaskOwner) -> None:
        if self.busy:
            self.window.statusBar().showMessage("A file job is running: wait, or cancel it", 4000)
            return
        self.busy = True
        tasks.spawn(self._run(paths), "file-drop")

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    async def _run(self, paths: list[Path]) -> None:
        from engine.file_job import FileJob, estimate_rows
        from engine.ingest import SourceError, expand_inputs
        from engine.runs import begin_run, end_run

        panel = self.window.drop_panel
        panel.problems.clear()
        try:
            files = expand_inputs([str(p) for p in paths])
        except SourceError as exc:
            panel.finish(str(exc))
            self.busy = False
            return
        run = await begin_run(self.engine.db, "files", {"files": [str(f) for f in files]})
        messages = []
        try:
            for path in files:
                self.job = FileJob(
                    self.engine, path, run=run, client_id="files", on_problem=panel.add_problem
                )
                panel.start(self.job, await asyncio.to_thread(estimate_rows, path))
                report = await self.job.run()
                messages.append(
                    report.file_error
                    or f"{path.name}: {report.ok:,} ok, "
                    f"{report.rejected:,} rejected, {report.failed:,} failed"
                )
                if report.cancelled:
                    messages.append("cancelled (drop the file again to resume)")
                    break
        finally:
            self.job = None
            self.busy = False
            await end_run(self.engine.db, run, extra={"ui_loop_lag_ms": self.lag.summary_ms()})
            panel.finish(" · ".join(messages))
