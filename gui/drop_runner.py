"""Dropped files become a `files` run: one file job after another, at the batch tier, so a
form request overtakes them. The run's summary keeps the UI loop lag measured while it ran."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from engine.engine import Engine
from engine.file_job import FileJob, estimate_rows
from engine.ingest import SourceError, expand_inputs
from engine.runs import begin_run, end_run
from engine.tasks import TaskOwner
from gui.drop_panel import DropPanel
from gui.loop_lag import LoopLagMonitor


class DropRunner:
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

    def start(self, paths: list[Path], tasks: TaskOwner) -> None:
        if self.busy:
            self.say("A file job is running: wait, or cancel it (Esc)")
            return
        self.busy = True
        tasks.spawn(self._run(paths), "file-drop")

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

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
            lag_ms = self.lag.close_window(lag_window)
            await end_run(self.engine.db, run, extra={"ui_loop_lag_ms": lag_ms})
            panel.finish(" · ".join(messages))
            self.on_run_done()
