"""SQL the rest of the app uses: row shapes for the writer, and reads for pages and filters.

Writes are statements handed to `GroupCommitWriter`; reads run on the reader connection.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

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

# A request's row, written once, or twice for a request acknowledged before its result (first
# `queued`, then the result). A row whose ID is already stored replaces it only when it is
# - the same request moving on from `queued`/`running` (same run, same creation time), or
# - a request that was accepted, taking the ID from a stored rejection (the caller was refused,
#   so the ID was never acknowledged, and may be sent again with the mistake fixed).
# Anything else is declined (it changes no row): a row that was acknowledged is never
# overwritten, whichever process writes. `requests_not_stored` tells which rows were declined.
UPSERT_REQUEST = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)}) "
    "ON CONFLICT(request_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in REQUEST_COLUMNS[1:])
    + " WHERE (requests.status IN ('queued', 'running') AND requests.run_id IS excluded.run_id"
    " AND requests.created_us = excluded.created_us)"
    " OR (requests.status = 'rejected' AND excluded.status <> 'rejected')"
)
_ID, _RUN, _STATUS, _CREATED = (
    REQUEST_COLUMNS.index(c) for c in ("request_id", "run_id", "status", "created_us")
)
# A request-sized row that `GroupCommitWriter.try_write` writes and removes in one transaction:
# "can a request be stored now" asked of the database itself.
PROBE_REQUEST = (
    "INSERT INTO requests (request_id, source, status, created_us, input) "
    "VALUES (?, 'probe', 'rejected', 0, ?)"
)
UNDO_PROBE_REQUEST = "DELETE FROM requests WHERE request_id = ?"

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


async def request_id_held(conn: aiosqlite.Connection, request_id: str) -> bool:
    """Whether a stored request holds `request_id`: any row but a rejection (see
    `UPSERT_REQUEST`: an accepted request may take a rejected request's ID)."""
    async with conn.execute(
        "SELECT 1 FROM requests WHERE request_id = ? AND status <> 'rejected'", (request_id,)
    ) as cur:
        return await cur.fetchone() is not None


async def requests_not_stored(conn: aiosqlite.Connection, rows: list[Sequence[Any]]) -> set[int]:
    """The positions in `rows` (`UPSERT_REQUEST` rows just run on `conn`) of those it declined:
    the row stored under their ID is another request's (another run, time or status)."""
    stored: dict[str, tuple[Any, ...]] = {}
    ids = list(dict.fromkeys(row[_ID] for row in rows))
    for start in range(0, len(ids), 500):  # well under SQLite's limit on bound parameters
        chunk = ids[start : start + 500]
        async with conn.execute(
            "SELECT request_id, run_id, status, created_us FROM requests "
            f"WHERE request_id IN ({', '.join('?' for _ in chunk)})",
            chunk,
        ) as cur:
            for found in await cur.fetchall():
                stored[found[0]] = tuple(found[1:])
    return {
        i
        for i, row in enumerate(rows)
        if stored.get(row[_ID]) != (row[_RUN], row[_STATUS], row[_CREATED])
    }


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
    # Text that begins a stored request ID finds those requests (by the ID index); any other
    # text is searched, case-insensitively, in request IDs, inputs and errors.
    text: str | None = None


# -- the Requests view's reads ------------------------------------------------------------------
#
# SQLite is left no choice of index: without per-value statistics (no STAT4 in the SQLite that
# Python ships) it cannot tell that `status = 'interrupted'` matches 400 rows and
# `status = 'ok'` 990,000, so `plan_requests` counts (boundedly) and names the index itself.
# Every query below is bounded, measured on 1,000,000 rows by bench/bench_requests.py.

_SORTS = {"time": "created_us", "latency": "latency_us"}
_SORT_INDEXES = {"time": "idx_requests_created", "latency": "idx_requests_latency"}
# Filter column -> its index (migration 5) and whether `latency_us` is in it, next to created_us.
_FILTER_INDEXES = {
    "status": ("idx_requests_status", True),
    "model": ("idx_requests_model", True),
    "client_id": ("idx_requests_client", True),
    "source": ("idx_requests_source", True),
    "run_id": ("idx_requests_run", False),
}
# SQLite's name for the index behind `request_id ... UNIQUE` (the table's only UNIQUE column).
_ID_INDEX = "sqlite_autoindex_requests_1"
_TEXT_TERM = (
    "(request_id LIKE ? ESCAPE '\\' OR input LIKE ? ESCAPE '\\' OR error LIKE ? ESCAPE '\\')"
)

# Rows ranked by latency from a filter's index alone (no table read): ~70 ns a row measured, so
# 200,000 take ~15 ms.
RANK_FROM_INDEX = 200_000
# Rows ranked when each must be read from the table (another filter to check, a request-ID
# prefix): ~1 µs a row.
RANK_WITH_LOOKUPS = 20_000
# Index entries the first bounded scan examines when a filter can only be checked on the row
# itself (text in inputs, a second filter). Measured ~0.4 µs a row walking the time index
# (~8 ms here), ~1.5 µs the latency index (~30 ms); `RequestScan` then sizes later windows from
# the time they take. A text that matches nothing in 1,000,000 rows so costs ~15 queries of
# ~30 ms rather than one of ~400 ms: the table fills as they return, the view shows how far the
# search is, and a new filter never waits behind a long query.
SCAN_WINDOW = 20_000

Strategy = Literal["ordered", "ranked", "window"]


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """How `scan_requests` answers a filter and sort: which index it walks, and how.

    - `ordered`: the index yields rows in the sort order and answers every filter: a page
      stops at its last row.
    - `ranked`: few rows match (within `RANK_FROM_INDEX` or `RANK_WITH_LOOKUPS`): all of them
      are taken from the index and ranked; a page costs what their number costs.
    - `window`: the index yields rows in order, but some filter needs the row itself: each
      query examines a bounded window of index entries and says where the next one resumes.
    """

    sort: str
    descending: bool
    strategy: Strategy
    index: str
    index_terms: tuple[str, ...]  # what the index itself answers
    index_params: tuple[Any, ...]
    row_terms: tuple[str, ...]  # what each row is checked for
    row_params: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class RequestPage:
    """One bounded step through a plan."""

    rows: list[dict[str, Any]]
    # The keyset to pass as `after` for the next step; None once nothing further can match.
    # In a window it may lie past the last row: the window was examined to its end.
    resume: tuple[int, int] | None
    # Index entries this step went through (a window examined to its end), else the rows.
    examined: int


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _count_upto(
    conn: aiosqlite.Connection,
    index: str,
    terms: Sequence[str],
    params: Sequence[Any],
    cap: int,
) -> int:
    """How many entries of `index` match `terms`, counting no further than `cap`."""
    async with conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM requests INDEXED BY {index} "
        f"WHERE {' AND '.join(terms)} LIMIT ?)",
        (*params, cap),
    ) as cur:
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _id_prefix(conn: aiosqlite.Connection, text: str) -> tuple[tuple[str, str], int] | None:
    """The request-ID range that `text` begins, with how many IDs fall in it (counted up to
    `RANK_WITH_LOOKUPS + 1`), or None when `text` begins no stored ID."""
    if any(ch.isspace() for ch in text) or ord(text[-1]) >= 0x10FFFF:
        return None
    # Engine IDs are lower-case UUIDs; a pasted upper-case one should find its request too.
    for prefix in dict.fromkeys((text, text.lower())):
        bounds = (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))
        count = await _count_upto(
            conn, _ID_INDEX, ("request_id >= ?", "request_id < ?"), bounds, RANK_WITH_LOOKUPS + 1
        )
        if count:
            return bounds, count
    return None


