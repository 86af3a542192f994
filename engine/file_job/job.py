"""`FileJob`: stream one input file through the engine, durably and resumably.

The job is recorded with the file's path, size and SHA-256. Every row, good or bad, becomes a
committed `requests` row keyed by (job, row number), so a crashed job resumes by skipping the rows
that already have one: nothing is redone and nothing is lost. One bad row (even one that raises
something unexpected) is a rejected row, never the end of the file.

The job talks to the engine only through `JobEngine` (acceptance, admission, its `file_jobs`
rows); the engine hands results back to the job, its `Sink`, once they are committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.file_job.link import JobEngine
from engine.file_job.report import JobReport, RowProblem
from engine.file_job.source import KnownFile, Stopped, count_rows, identify
from engine.ingest import FileFormat, RawRow, SourceError, open_rows, sniff
from engine.ingest.images import ImageError, image_pixels
from engine.models.runtime import LoadedModel
from engine.results_out import ResultFile, record_from_row
from engine.stats import RunRecorder
from engine.tiers import ClientInfo
from engine.validation import error
from engine.work import Origin, Work
from storage import queries

log = logging.getLogger(__name__)

# Yield to the event loop after this much reading, so other tasks (the batcher, a GUI's paint)
# run. A count of rows was 30 ms between yields on a slow machine, the whole of the app's loop
# lag during a drop. The lag a GUI timer sees is the queue of turns ahead of it (a plot's
# paint, a slice of reading, a slice of the writer's), so each slice is short: 1 ms slices
# here and in the writer took the app's drop lag p99 from ~16 to ~12 ms against 4 ms ones,
# and `inferdeck predict` ran as fast either way (bench/bench_gui.py, bench/bench_predict.py).
_SLICE_S = 0.001
_CHECK_EVERY = 16  # rows between clock reads
MAX_PROBLEMS_KEPT = 1000
# After a job stops early, the rest of its file is counted (read, not run) so the job can say how
# many rows the file has; a file too large to count in this time keeps its total unknown.
COUNT_REST_S = 2.0


class FileJob:
    """Runs one file through a `JobEngine` and is the `Sink` its requests come back to after
    commit; the `predict` command and the app's drop runner make one per file."""

    def __init__(
        self,
        engine: JobEngine,
        path: Path,
        *,
        run: RunRecorder,
        model: str | None = None,
        client_id: str = "cli",
        out: ResultFile | None = None,
        on_problem: Callable[[Path, RowProblem], None] | None = None,
        resume: bool = True,
        known: KnownFile | None = None,
    ) -> None:
        self.engine, self._records = engine, engine.job_records
        self.path = path
        self.run_rec = run
        self.model_name, self.client_id = model, client_id  # what the rows run on, and as whom
        self.out, self.on_problem = out, on_problem  # where results and bad rows go
        self.resume = resume
        self.known = known  # the file's digest and resumable job, if the caller looked them up
        self.report = JobReport(path)
        self._pending = 0
        self._reading = True
        self._idle = asyncio.Event()
        self._cancel = asyncio.Event()
        self._stop_as = "cancelled"
        self._requested = False  # stopped from outside (`cancel`), not by an error of its own
        self._halt = threading.Event()  # the same request, for work in threads (hashing)
        self._done_rows: set[int] = set()

    def cancel(self, status: str = "cancelled") -> None:
        """Stop after the rows in flight: `cancelled` when a person asked, `interrupted` when the
        program is ending. The rows done stay done; running the file again resumes it."""
        if not self._requested:
            self._stop_as = status
        self._requested = True
        self._cancel.set()
        self._halt.set()

    # -- the sink ---------------------------------------------------------------------------

    def deliver(self, done: list[Work]) -> None:
        try:
            self._take_results(done)
        finally:
            # Whatever happens above, these rows are no longer pending: never leave run() waiting.
            self._pending -= len(done)
            if self._pending == 0 and not self._reading:
                self._idle.set()

    def _take_results(self, done: list[Work]) -> None:
        report = self.report
        for work in done:
            if work.status == "ok":
                report.ok += 1
            elif work.status == "rejected":
                report.rejected += 1
                self._problem(work)
            else:
                report.failed += 1
                self._problem(work)
        # A result whose commit failed has no row: it must not reach `--out` (a resume runs the
        # row again, and `--out` would then hold it twice), nor count as progress.
        stored = [work for work in done if work.stored]
        report.unstored += len(done) - len(stored)
        guard_error = self._records.write_stopped()
        if guard_error is not None and report.file_error is None:
            # The database stopped taking writes (its files changed under it): every later row
            # would fail the same way, so the job stops with that one message.
            report.file_error = str(guard_error)
            self._cancel.set()
        if self.out is not None and report.out_error is None:
            try:
                self.out.write([work.result_record() for work in stored])
            except OSError as exc:
                # The rows are committed; only the copy failed. Stop the job: resuming it later
                # back-fills `--out` from the database.
                report.out_error = f"--out {self.out.path}: {exc.strerror or exc}"
                self._cancel.set()  # stopped by an error: `failed`, not `cancelled`
        if self.report.job_id is not None and stored:
            # A later transaction than the rows it counts: `rows_done` may lag by one batch
            # after a crash; resuming counts the committed rows themselves.
            self._records.add_progress(self.report.job_id, len(stored))

    def _problem(self, work: Work) -> None:
        self.report.problem_count += 1
        if work.error is None or work.source_row is None:
            return
        detail = work.error.details[0] if work.error.details else None
        problem = RowProblem(
            row=work.source_row,
            line=detail.line if detail else None,
            field=detail.field if detail else None,
            message=detail.message if detail else work.error.message,
            more=max(len(work.error.details) - 1, 0),
            request_id=work.request_id,
        )
        if len(self.report.problems) < MAX_PROBLEMS_KEPT:
            self.report.problems.append(problem)
        if self.on_problem is not None:
            self.on_problem(self.path, problem)

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> JobReport:
        report = self.report
        interrupted = False
        try:
            fmt = sniff(self.path)
            report.format = fmt.value
            client = await self.engine.clients.lookup(self.client_id)  # its default model
            known = self.known
            if known is None:
                known = await identify(self._records, self.path, self._halt)
            if self._requested:
                raise Stopped
            previous = known.resumable
            if previous is not None and not self.resume:
                # Superseded, so that a later plain run does not resume it either.
                await self._records.supersede(previous.job_id)
                previous = None
            model = self._pick_model(fmt, previous, client)
            report.model = model.name if model else None
            await self._open_job(fmt, model, previous, known.digest)
            if fmt is FileFormat.IMAGE:
                await self._run_image(model)
            else:
                with open_rows(self.path, fmt) as rows:
                    await self._run_rows(rows, model)
        except SourceError as exc:
            report.file_error = str(exc)
        except Stopped:
            report.stopped = self._stop_as  # stopped before its first row
        except asyncio.CancelledError:
            # The task itself was cancelled (the program is ending): record that, then go on
            # cancelling once the job is closed.
            interrupted = True
            report.stopped = "interrupted"
        except Exception as exc:  # never leave a job hanging or a traceback on the terminal
            log.error("file job %s failed", self.path, exc_info=True)
            report.file_error = f"{self.path}: stopped: {type(exc).__name__}: {exc}"
        finally:
            self._reading = False
            if self._pending == 0:
                self._idle.set()
            await self._idle.wait()
        await self._close_job()
        if interrupted:
            raise asyncio.CancelledError
        return report

    def _pick_model(
        self, fmt: FileFormat, previous: queries.FileJobRow | None, client: ClientInfo
    ) -> LoadedModel | None:
        """The model a file runs on: its interrupted job's, the one asked for, the client's
        default when it fits the file, or the registry's first for the file's kind."""
        registry = self.engine.registry
        if previous is not None and previous.model is not None:
            # A resumed job finishes on the model it started with.
            if self.model_name not in (None, previous.model):
                raise SourceError(
                    f"{self.path}: its interrupted job ran on model {previous.model!r}; "
                    f"resume with that model or start over with --restart"
                )
            model = registry.get(previous.model)
            if model is None:
                raise SourceError(f"{self.path}: its job's model {previous.model!r} is gone")
        elif self.model_name is not None:
            model = registry.get(self.model_name)
            if model is None:
                raise SourceError(f"unknown model {self.model_name!r}")
        else:
            task = "image-classification" if fmt is FileFormat.IMAGE else "tabular-classification"
            preferred = registry.get(client.default_model or "")
            fits = preferred is not None and preferred.manifest.task == task
            model = preferred if fits else registry.default_for(task)
        if fmt is FileFormat.IMAGE and (model is None or model.manifest.image_field is None):
            name = model.name if model else "no model"
            raise SourceError(f"{self.path}: {name} does not take images")
        return model

    async def _open_job(
        self,
        fmt: FileFormat,
        model: LoadedModel | None,
        previous: queries.FileJobRow | None,
        digest: str,
    ) -> None:
        records = self._records
        size = self.path.stat().st_size
        if previous is not None:
            self.report.job_id, self.report.resumed = previous.job_id, True
            self._done_rows = await records.claim(previous.job_id, self.run_rec.run_id)
            await self._backfill_out(previous.job_id)
            return
        self.report.job_id = await records.open(
            self.run_rec.run_id,
            str(self.path.resolve()),
            size,
            digest,
            fmt.value,
            model.name if model else None,
        )

    async def _backfill_out(self, job_id: int) -> None:
        """Results committed before the crash but not yet in `--out` are written now."""
        if self.out is None:
            return
        rows = await self._records.results(job_id)
        missing = [r for r in rows if r["request_id"] not in self.out.known_ids]
        self.out.write([record_from_row(r) for r in missing])

    def _origin(self) -> Origin:
        return Origin(self.run_rec, self, str(self.path), self.client_id, job_id=self.report.job_id)

    async def _run_rows(self, rows: Iterator[RawRow], model: LoadedModel | None) -> None:
        engine = self.engine
        origin = self._origin()
        validator = engine.validator(model.name if model else None)
        done, report, cancel = self._done_rows, self.report, self._cancel
        count = 0  # rows read, the one in hand included
        slice_end = time.perf_counter() + _SLICE_S
        for raw in rows:
            count += 1
            if count % _CHECK_EVERY == 0 and time.perf_counter() >= slice_end:
                await asyncio.sleep(0)
                slice_end = time.perf_counter() + _SLICE_S
            if cancel.is_set():
                if self._requested and report.out_error is None and report.file_error is None:
                    report.stopped = self._stop_as  # else it stopped on an error: `failed`
                rest = await self._count_rest(rows)
                report.rows_total = None if rest is None else count + rest
                return
            if raw.row in done:
                report.skipped += 1
                continue
            report.submitted += 1
            if raw.data is None:
                body = error("unreadable_row", raw.problem or "unreadable row")
                body.details[0].row, body.details[0].line = raw.row, raw.line
                self._pending += 1
                engine.reject(origin, body, source_row=raw.row, input_text=None)
                continue
            accepted = self.run_rec.accepted
            try:
                work = await engine.accept(raw.data, validator, origin, source_row=raw.row)
            except Exception as exc:
                # Whatever one row's content makes go wrong is that row's problem: it is
                # rejected with its row and line, and the rows after it still run.
                self.run_rec.accepted = accepted  # the rejection counts the row once
                self._reject_unexpected(raw, exc)
                continue
            if work.status == "rejected":
                assert work.error is not None
                for detail in work.error.details:
                    detail.row, detail.line = raw.row, raw.line
            await self._hand_off(work)
        report.rows_total = count

    def _reject_unexpected(self, raw: RawRow, exc: Exception) -> None:
        log.warning("%s: row %s could not be processed", self.path, raw.row, exc_info=True)
        body = error(
            "unprocessable_row", f"could not process this row: {type(exc).__name__}: {exc}"
        )
        body.details[0].row, body.details[0].line = raw.row, raw.line
        self._pending += 1
        self.engine.reject(self._origin(), body, source_row=raw.row, input_text=_preview(raw.data))

    async def _count_rest(self, rows: Iterator[RawRow]) -> int | None:
        """The rows left in the file after a stop, counted in a thread within `COUNT_REST_S`."""
        stop = threading.Event()
        deadline = time.monotonic() + COUNT_REST_S
        try:
            return await asyncio.to_thread(count_rows, rows, deadline, stop)
        finally:
            stop.set()  # cancelled while counting: the thread stops within 1,024 rows

    async def _run_image(self, model: LoadedModel | None) -> None:
        assert model is not None and model.manifest.image_field is not None
        self.report.rows_total = 1
        if 1 in self._done_rows:
            self.report.skipped += 1
            return
        origin = self._origin()
        pre = model.manifest.preprocessing.image
        assert pre is not None
        self.report.submitted += 1
        try:
            pixels = await asyncio.to_thread(image_pixels, self.path, pre)
        except ImageError as exc:
            body = error("unreadable_image", f"{exc}")
            body.details[0].row = 1
            self._pending += 1
            self.engine.reject(origin, body, source_row=1, input_text=self.path.name)
            return
        data = {model.manifest.image_field.name: pixels}
        work = await self.engine.accept(
            data, self.engine.validator(model.name), origin, source_row=1
        )
        await self._hand_off(work)

    async def _hand_off(self, work: Work) -> None:
        """Give accepted work to the engine; from here on it will come back to `deliver`."""
        self._pending += 1
        if work.status == "rejected":
            self.engine.record_rejection(work)
            return
        try:
            await self.engine.submit(work)
        except BaseException:
            self._pending -= 1  # not admitted: it will never be delivered
            raise

    async def _close_job(self) -> None:
        job_id = self.report.job_id
        if job_id is None:
            return
        report = self.report
        # Any status but `done` is resumable when rows are done: running the file again skips
        # them (and back-fills what `--out` is missing).
        await self._records.finish(job_id, report.status, report.rows_total, report.rows_done)


def _preview(data: bytes | dict[str, Any] | None) -> str | None:
    """The start of a row's input for its stored rejection; never raises (the row may hold
    what made processing fail: a huge integer, a deep nesting)."""
    try:
        raw = data if isinstance(data, bytes) else json.dumps(data, default=str).encode()
    except (ValueError, TypeError, RecursionError):
        return None
    return raw[:2048].decode("utf-8", "replace")
