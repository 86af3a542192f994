"""Dropped files become a `files` run: one file job after another, at the batch tier, so a
form request overtakes them. The run's summary keeps the UI loop lag measured while it ran, and
its status says how it ended: `cancelled` (Cancel, Esc), `interrupted` (the window closed during
the job), `failed` (a file could not run) or `done`.

A stopped job is offered for Resume (dropping the file again does the same: `FileJob` resumes
the stored job over the same file); a file that already ran to its end runs again only after
the person says so. A resumed file's summary counts its rows across every attempt.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from engine.file_job import (
    FileJob,
    JobReport,
    KnownFile,
    Stopped,
    estimate_rows,
    identify,
    jobs_outcome,
)
from engine.ingest import SourceError, expand_inputs
from engine.pipeline import Engine
from engine.runs import begin_run, end_run
from engine.tasks import TaskOwner
from gui.predict.drop_panel import DropPanel
from gui.shared.loop_lag import LoopLagMonitor
from storage.queries.jobs import find_finished_job, job_status_counts, latest_file_job

# The job statuses a later run resumes (as `storage.queries.find_resumable_job` finds them).
STOPPED = ("interrupted", "cancelled")


def job_summary(report: JobReport, counts: dict[str, int] | None) -> str:
    """A file's line in the panel: its rows by status across every attempt (`counts`, read
    from the database), and for a resumed job how many were done before and now."""
    if report.file_error:
        return report.file_error
    ok, rejected, failed = report.ok, report.rejected, report.failed
    if counts is not None:
        ok, rejected, failed = (counts.get(s, 0) for s in ("ok", "rejected", "failed"))
    text = f"{report.path.name}: {ok:,} ok, {rejected:,} rejected, {failed:,} failed"
    if report.resumed:
        text += f" in all ({report.skipped:,} rows done before the resume, {report.done:,} now)"
    return text


class DropRunner:
    """Runs dropped files as one `files` run of file jobs; the Predict view starts and cancels
    it, the panel's Resume starts the stopped files again."""

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
        self._halt = threading.Event()  # stops hashing the files before their jobs start
        self._tasks: TaskOwner | None = None
        panel.sigResume.connect(self.resume)

    def start(self, paths: list[Path], tasks: TaskOwner) -> None:
        if self.busy:
            self.say("A file job is running: wait, or cancel it (Esc)")
            return
        self.busy = True
        self._tasks = tasks
        self._stopped = None
        self._halt = threading.Event()
        self.panel.set_active(True)
        tasks.spawn(self._run(paths), "file-drop")

    def resume(self) -> None:
        """Resume: run the stopped files again; each resumes its stored job."""
        paths = self.panel.resume_paths
        if paths and self._tasks is not None:
            self.start(paths, self._tasks)

    async def offer_stored(self, tasks: TaskOwner) -> None:
        """Offer Resume for the newest file job when it was stopped (the window closed during
        it, or Cancel) and its file is still there."""
        self._tasks = tasks
        try:
            job = await latest_file_job(self.engine.db.reader)
        except sqlite3.Error:
            return  # nothing to offer: the drop itself says what is wrong with the database
        if job is None or job.status not in STOPPED or self.busy:
            return
        path = Path(job.source_path)
        if path.is_file():
            self.panel.offer_resume([path], f"{path.name} was {job.status}")
            self.panel.status.setText(
                f"{path.name} was {job.status} after {job.rows_done:,} rows: Resume goes on "
                "from there"
            )

    def cancel(self) -> None:
        """The person asked to stop (Cancel, Esc): the run ends `cancelled`."""
        self._stop("cancelled")

    def interrupt(self) -> None:
        """The window is closing: the run ends `interrupted` (Resume, or dropping the file
        again, goes on from where it stopped)."""
        self._stop("interrupted")

    def _stop(self, status: str) -> None:
        if self.busy and self._stopped is None:
            self._stopped = status
        self._halt.set()
        self.panel.dismiss_question()
        if self.job is not None:
            self.job.cancel(status)

    async def _known(self, files: list[Path]) -> tuple[dict[Path, KnownFile], list[Path]]:
        """Each file's digest and resumable job (`identify`, handed on to its job), and the
        files that already ran to their end and have nothing to resume."""
        known: dict[Path, KnownFile] = {}
        finished: list[Path] = []
        for path in files:
            try:
                found = await identify(self.engine.job_records, path, self._halt)
            except (SourceError, OSError):
                continue  # its job says why it cannot be read
            known[path] = found
            if found.resumable is None and await find_finished_job(
                self.engine.db.reader, str(path.resolve()), found.digest
            ):
                finished.append(path)
        return known, finished

    async def _run(self, paths: list[Path]) -> None:
        panel = self.panel
        panel.clear_problems()
        try:
            try:
                files = expand_inputs([str(p) for p in paths])
                known, finished = await self._known(files)
            except SourceError as exc:
                panel.finish(str(exc))
                return
            except (Stopped, sqlite3.Error) as exc:
                panel.finish("stopped" if isinstance(exc, Stopped) else f"cannot read: {exc}")
                return
            if finished:
                panel.status.setText("Waiting for an answer: run the finished file again?")
                if not await panel.ask_rerun([p.name for p in finished]):
                    files = [f for f in files if f not in finished]
                    if not files or self._stopped is not None:
                        panel.finish("Not run again: " + ", ".join(p.name for p in finished))
                        return
            await self._run_files(files, known)
        finally:
            self.busy = False
            panel.set_active(False)

    async def _run_files(self, files: list[Path], known: dict[Path, KnownFile]) -> None:
        panel = self.panel
        lag_window = self.lag.open_window()
        config = {"files": [str(f) for f in files], "client_id": "files"}
        run = await begin_run(self.engine.db, "files", config)
        messages: list[str] = []
        reports: list[JobReport] = []
        left: list[Path] = []  # the stopped file and those after it: what Resume runs
        try:
            for index, path in enumerate(files):
                if self._stopped is not None:
                    left = files[index:]
                    break
                self.job = FileJob(
                    self.engine,
                    path,
                    run=run,
                    client_id="files",
                    on_problem=panel.add_problem,
                    known=known.get(path),
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
                messages.append(job_summary(report, await self._counts(report)))
                if report.stopped is not None:
                    messages.append(f"{report.stopped}: Resume goes on from here")
                    left = files[index:]
                    break
        except asyncio.CancelledError:
            self._stopped = "interrupted"  # the app is ending under the run
            raise
        finally:
            self.job = None
            lag_ms = self.lag.close_window(lag_window)
            outcome = jobs_outcome(reports, self._stopped, unreached=len(files) - len(reports))
            models = sorted({r.model for r in reports if r.model})
            await end_run(
                self.engine.db,
                run,
                status=outcome["status"],
                extra=outcome | {"ui_loop_lag_ms": lag_ms},
                config={"models": models} if models else None,
            )
            panel.finish(" · ".join(messages))
            if left:
                panel.offer_resume(left, f"{left[0].name} was {self._stopped or 'stopped'}")
            self.on_run_done()

    async def _counts(self, report: JobReport) -> dict[str, int] | None:
        """The job's stored rows by status across every attempt, or None if unreadable."""
        if report.job_id is None:
            return None
        try:
            return await job_status_counts(self.engine.db.reader, report.job_id)
        except sqlite3.Error:
            return None
