"""The Requests view's reads: filtered, sorted pages of `requests` by keyset, each step one
bounded query whose index is chosen here (`plan_requests`), and the filters' suggestions.

The tunables (`RANK_FROM_INDEX`, `RANK_WITH_LOOKUPS`, `SCAN_WINDOW`) are read from this module
at run time; they are not re-exported by `storage.queries`, so set them here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiosqlite

from storage.queries.requests import REQUEST_COLUMNS, request_row


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
        rows = [request_row(r) for r in await cur.fetchall()]
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