@dataclass(slots=True)
class _Group:
    """Rows one index can pick out for one filter (or an ID prefix)."""

    index: str
    terms: list[str]
    params: list[Any]
    size: int
    in_time_order: bool
    holds_latency: bool


async def plan_requests(
    conn: aiosqlite.Connection, where: RequestFilter, *, sort: str = "time", descending: bool = True
) -> RequestPlan:
    """Choose the index and strategy for `where` sorted by `sort` (a few bounded counts)."""
    column = _SORTS[sort]
    groups: dict[str, _Group] = {}
    for name, (index, holds_latency) in _FILTER_INDEXES.items():
        value = getattr(where, name)
        if value is not None:
            groups[name] = _Group(index, [f"{name} = ?"], [value], 0, True, holds_latency)
    text_terms: list[str] = []
    text_params: list[Any] = []
    if where.text:
        found = await _id_prefix(conn, where.text)
        if found is not None:
            (low, high), count = found
            groups["request_id"] = _Group(
                _ID_INDEX, ["request_id >= ?", "request_id < ?"], [low, high], count, False, False
            )
        else:
            text_terms, text_params = [_TEXT_TERM], [_like(where.text)] * 3
    # Sizes matter only where there is a choice to make, or a ranking to bound.
    if len(groups) > 1 or (sort == "latency" and groups):
        for group in groups.values():
            if group.index != _ID_INDEX:
                group.size = await _count_upto(
                    conn, group.index, group.terms, group.params, RANK_FROM_INDEX + 1
                )
    index_terms: list[str] = [f"{column} IS NOT NULL"] if sort == "latency" else []

    def plan(strategy: Strategy, index: str, own: _Group | None) -> RequestPlan:
        others = [g for g in groups.values() if g is not own]
        return RequestPlan(
            sort=sort,
            descending=descending,
            strategy=strategy,
            index=index,
            index_terms=tuple(index_terms + (own.terms if own else [])),
            index_params=tuple(own.params if own else []),
            row_terms=tuple([t for g in others for t in g.terms] + text_terms),
            row_params=tuple([p for g in others for p in g.params] + text_params),
        )

    smallest = min(groups.values(), key=lambda g: g.size, default=None)
    if smallest is not None:
        alone = len(groups) == 1 and not text_terms
        if sort == "latency" or not smallest.in_time_order:
            # Rank all the rows of the smallest group, when there are few enough of them.
            cap = RANK_FROM_INDEX if smallest.holds_latency and alone else RANK_WITH_LOOKUPS
            if smallest.size <= cap:
                return plan("ranked", smallest.index, smallest)
        if sort == "time":
            # The smallest group whose index is in time order; a too-common ID prefix is
            # checked on each row instead.
            ordered = [g for g in groups.values() if g.in_time_order]
            if ordered:
                walk = min(ordered, key=lambda g: g.size)
                return plan("ordered" if alone else "window", walk.index, walk)
    strategy: Strategy = "ordered" if not groups and not text_terms else "window"
    return plan(strategy, _SORT_INDEXES[sort], None)


