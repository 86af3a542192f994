"""Dropped files become a `files` run: one file job after another, at the batch tier, so a
form request overtakes them. The run's summary keeps the UI loop lag measured while it ran, and
its status says how it ended: `cancelled` (Cancel, Esc), `interrupted` (the window closed during
the job), `failed` (a file could not run) or `done`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from engine.file_job import FileJob, JobReport, estimate_rows, jobs_outcome
from engine.ingest import SourceError, expand_inputs
from engine.pipeline import Engine
from engine.runs import begin_run, end_run
from engine.tasks import TaskOwner
from gui.predict.drop_panel import DropPanel
from gui.shared.loop_lag import LoopLagMonitor


class DropRunner:
    """Runs dropped files as one `files` run of file jobs; the Predict view starts and cancels
    it."""

    def __init__(
        self,
        engine: Engine,
        panel: DropPanel,
        lag: LoopLagMonitor,
        say: Callable[[str], None],
        on_run_done: Callable[[], None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.panel = panel
        self.lag = lag
        self.say = say
        self.on_run_done = on_run_done
        self.job: FileJob | None = None
        self.busy = False
        self._stopped: str | None = None  # how the running job was asked to stop

    def start(self, paths: list[Path], tasks: TaskOwner) -> None:
        if self.busy:
            self.say("A file job is running: wait, or cancel it (Esc)")
            return
        self.busy = True
        tasks.spawn(self._run(paths), "file-drop")

    def cancel(self) -> None:
        """The person asked to stop (Cancel, Esc): the run ends `cancelled`."""
        self._stop("cancelled")

    def interrupt(self) -> None:
        """The window is closing: the run ends `interrupted` (dropping the file again resumes)."""
        self._stop("interrupted")

    def _stop(self, status: str) -> None:
        if self.busy and self._stopped is None:
            self._stopped = status
        if self.job is not None:
            self.job.cancel(status)

    async def _run(self, paths: list[Path]) -> None:
        panel = self.panel
        panel.problems.clear()
        try:
            files = expand_inputs([str(p) for p in paths])
        except SourceError as exc:
            panel.finish(str(exc))
            self.busy = False
            return
        lag_window = self.lag.open_window()
        self._stopped = None
        run = await begin_run(self.engine.db, "files", {"files": [str(f) for f in files]})
        messages: list[str] = []
        reports: list[JobReport] = []
        try:
            for path in files:
                if self._stopped is not None:
                    break
                self.job = FileJob(
                    self.engine, path, run=run, client_id="files", on_problem=panel.add_problem
                )
                if self._stopped is not None:
                    self.job.cancel(self._stopped)
                try:
                    estimate = await asyncio.to_thread(estimate_rows, path)
                except (OSError, SourceError):
                    estimate = 1  # the job says why it cannot read the file
                panel.start(self.job, estimate)
                report = await self.job.run()
                reports.append(report)
                messages.append(
                    report.file_error
                    or f"{path.name}: {report.ok:,} ok, "
                    f"{report.rejected:,} rejected, {report.failed:,} failed"
                )
                if report.stopped is not None:
                    messages.append(f"{report.stopped} (drop the file again to resume)")
                    break
        except asyncio.CancelledError:
            self._stopped = "interrupted"  # the app is ending under the run
            raise
        finally:
            self.job = None
            self.busy = False
            lag_ms = self.lag.close_window(lag_window)
            outcome = jobs_outcome(reports, self._stopped, unreached=len(files) - len(reports))
            await end_run(
                self.engine.db,
                run,
                status=outcome["status"],
                extra=outcome | {"ui_loop_lag_ms": lag_ms},
            )
            panel.finish(" · ".join(messages))
            self.on_run_done()
