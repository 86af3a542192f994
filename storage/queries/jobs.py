"""The `file_jobs` table: a dropped or predicted file's job, its progress and resumption.

Writes are statements handed to `GroupCommitWriter`; reads run on the reader connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage.queries.requests import REQUEST_COLUMNS

INSERT_FILE_JOB = (
    "INSERT INTO file_jobs (job_id, run_id, source_path, size_bytes, sha256, format, model, "
    "status, created_us, updated_us) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)"
)
ADD_FILE_JOB_PROGRESS = (
    "UPDATE file_jobs SET rows_done = rows_done + ?, updated_us = ? WHERE job_id = ?"
)
CLAIM_FILE_JOB = (
    "UPDATE file_jobs SET status = 'running', run_id = ?, rows_done = ?, updated_us = ? "
    "WHERE job_id = ?"
)
SUPERSEDE_FILE_JOB = "UPDATE file_jobs SET status = 'superseded', updated_us = ? WHERE job_id = ?"
FINISH_FILE_JOB = (
    "UPDATE file_jobs SET status = ?, rows_total = ?, rows_done = ?, updated_us = ? "
    "WHERE job_id = ?"
)


@dataclass(frozen=True, slots=True)
class FileJobRow:
    """One `file_jobs` row: what `FileJob`, `runs show` and the Runs view read of a file run."""

    job_id: int
    run_id: str
    source_path: str
    size_bytes: int
    sha256: str
    format: str
    model: str | None
    status: str
    rows_done: int
    rows_total: int | None


async def next_file_job_id(conn: aiosqlite.Connection) -> int:
    async with conn.execute("SELECT coalesce(max(job_id), 0) + 1 FROM file_jobs") as cur:
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def _file_job(row: aiosqlite.Row | tuple[Any, ...]) -> FileJobRow:
    return FileJobRow(*row)


_FILE_JOB_COLS = (
    "job_id, run_id, source_path, size_bytes, sha256, format, model, status, rows_done, rows_total"
)


async def find_resumable_job(
    conn: aiosqlite.Connection, source_path: str, sha256: str
) -> FileJobRow | None:
    """The newest unfinished job over the same file content at the same path (stopped early, or
    failed after some rows). A `running` job is not one: either its process is alive, or
    opening the database already marked it `interrupted`."""
    async with conn.execute(
        f"SELECT {_FILE_JOB_COLS} FROM file_jobs WHERE sha256 = ? AND source_path = ? "
        "AND (status IN ('interrupted', 'cancelled') OR (status = 'failed' AND rows_done > 0)) "
        "ORDER BY job_id DESC LIMIT 1",
        (sha256, source_path),
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else _file_job(tuple(row))


async def find_finished_job(
    conn: aiosqlite.Connection, source_path: str, sha256: str
) -> FileJobRow | None:
    """The newest job that ran the same file content at the same path to its end, if any:
    running it again would redo every row (the app asks first)."""
    async with conn.execute(
        f"SELECT {_FILE_JOB_COLS} FROM file_jobs WHERE sha256 = ? AND source_path = ? "
        "AND status = 'done' ORDER BY job_id DESC LIMIT 1",
        (sha256, source_path),
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else _file_job(tuple(row))


async def latest_file_job(conn: aiosqlite.Connection) -> FileJobRow | None:
    """The newest file job of all (the app offers to resume it when it was stopped)."""
    async with conn.execute(
        f"SELECT {_FILE_JOB_COLS} FROM file_jobs ORDER BY job_id DESC LIMIT 1"
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else _file_job(tuple(row))


async def job_status_counts(conn: aiosqlite.Connection, job_id: int) -> dict[str, int]:
    """A job's committed rows by status, across every attempt at it (a resumed job's rows from
    before the resume included): ok, rejected, failed."""
    async with conn.execute(
        "SELECT status, count(*) FROM requests WHERE job_id = ? GROUP BY status", (job_id,)
    ) as cur:
        return {str(s): int(n) for s, n in await cur.fetchall()}


async def done_rows(conn: aiosqlite.Connection, job_id: int) -> set[int]:
    """Row numbers of a job that already have a committed, final row (a row that failed in
    inference was processed too: resuming does not run it again)."""
    async with conn.execute(
        "SELECT source_row FROM requests WHERE job_id = ? "
        "AND status IN ('ok', 'rejected', 'failed')",
        (job_id,),
    ) as cur:
        return {int(r[0]) for r in await cur.fetchall()}


async def job_results(
    conn: aiosqlite.Connection, job_id: int, rows: set[int] | None = None
) -> list[dict[str, Any]]:
    """Committed rows of a job, in file order, as dicts (for replaying results)."""
    cols = ", ".join(REQUEST_COLUMNS)
    async with conn.execute(
        f"SELECT {cols} FROM requests WHERE job_id = ? ORDER BY source_row", (job_id,)
    ) as cur:
        found = [dict(zip(REQUEST_COLUMNS, r, strict=True)) for r in await cur.fetchall()]
    if rows is None:
        return found
    return [r for r in found if r["source_row"] in rows]


async def run_file_jobs(conn: aiosqlite.Connection, run_id: str) -> list[FileJobRow]:
    async with conn.execute(
        f"SELECT {_FILE_JOB_COLS} FROM file_jobs WHERE run_id = ? ORDER BY job_id", (run_id,)
    ) as cur:
        return [_file_job(tuple(r)) for r in await cur.fetchall()]