def _request_row(r: Any) -> dict[str, Any]:
    return {"id": r[0], **dict(zip(REQUEST_COLUMNS, tuple(r)[1:], strict=True))}


async def scan_requests(
    conn: aiosqlite.Connection,
    plan: RequestPlan,
    *,
    after: tuple[int, int] | None = None,
    limit: int = 200,
    window: int = SCAN_WINDOW,
) -> RequestPage:
    """One bounded step of `plan` from the keyset `after` (exclusive): at most `limit` rows,
    and in a window at most `window` index entries examined."""
    column = _SORTS[plan.sort]
    order = "DESC" if plan.descending else "ASC"
    keys = f"({column}, id)"
    order_by = f"ORDER BY {column} {order}, id {order}"
    index_terms = list(plan.index_terms)
    index_params = list(plan.index_params)
    if after is not None:
        index_terms.append(f"{keys} {'<' if plan.descending else '>'} (?, ?)")
        index_params.extend(after)
    terms = index_terms + list(plan.row_terms)
    params = index_params + list(plan.row_params)
    bound: tuple[int, int] | None = None
    examined = 0
    if plan.strategy == "window":
        # Where the window ends: the `window`-th index entry from here, read from the index
        # alone. The rows are then looked for between here and there, that bound included.
        where = f"WHERE {' AND '.join(index_terms)}" if index_terms else ""
        async with conn.execute(
            f"SELECT {column}, id FROM requests INDEXED BY {plan.index} {where} "
            f"{order_by} LIMIT 1 OFFSET ?",
            (*index_params, window - 1),
        ) as cur:
            edge = await cur.fetchone()
        if edge is not None:
            bound = (int(edge[0]), int(edge[1]))
            terms.append(f"{keys} {'>=' if plan.descending else '<='} (?, ?)")
            params.extend(bound)
            examined = window
        else:
            examined = await _count_upto(
                conn, plan.index, index_terms or ["1"], index_params, window
            )
    where = f"WHERE {' AND '.join(terms)}" if terms else ""
    cols = f"id, {', '.join(REQUEST_COLUMNS)}"
    if plan.strategy == "ranked":
        # Rank the IDs from the index, then read only the page's rows from the table.
        sql = (
            f"SELECT {cols} FROM requests WHERE id IN (SELECT id FROM requests "
            f"INDEXED BY {plan.index} {where} {order_by} LIMIT ?) {order_by}"
        )
    else:
        sql = f"SELECT {cols} FROM requests INDEXED BY {plan.index} {where} {order_by} LIMIT ?"
    async with conn.execute(sql, (*params, limit)) as cur:
        rows = [_request_row(r) for r in await cur.fetchall()]
    resume = bound
    if len(rows) == limit:
        resume = (rows[-1][column], rows[-1]["id"])
        examined = len(rows)  # in a window: stopped inside it, so a lower bound
    elif plan.strategy != "window":
        examined = len(rows)
    return RequestPage(rows, resume, examined)


