"""`inferdeck predict FILE...`: run files through the local engine, streaming results.

Ctrl+C stops the run after the rows in flight: the run is stored `cancelled` with the rows done
and the rows its files have, and the summary is printed as for a finished run (exit 130).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import threading
from pathlib import Path

from engine.cli.common import (
    EXIT_CANNOT_START,
    EXIT_OK,
    EXIT_PARTIAL,
    CommandError,
    SubParsers,
    db_path,
    emit_json,
    on_ctrl_c,
    say,
    warn,
)
from engine.contracts import IDENT_PATTERN
from engine.file_job import (
    FileJob,
    JobReport,
    KnownFile,
    RowProblem,
    Stopped,
    identify,
    jobs_outcome,
)
from engine.ingest import SourceError, expand_inputs
from engine.models import ModelRegistry
from engine.pipeline import Engine
from engine.results_out import ResultFile
from engine.runs import begin_run, end_run
from engine.startup import started_engine
from engine.stats import RunRecorder
from storage.database import database_files, file_identity, is_database_file

# Past this many, bad rows are counted but not printed one by one (all are stored).
PRINT_PROBLEMS = 50
EXIT_INTERRUPTED = 130  # stopped by Ctrl+C, as a shell reports a command SIGINT ended
EXIT_TERMINATED = 143  # stopped by SIGTERM, likewise


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "predict",
        help="run files through a local model",
        description="Run JSON, JSONL, CSV or image files (or folders of them) through a local "
        "model. An interrupted run of the same file resumes where it stopped.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--model", help="model name (default: the first tabular or image model)")
    p.add_argument("--client-id", default="cli", help="client the requests are made as")
    p.add_argument("--db", help="database file (default: $INFERDECK_DB or the user data folder)")
    p.add_argument("--out", metavar="FILE.jsonl", help="stream results here as they commit")
    p.add_argument("--json", action="store_true", help="end with a JSON summary line")
    p.add_argument("--restart", action="store_true", help="do not resume interrupted jobs")
    p.set_defaults(run=run)


class _ProblemPrinter:
    """Prints the first bad rows of a `predict` run to stderr and counts the rest."""

    def __init__(self) -> None:
        self.printed = 0
        self.hidden = 0

    def __call__(self, path: Path, problem: RowProblem) -> None:
        if self.printed < PRINT_PROBLEMS:
            self.printed += 1
            with contextlib.suppress(OSError):  # stderr closed early (`2>&1 | head`)
                warn(problem.describe(path))
        else:
            self.hidden += 1


class _Stop:
    """Ctrl+C: the first press stops the run after the rows in flight (the job running now is
    cancelled, hashing in a thread ends within a chunk); a second press ends at once."""

    def __init__(self) -> None:
        self.requested = False
        self.status = "cancelled"  # how the run and its job end: "interrupted" on SIGTERM
        self.halt = threading.Event()
        self.job: FileJob | None = None

    def __call__(self) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self._stop("stopping after the rows in flight (Ctrl+C again to quit at once)")

    def terminate(self) -> None:
        """SIGTERM: stop as Ctrl+C does, the run `interrupted` (the next run resumes it)."""
        if not self.requested:
            self.status = "interrupted"
            self._stop("terminated: stopping after the rows in flight")

    def _stop(self, message: str) -> None:
        self.requested = True
        self.halt.set()
        with contextlib.suppress(OSError):
            warn(f"inferdeck: {message}")
        if self.job is not None:
            self.job.cancel(self.status)


def _check_out(out: str, files: list[Path], db: Path) -> Path:
    """`--out` must be a new or expendable file: never an input (it is truncated before the
    input is read) nor the database. Compared by device and inode, so `./x`, a symlink or a
    hard link to an input is caught too."""
    path = Path(out)
    if path.is_dir() or not path.parent.exists():
        raise CommandError(f"--out {out}: not a writable file path")
    ident = file_identity(path)
    if ident is None:
        return path
    for source in files:
        if file_identity(source) == ident:
            raise CommandError(
                f"--out {out}: is the input file {source}; writing results would erase it "
                "(nothing was changed)"
            )
    if is_database_file(path, db):
        raise CommandError(f"--out {out}: is InferDeck's database (nothing was changed)")
    return path


async def _identify(
    engine: Engine, files: list[Path], stop: _Stop
) -> tuple[dict[str, KnownFile], bool]:
    """Each readable file's SHA-256 and interrupted job by its resolved path, looked up once here
    and handed to its job; and whether any of them has a job to resume."""
    known: dict[str, KnownFile] = {}
    for path in files:
        try:
            known[str(path.resolve())] = await identify(engine.job_records, path, stop.halt)
        except Stopped:
            break
        except (OSError, SourceError):
            continue  # the job reports it
    return known, any(k.resumable is not None for k in known.values())


async def run(args: argparse.Namespace) -> int:
    if not re.match(IDENT_PATTERN, args.client_id) or len(args.client_id) > 64:
        raise CommandError(f"--client-id {args.client_id!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    database = db_path(args.db)
    try:
        # The database is never an input: reading it would drop this process's SQLite locks.
        files = expand_inputs(args.files, protected=database_files(database))
    except SourceError as exc:
        raise CommandError(str(exc)) from exc
    out_path = _check_out(args.out, files, database) if args.out else None
    printer = _ProblemPrinter()
    registry = ModelRegistry.discover()
    if args.model is not None and registry.get(args.model) is None:
        # Checked before the engine starts: no need to load torch to say this.
        raise CommandError(f"unknown model {args.model!r} (have: {', '.join(registry.names())})")
    stop = _Stop()
    async with started_engine(database, registry) as engine:
        recovered = engine.db.recovered
        if recovered.requests or recovered.file_jobs:
            warn(
                f"found work left by a process that died: {recovered.requests} requests and "
                f"{recovered.file_jobs} file jobs marked interrupted"
            )
        config = {
            "files": [str(f) for f in files],
            "model": args.model,
            "client_id": args.client_id,
        }
        run_rec = await begin_run(engine.db, "predict", config)
        with on_ctrl_c(stop, on_term=stop.terminate):
            reports = await _run_files(engine, args, files, out_path, run_rec, stop, printer)
        outcome = jobs_outcome(
            reports,
            stopped=stop.status if stop.requested else None,
            unreached=len(files) - len(reports),
        )
        await end_run(engine.db, run_rec, status=outcome["status"], extra=outcome)
    if printer.hidden:
        warn(f"... and {printer.hidden} more bad rows (all stored: inferdeck runs show)")
    summary = run_rec.summary()
    if args.json:
        emit_json(summary.model_dump() | outcome)
    else:
        lat = summary.latency_ms
        status = outcome["status"]
        total = outcome["rows_total"]
        of_total = "" if total is None else f" of {total:,}"
        ended = (
            "" if status == "done" else f" ({status}: {outcome['rows_done']:,}{of_total} rows done)"
        )
        say(
            f"run {summary.run_id}: {summary.ok} ok, {summary.rejected} rejected, "
            f"{summary.failed} failed in {summary.duration_s:.2f} s "
            f"({summary.throughput_per_s:,.0f}/s; p50 {lat.p50:.2f} ms, p99 {lat.p99:.2f} ms)"
            + ended
        )
    if stop.requested:
        return EXIT_TERMINATED if stop.status == "interrupted" else EXIT_INTERRUPTED
    ran_anything = any(r.submitted or r.skipped for r in reports)
    if not ran_anything:
        return EXIT_CANNOT_START
    if summary.rejected or summary.failed or any(r.file_error or r.out_error for r in reports):
        return EXIT_PARTIAL
    return EXIT_OK


async def _run_files(
    engine: Engine,
    args: argparse.Namespace,
    files: list[Path],
    out_path: Path | None,
    run_rec: RunRecorder,
    stop: _Stop,
    printer: _ProblemPrinter,
) -> list[JobReport]:
    """The files' jobs one after another, until the last or until Ctrl+C or `--out` stops them."""
    # Append only when a job resumes; a fresh run starts the file anew.
    known, any_resumable = await _identify(engine, files, stop)
    if stop.requested:
        return []  # nothing ran: `--out` is left as it was
    resuming = not args.restart and any_resumable
    try:
        out = ResultFile(out_path, append=resuming) if out_path else None
    except OSError as exc:
        await end_run(engine.db, run_rec, status="failed")
        raise CommandError(f"--out {args.out}: {exc.strerror or exc}") from exc
    reports: list[JobReport] = []
    try:
        for path in files:
            if stop.requested:
                break
            job = FileJob(
                engine,
                path,
                run=run_rec,
                model=args.model,
                client_id=args.client_id,
                out=out,
                on_problem=printer,
                resume=not args.restart,
                # A lookup holds until a job has run over its file: a file named twice is
                # looked up again by its second job.
                known=known.pop(str(path.resolve()), None),
            )
            stop.job = job
            if stop.requested:  # pressed between the check above and here
                job.cancel(stop.status)
            report = await job.run()
            stop.job = None
            reports.append(report)
            if report.file_error:
                warn(report.file_error)
            elif report.resumed:
                warn(f"{path}: resumed job {report.job_id}; {report.skipped} rows were done")
            if report.out_error:
                warn(f"{report.out_error}; stopped (run the command again to resume)")
                break
    finally:
        if out is not None:
            out.close()
    return reports
