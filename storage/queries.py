"""SQL the rest of the app uses: row shapes for the writer, and reads for pages and filters.

Writes are statements handed to `GroupCommitWriter`; reads run on the reader connection.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiosqlite

REQUEST_COLUMNS = (
    "request_id",
    "run_id",
    "job_id",
    "source_row",
    "source",
    "target",
    "model",
    "client_id",
    "status",
    "created_us",
    "finished_us",
    "latency_us",
    "input",
    "metadata",
    "output",
    "error",
    "spans",
)

# A request written twice (first `queued`, then its result) keeps one row: the second write wins.
UPSERT_REQUEST = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)}) "
    "ON CONFLICT(request_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in REQUEST_COLUMNS[1:])
)

INSERT_RUN = (
    "INSERT INTO runs (run_id, kind, status, config, started_us, owner_pid) "
    "VALUES (?, ?, 'running', ?, ?, ?)"
)
FINISH_RUN = "UPDATE runs SET status = ?, ended_us = ?, summary = ?, histogram = ? WHERE run_id = ?"
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
UPSERT_CLIENT = (
    "INSERT INTO clients (client_id, display_name, tier, enabled, default_model) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(client_id) DO UPDATE SET "
    "display_name = excluded.display_name, "
    "tier = excluded.tier, enabled = excluded.enabled, default_model = excluded.default_model"
)


@dataclass(frozen=True, slots=True)
class ClientRow:
    client_id: str
    display_name: str
    tier: str
    enabled: bool
    default_model: str | None


@dataclass(frozen=True, slots=True)
class FileJobRow:
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


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    kind: str
    status: str
    config: dict[str, Any]
    started_us: int
    ended_us: int | None
    summary: dict[str, Any] | None
    histogram: bytes | None


async def fetch_client(conn: aiosqlite.Connection, client_id: str) -> ClientRow | None:
    async with conn.execute(
        "SELECT client_id, display_name, tier, enabled, default_model FROM clients "
        "WHERE client_id = ?",
        (client_id,),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return ClientRow(row[0], row[1], row[2], bool(row[3]), row[4])


async def request_exists(conn: aiosqlite.Connection, request_id: str) -> bool:
    async with conn.execute("SELECT 1 FROM requests WHERE request_id = ?", (request_id,)) as cur:
        return await cur.fetchone() is not None


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
    """The newest unfinished job over the same file content at the same path. A `running` job
    is not one: either its process is alive, or opening the database already marked it
    `interrupted`."""
    async with conn.execute(
        f"SELECT {_FILE_JOB_COLS} FROM file_jobs WHERE sha256 = ? AND source_path = ? "
        "AND status IN ('interrupted', 'cancelled') ORDER BY job_id DESC LIMIT 1",
        (sha256, source_path),
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else _file_job(tuple(row))


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


def _run(row: tuple[Any, ...]) -> RunRow:
    return RunRow(
        run_id=row[0],
        kind=row[1],
        status=row[2],
        config=json.loads(row[3] or "{}"),
        started_us=row[4],
        ended_us=row[5],
        summary=json.loads(row[6]) if row[6] else None,
        histogram=row[7],
    )


_RUN_COLS = "run_id, kind, status, config, started_us, ended_us, summary, histogram"


async def list_runs(conn: aiosqlite.Connection, limit: int = 50) -> list[RunRow]:
    async with conn.execute(
        f"SELECT {_RUN_COLS} FROM runs ORDER BY started_us DESC LIMIT ?", (limit,)
    ) as cur:
        return [_run(tuple(r)) for r in await cur.fetchall()]


async def get_run(conn: aiosqlite.Connection, run_id: str) -> RunRow | None:
    """A run by its full ID or a unique prefix of it (as `git` takes commits)."""
    async with conn.execute(
        f"SELECT {_RUN_COLS} FROM runs WHERE run_id LIKE ? || '%' ORDER BY started_us LIMIT 2",
        (run_id,),
    ) as cur:
        rows = list(await cur.fetchall())
    return _run(tuple(rows[0])) if len(rows) == 1 else None


async def run_status_counts(conn: aiosqlite.Connection, run_id: str) -> dict[str, int]:
    async with conn.execute(
        "SELECT status, count(*) FROM requests WHERE run_id = ? GROUP BY status", (run_id,)
    ) as cur:
        return {str(s): int(n) for s, n in await cur.fetchall()}


async def iter_run_requests(
    conn: aiosqlite.Connection, run_id: str, page: int = 2000
) -> AsyncIterator[dict[str, Any]]:
    """Every request of a run in creation order, paged by (created_us, id) along the run index
    so memory stays flat however large the run."""
    cols = ", ".join(REQUEST_COLUMNS)
    last_created, last_id = -1, 0
    while True:
        async with conn.execute(
            f"SELECT created_us, id, {cols} FROM requests WHERE run_id = ? "
            "AND (created_us, id) > (?, ?) ORDER BY created_us, id LIMIT ?",
            (run_id, last_created, last_id, page),
        ) as cur:
            rows = list(await cur.fetchall())
        if not rows:
            return
        for r in rows:
            yield dict(zip(REQUEST_COLUMNS, tuple(r)[2:], strict=True))
        last_created, last_id = int(rows[-1][0]), int(rows[-1][1])


async def run_file_jobs(conn: aiosqlite.Connection, run_id: str) -> list[FileJobRow]:
    async with conn.execute(
        f"SELECT {_FILE_JOB_COLS} FROM file_jobs WHERE run_id = ? ORDER BY job_id", (run_id,)
    ) as cur:
        return [_file_job(tuple(r)) for r in await cur.fetchall()]


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """What the history views filter on; None means "any"."""

    status: str | None = None
    model: str | None = None
    source: str | None = None
    client_id: str | None = None
    run_id: str | None = None
    text: str | None = None  # matched against the request ID, input and error


_SORTS = {"time": "created_us", "latency": "latency_us"}


async def page_requests(
    conn: aiosqlite.Connection,
    where: RequestFilter,
    *,
    sort: str = "time",
    descending: bool = True,
    after: tuple[int, int] | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """One page of requests, newest (or slowest) first, by keyset: pass the last row's
    (sort value, id) as `after` for the next page, so a deep page costs what the first does."""
    column = _SORTS[sort]
    clauses: list[str] = []
    params: list[Any] = []
    for name in ("status", "model", "source", "client_id", "run_id"):
        value = getattr(where, name)
        if value is not None:
            clauses.append(f"{name} = ?")
            params.append(value)
    if where.text:
        clauses.append("(request_id LIKE ? OR input LIKE ? OR error LIKE ?)")
        params.extend([f"%{where.text}%"] * 3)
    if sort == "latency":
        clauses.append("latency_us IS NOT NULL")
    if after is not None:
        op = "<" if descending else ">"
        clauses.append(f"({column}, id) {op} (?, ?)")
        params.extend(after)
    order = "DESC" if descending else "ASC"
    sql = (
        f"SELECT id, {', '.join(REQUEST_COLUMNS)} FROM requests"
        + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
        + f" ORDER BY {column} {order}, id {order} LIMIT ?"
    )
    params.append(limit)
    async with conn.execute(sql, params) as cur:
        rows = await cur.fetchall()
    return [{"id": r[0], **dict(zip(REQUEST_COLUMNS, tuple(r)[1:], strict=True))} for r in rows]
