"""What a file job tells its caller: each bad row (`RowProblem`), the job's counts and status
(`JobReport`), and a run's status over its jobs (`jobs_outcome`).

A job ends with a status that says what happened (`JOB_STATUSES`), the rows it stored and the
rows the file has: a cancelled or failed job is never stored as `done`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# How a job (and a run of jobs) ended: read to the end; stopped by the user (Cancel, Ctrl+C);
# stopped by the program ending under it (the window closed, rows left without a stored result);
# stopped by an error (a file that cannot be read, a failure mid-file).
JOB_STATUSES = ("done", "cancelled", "interrupted", "failed")


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One rejected or failed row, as `FileJob` reports it to `on_problem` (the `predict`
    command prints it, the app's drop panel lists it)."""

    row: int
    line: int | None
    field: str | None
    message: str
    more: int = 0  # further problems in the same row (all are stored)
    request_id: str | None = None  # the stored request that holds the row and its problems

    def describe(self, path: Path) -> str:
        where = f"line {self.line}" if self.line is not None else f"row {self.row}"
        if self.line is not None and self.line != self.row:
            where = f"row {self.row} (line {self.line})"
        field = f" field '{self.field}'" if self.field else ""
        more = f" (+{self.more} more in this row)" if self.more else ""
        return f"{path}: {where}{field}: {self.message}{more}"


@dataclass
class JobReport:
    """One file job's counts, errors and status; `FileJob` fills it in, its caller (the
    `predict` command, the app's drop runner) reads it during and after the job."""

    path: Path
    format: str | None = None
    model: str | None = None  # the model its rows run on (a resumed job keeps its own)
    job_id: int | None = None
    resumed: bool = False
    skipped: int = 0  # rows already done by an earlier, interrupted attempt
    submitted: int = 0
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    unstored: int = 0  # of `failed`: results whose commit failed, so they have no row
    problem_count: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    file_error: str | None = None
    out_error: str | None = None
    stopped: str | None = None  # "cancelled" or "interrupted" when the job was stopped early
    rows_total: int | None = None  # rows the file has; None when it could not be counted

    @property
    def done(self) -> int:
        return self.ok + self.rejected + self.failed

    @property
    def cancelled(self) -> bool:
        return self.stopped is not None

    @property
    def rows_done(self) -> int:
        """Rows with a committed result: from earlier attempts and from this one."""
        return self.skipped + self.done - self.unstored

    @property
    def status(self) -> str:
        if self.stopped is not None:
            return self.stopped
        if self.file_error is not None or self.out_error is not None:
            return "failed"
        if self.unstored:
            return "interrupted"  # rows without a committed row: running the file again does them
        return "done"


def jobs_outcome(
    reports: list[JobReport], stopped: str | None = None, unreached: int = 0
) -> dict[str, Any]:
    """A run's `status`, `rows_done` and `rows_total` over its file jobs (for its summary).

    The run is what stopped it (`stopped`: the user or the program ending), else `failed` when
    any file failed, else `interrupted` when any has rows left without a result, else `done`.
    `rows_total` is None when a file was not reached or could not be counted."""
    statuses = {r.status for r in reports}
    status = stopped or next(
        (s for s in ("cancelled", "failed", "interrupted") if s in statuses), "done"
    )
    totals = [r.rows_total for r in reports]
    known = unreached == 0 and all(t is not None for t in totals)
    errors = [e for r in reports for e in (r.file_error, r.out_error) if e]
    return {
        "status": status,
        "rows_done": sum(r.rows_done for r in reports),
        "rows_total": sum(t for t in totals if t is not None) if known else None,
        "errors": errors[:20],
    }
