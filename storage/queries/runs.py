"""The `runs` table: starting and finishing a run, finding runs by ID prefix, a run's detail
(its requests counted by status, its file jobs) and its requests in order.

Writes are statements handed to `GroupCommitWriter`; reads run on the reader connection.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage.queries.jobs import FileJobRow, run_file_jobs
from storage.queries.requests import REQUEST_COLUMNS

INSERT_RUN = (
    "INSERT INTO runs (run_id, kind, status, config, started_us, owner_pid) "
    "VALUES (?, ?, 'running', ?, ?, ?)"
)
# The last parameter's JSON object is merged into the run's config (what it learnt running).
FINISH_RUN = (
    "UPDATE runs SET status = ?, ended_us = ?, summary = ?, histogram = ?, "
    "config = json_patch(coalesce(config, '{}'), ?) WHERE run_id = ?"
)


@dataclass(frozen=True, slots=True)
class RunRow:
    """One `runs` row, JSON decoded: what the Runs view, `runs`/`export` and Compare read."""

    run_id: str
    kind: str
    status: str
    config: dict[str, Any]
    started_us: int
    ended_us: int | None
    summary: dict[str, Any] | None
    histogram: bytes | None


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


async def find_runs(conn: aiosqlite.Connection, prefix: str, limit: int = 10) -> list[RunRow]:
    """Runs whose ID begins with `prefix`, oldest first, at most `limit` of them.

    The prefix is compared as text, never as a pattern: `%` or `_` typed (or pasted) as an ID
    must match nothing rather than any run. A pasted upper-case ID finds its lower-case run.
    """
    if not prefix:
        return []
    found: list[RunRow] = []
    for text in dict.fromkeys((prefix, prefix.lower())):
        # `run_id >= ?` starts the walk at the prefix in the primary-key index; substr() keeps
        # exactly the IDs that begin with it.
        async with conn.execute(
            f"SELECT {_RUN_COLS} FROM runs WHERE run_id >= ? AND substr(run_id, 1, ?) = ? "
            "ORDER BY started_us, run_id LIMIT ?",
            (text, len(text), text, limit),
        ) as cur:
            found = [_run(tuple(r)) for r in await cur.fetchall()]
        if found:
            break
    return found


async def get_run(conn: aiosqlite.Connection, run_id: str) -> RunRow | None:
    """A run by its full ID or a unique prefix of it (as `git` takes commits); None when no
    run or more than one begins with it (`find_runs` says which)."""
    rows = await find_runs(conn, run_id, limit=2)
    return rows[0] if len(rows) == 1 else None


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


@dataclass(frozen=True, slots=True)
class RunDetail:
    """A run, its requests counted by status and its file jobs, for `runs show` and Runs view."""

    run: RunRow
    status_counts: dict[str, int]
    file_jobs: list[FileJobRow]


async def run_detail(conn: aiosqlite.Connection, run: RunRow) -> RunDetail:
    """Everything stored about `run` beside its own row (two reads on `conn`)."""
    counts = await run_status_counts(conn, run.run_id)
    jobs = await run_file_jobs(conn, run.run_id)
    return RunDetail(run, counts, jobs)