class RequestScan:
    """Steps through a plan from a keyset, each step one bounded query.

    A window is sized from the time the last full one took, so a step takes about `target_s`
    on this machine, warm or cold: the time index reads the table almost in order (~0.4 µs a
    row measured), the latency index at random (~1.5 µs a row).
    """

    MIN_WINDOW = 2_000
    MAX_WINDOW = 500_000

    def __init__(
        self,
        conn: aiosqlite.Connection,
        plan: RequestPlan,
        after: tuple[int, int] | None = None,
        *,
        target_s: float = 0.03,
    ) -> None:
        self.conn = conn
        self.plan = plan
        self.resume = after
        self.done = False
        self.examined = 0  # index entries (or rows) gone through so far
        self.window = SCAN_WINDOW
        self._target_s = target_s

    async def step(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` more rows (maybe none, when a window held no match)."""
        started = time.perf_counter()
        page = await scan_requests(
            self.conn, self.plan, after=self.resume, limit=limit, window=self.window
        )
        elapsed = time.perf_counter() - started
        if page.examined >= self.window and len(page.rows) < limit:
            # Grow by at most 2x a step (one fast window may be luck), shrink at once.
            scale = min(2.0, self._target_s / max(elapsed, 1e-4))
            self.window = int(min(self.MAX_WINDOW, max(self.MIN_WINDOW, self.window * scale)))
        self.examined += page.examined
        self.resume = page.resume
        self.done = page.resume is None
        return page.rows


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
    (sort value, id) as `after` for the next page, so a deep page costs what the first does.

    Runs as many bounded steps as the page needs; a caller on a UI loop that wants to show
    progress (or drop a stale search between steps) steps a `RequestScan` itself.
    """
    scan = RequestScan(
        conn, await plan_requests(conn, where, sort=sort, descending=descending), after
    )
    rows: list[dict[str, Any]] = []
    while not scan.done and len(rows) < limit:
        rows.extend(await scan.step(limit - len(rows)))
    return rows


async def client_ids(conn: aiosqlite.Connection, limit: int = 200) -> list[str]:
    """Distinct client IDs in the history, in order: the client index walked from one value to
    the next (one seek per client, however many requests each has)."""
    async with conn.execute(
        "WITH RECURSIVE seen(v) AS ("
        " SELECT (SELECT min(client_id) FROM requests INDEXED BY idx_requests_client)"
        " UNION ALL SELECT (SELECT min(client_id) FROM requests INDEXED BY idx_requests_client"
        "  WHERE client_id > v) FROM seen WHERE v IS NOT NULL"
        ") SELECT v FROM seen WHERE v IS NOT NULL LIMIT ?",
        (limit,),
    ) as cur:
        return [str(r[0]) for r in await cur.fetchall()]


async def recent_sources(
    conn: aiosqlite.Connection, limit: int = 50, latest: int = 5_000
) -> list[str]:
    """Sources an operator is likely to filter on, newest first: the files of the latest file
    jobs, and the sources of the latest `latest` requests (the form, HTTP callers). Bounded:
    a history of dropped images has one source per image, too many to list them all."""
    async with conn.execute(
        "SELECT source_path, max(updated_us) AS at FROM file_jobs "
        "GROUP BY source_path ORDER BY at DESC LIMIT ?",
        (limit,),
    ) as cur:
        found = [(int(r[1]), str(r[0])) for r in await cur.fetchall()]
    async with conn.execute(
        "SELECT source, max(created_us) FROM (SELECT source, created_us FROM requests "
        "INDEXED BY idx_requests_created ORDER BY created_us DESC LIMIT ?) GROUP BY source",
        (latest,),
    ) as cur:
        found.extend((int(r[1]), str(r[0])) for r in await cur.fetchall())
    found.sort(reverse=True)
    return list(dict.fromkeys(source for _, source in found))[:limit]


async def get_request(conn: aiosqlite.Connection, request_id: str) -> dict[str, Any] | None:
    """One request by its ID, in the shape `page_requests` returns (a trace to open)."""
    async with conn.execute(
        f"SELECT id, {', '.join(REQUEST_COLUMNS)} FROM requests WHERE request_id = ?",
        (request_id,),
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else _request_row(row)


# Remote targets (migration 6). `config` is the target's JSON with no secrets in it.
INSERT_TARGET = (
    "INSERT INTO targets (name, config, created_us, updated_us) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(name) DO NOTHING"
)
UPDATE_TARGET = "UPDATE targets SET config = ?, updated_us = ? WHERE name = ?"
DELETE_TARGET = "DELETE FROM targets WHERE name = ?"
DELETE_TARGET_PROBES = "DELETE FROM probes WHERE target = ?"
INSERT_PROBE = (
    "INSERT INTO probes (target, at_us, kind, status_code, ok, latency_us, error, state) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# Keeps the newest `keep` probes of a target (params: target, keep). Run now and then, not per
# insert: one indexed walk to the cut-off, then a range delete on the same index.
PRUNE_PROBES = (
    "DELETE FROM probes WHERE target = ?1 AND at_us < ("
    "SELECT at_us FROM probes WHERE target = ?1 ORDER BY at_us DESC LIMIT 1 OFFSET ?2 - 1)"
)


@dataclass(frozen=True, slots=True)
class TargetRow:
    name: str
    config: str  # JSON
    created_us: int
    updated_us: int


@dataclass(frozen=True, slots=True)
class ProbeRow:
    target: str
    at_us: int
    kind: str
    status_code: int | None
    ok: bool
    latency_us: int
    error: str | None
    state: str | None


async def fetch_target(conn: aiosqlite.Connection, name: str) -> TargetRow | None:
    async with conn.execute(
        "SELECT name, config, created_us, updated_us FROM targets WHERE name = ?", (name,)
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else TargetRow(str(row[0]), str(row[1]), int(row[2]), int(row[3]))


async def list_targets(conn: aiosqlite.Connection) -> list[TargetRow]:
    async with conn.execute(
        "SELECT name, config, created_us, updated_us FROM targets ORDER BY name"
    ) as cur:
        rows = await cur.fetchall()
    return [TargetRow(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]


async def recent_probes(
    conn: aiosqlite.Connection, target: str, limit: int = 1000, since_us: int | None = None
) -> list[ProbeRow]:
    """A target's newest probes (at most `limit`, optionally from `since_us` on), oldest first."""
    async with conn.execute(
        "SELECT target, at_us, kind, status_code, ok, latency_us, error, state FROM probes "
        "WHERE target = ? AND at_us >= ? ORDER BY at_us DESC, id DESC LIMIT ?",
        (target, since_us if since_us is not None else 0, limit),
    ) as cur:
        rows = list(await cur.fetchall())
    rows.reverse()
    return [
        ProbeRow(str(r[0]), int(r[1]), str(r[2]), r[3], bool(r[4]), int(r[5]), r[6], r[7])
        for r in rows
    ]


async def probe_count(conn: aiosqlite.Connection, target: str) -> int:
    async with conn.execute("SELECT count(*) FROM probes WHERE target = ?", (target,)) as cur:
        row = await cur.fetchone()
    return 0 if row is None else int(row[0])
