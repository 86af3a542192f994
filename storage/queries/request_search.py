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
    # text is searched, case-insensitively, in request IDs, inputs, labels and errors (and in
    # outputs when it is JSON-shaped).
    text: str | None = None
    # Where the requests went: "local" (the engine in this app or `inferdeck serve`) or a remote
    # target's name: the side pane's scope.
    target: str | None = None


# -- the Requests view's reads ------------------------------------------------------------------
#
# SQLite is left no choice of index: without per-value statistics (no STAT4 in the SQLite that
# Python ships) it cannot tell that `status = 'interrupted'` matches 400 rows and
# `status = 'ok'` 990,000, so `plan_requests` counts (boundedly) and names the index itself.
# Every query below is bounded, measured on 1,000,000 rows by bench/bench_requests.py.

# Each sort's key (before `id`, which breaks ties) and the index that yields rows in its order.
# Model and label sort by values that are never NULL (migration 7), so a keyset compares.
_SORTS: dict[str, tuple[str, ...]] = {
    "time": ("created_us",),
    "latency": ("latency_us",),
    "status": ("status", "created_us"),
    "source": ("source", "created_us"),
    "model": ("ifnull(model, '')", "created_us"),
    "label": ("label", "created_us"),
}
SORTS = tuple(_SORTS)
_SORT_INDEXES = {
    "time": "idx_requests_created",
    "latency": "idx_requests_latency",
    "status": "idx_requests_status",
    "source": "idx_requests_source",
    "model": "idx_requests_model_sort",
    "label": "idx_requests_label",
}
# A filter on the sorted column is answered by the sort's index itself.
_SORT_FILTERS = {"status": "status", "source": "source"}
# Filter column -> its index (migration 5) and whether `latency_us` is in it, next to created_us.
_FILTER_INDEXES = {
    "status": ("idx_requests_status", True),
    "model": ("idx_requests_model", True),
    "client_id": ("idx_requests_client", True),
    "source": ("idx_requests_source", True),
    "run_id": ("idx_requests_run", False),
    "target": ("idx_requests_target", False),
}
# SQLite's name for the index behind `request_id ... UNIQUE` (the table's only UNIQUE column).
_ID_INDEX = "sqlite_autoindex_requests_1"
_TEXT_COLUMNS = ("request_id", "input", "label", "output", "error")

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
    # The keyset (the sort's keys, then id) to pass as `after` for the next step; None once
    # nothing further can match. In a window it may lie past the last row: the window was
    # examined to its end.
    resume: tuple[Any, ...] | None
    # Index entries this step went through (a window examined to its end), else the rows.
    examined: int


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def json_spellings(text: str) -> list[str]:
    """`text` as typed, and, when it holds JSON (a quote), as each writer of stored JSON spells
    it: compact (`{"a":1,"b":2}`, the engine's accepted inputs and outputs) and with a space
    after each colon and comma (`{"a": 1, "b": 2}`, rejected rows' raw bodies and the Trace
    view). What the Trace shows is then found whichever way the row was written. Whitespace
    inside quoted strings is kept."""
    if '"' not in text:
        return [text]
    compact: list[str] = []
    spaced: list[str] = []
    quoted = escaped = False
    for ch in text:
        if quoted:
            compact.append(ch)
            spaced.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch.isspace():
            continue
        else:
            compact.append(ch)
            spaced.append(ch + " " if ch in ":," else ch)
            quoted = ch == '"'
    spellings = [text, "".join(compact), "".join(spaced).rstrip()]
    return list(dict.fromkeys(spellings))


def _text_term(text: str) -> tuple[str, list[str]]:
    """The SQL that finds `text` (case-insensitively) in a row's ID, input, label or error,
    and in its whole output when `text` is JSON-shaped (a quote or a colon).

    Plain words look at the label, not the output: every output lists every class's score,
    so "virginica" would match each classified row instead of the rows labelled virginica."""
    terms = ["request_id LIKE ? ESCAPE '\\'"]
    params = [_like(text)]
    json_shaped = '"' in text or ":" in text
    columns = [c for c in _TEXT_COLUMNS[1:] if c != "output" or json_shaped]
    for spelling in json_spellings(text):
        for column in columns:
            terms.append(f"{column} LIKE ? ESCAPE '\\'")
            params.append(_like(spelling))
    return f"({' OR '.join(terms)})", params


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
    column = _SORTS[sort][0]
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
            term, params = _text_term(where.text)
            text_terms, text_params = [term], list(params)
    if sort not in ("time", "latency"):
        return _plan_by_column(sort, descending, groups, text_terms, text_params)
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


def _plan_by_column(
    sort: str,
    descending: bool,
    groups: dict[str, _Group],
    text_terms: list[str],
    text_params: list[Any],
) -> RequestPlan:
    """A sort by status, source, model or label walks that sort's index (time within a value):
    a filter on the sorted column narrows the walk itself, any other is checked on each row in
    bounded windows. A request-ID prefix (few rows, counted) is ranked instead."""
    found = groups.get("request_id")
    if found is not None and found.size <= RANK_WITH_LOOKUPS:
        own: _Group | None = found
        strategy: Strategy = "ranked"
        index = found.index
    else:
        own = groups.get(_SORT_FILTERS.get(sort, ""))
        index = _SORT_INDEXES[sort]
        alone = len(groups) == (1 if own else 0) and not text_terms
        strategy = "ordered" if alone else "window"
    others = [g for g in groups.values() if g is not own]
    return RequestPlan(
        sort=sort,
        descending=descending,
        strategy=strategy,
        index=index,
        index_terms=tuple(own.terms if own else []),
        index_params=tuple(own.params if own else []),
        row_terms=tuple([t for g in others for t in g.terms] + text_terms),
        row_params=tuple([p for g in others for p in g.params] + text_params),
    )


def _after_terms(keys: Sequence[str], descending: bool) -> list[str]:
    """Rows past a keyset `(keys..., id)`: the row-value comparison, and the first key alone
    (the comparison is not matched to an expression index; the plain bound is)."""
    op = "<" if descending else ">"
    terms = [f"({', '.join((*keys, 'id'))}) {op} ({', '.join('?' for _ in (*keys, 'id'))})"]
    if len(keys) > 1:
        terms.insert(0, f"{keys[0]} {op}= ?")
    return terms


def _after_params(keys: Sequence[str], after: Sequence[Any]) -> list[Any]:
    return ([after[0]] if len(keys) > 1 else []) + list(after)


async def scan_requests(
    conn: aiosqlite.Connection,
    plan: RequestPlan,
    *,
    after: tuple[Any, ...] | None = None,
    limit: int = 200,
    window: int = SCAN_WINDOW,
) -> RequestPage:
    """One bounded step of `plan` from the keyset `after` (exclusive): at most `limit` rows,
    and in a window at most `window` index entries examined."""
    keys = _SORTS[plan.sort]
    order = "DESC" if plan.descending else "ASC"
    key_list = ", ".join((*keys, "id"))
    order_by = "ORDER BY " + ", ".join(f"{k} {order}" for k in (*keys, "id"))
    index_terms = list(plan.index_terms)
    index_params = list(plan.index_params)
    if after is not None:
        index_terms.extend(_after_terms(keys, plan.descending))
        index_params.extend(_after_params(keys, after))
    terms = index_terms + list(plan.row_terms)
    params = index_params + list(plan.row_params)
    bound: tuple[Any, ...] | None = None
    examined = 0
    if plan.strategy == "window":
        # Where the window ends: the `window`-th index entry from here, read from the index
        # alone. The rows are then looked for between here and there, that bound included.
        where = f"WHERE {' AND '.join(index_terms)}" if index_terms else ""
        async with conn.execute(
            f"SELECT {key_list} FROM requests INDEXED BY {plan.index} {where} "
            f"{order_by} LIMIT 1 OFFSET ?",
            (*index_params, window - 1),
        ) as cur:
            edge = await cur.fetchone()
        if edge is not None:
            bound = tuple(edge)
            op = ">=" if plan.descending else "<="
            terms.append(f"({key_list}) {op} ({', '.join('?' for _ in bound)})")
            params.extend(bound)
            examined = window
        else:
            examined = await _count_upto(
                conn, plan.index, index_terms or ["1"], index_params, window
            )
    where = f"WHERE {' AND '.join(terms)}" if terms else ""
    # The row's sort keys come after its columns: the keyset to resume from.
    cols = f"id, {', '.join(REQUEST_COLUMNS)}, {key_list}"
    if plan.strategy == "ranked":
        # Rank the IDs from the index, then read only the page's rows from the table.
        sql = (
            f"SELECT {cols} FROM requests WHERE id IN (SELECT id FROM requests "
            f"INDEXED BY {plan.index} {where} {order_by} LIMIT ?) {order_by}"
        )
    else:
        sql = f"SELECT {cols} FROM requests INDEXED BY {plan.index} {where} {order_by} LIMIT ?"
    width = 1 + len(REQUEST_COLUMNS)
    async with conn.execute(sql, (*params, limit)) as cur:
        found = list(await cur.fetchall())
    rows = [request_row(r[:width]) for r in found]
    resume = bound
    if len(rows) == limit:
        resume = tuple(found[-1][width:])
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
        after: tuple[Any, ...] | None = None,
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


# Matches counted at most: past it the view says "10,000+" (a count is one more bounded walk).
COUNT_CAP = 10_000


class RequestCount:
    """Counts a plan's matches up to `cap`, each step one bounded query, so the view can say
    "1,234 matches" without a filter ever waiting behind a count: an index's own entries
    (`ordered`, `ranked`) are counted in one query of at most `cap` entries; a filter checked
    on each row is counted a window of index entries at a time, sized as `RequestScan` sizes
    its windows."""

    def __init__(
        self, conn: aiosqlite.Connection, plan: RequestPlan, *, cap: int | None = None
    ) -> None:
        self.conn = conn
        self.plan = plan
        self.cap = COUNT_CAP if cap is None else cap  # read at run time: a test may lower it
        self.count = 0
        self.done = False
        self.resume: tuple[Any, ...] | None = None
        self.window = SCAN_WINDOW
        self._target_s = 0.03

    @property
    def capped(self) -> bool:
        """Whether more than `cap` match (the count stopped there)."""
        return self.count > self.cap

    async def step(self) -> None:
        plan = self.plan
        left = self.cap + 1 - self.count
        terms = [*plan.index_terms, *plan.row_terms]
        params = [*plan.index_params, *plan.row_params]
        if plan.strategy != "window":
            self.count += await _count_upto(self.conn, plan.index, terms or ["1"], params, left)
            self.done = True
            return
        started = time.perf_counter()
        keys = (*_SORTS[plan.sort], "id")
        order = "DESC" if plan.descending else "ASC"
        order_by = "ORDER BY " + ", ".join(f"{k} {order}" for k in keys)
        index_terms, index_params = list(plan.index_terms), list(plan.index_params)
        if self.resume is not None:
            index_terms.extend(_after_terms(keys[:-1], plan.descending))
            index_params.extend(_after_params(keys[:-1], self.resume))
        where = f"WHERE {' AND '.join(index_terms)}" if index_terms else ""
        async with self.conn.execute(
            f"SELECT {', '.join(keys)} FROM requests INDEXED BY {plan.index} {where} "
            f"{order_by} LIMIT 1 OFFSET ?",
            (*index_params, self.window - 1),
        ) as cur:
            edge = await cur.fetchone()
        terms = index_terms + list(plan.row_terms)
        params = index_params + list(plan.row_params)
        if edge is not None:
            op = ">=" if plan.descending else "<="
            terms.append(f"({', '.join(keys)}) {op} ({', '.join('?' for _ in keys)})")
            params.extend(edge)
        self.count += await _count_upto(self.conn, plan.index, terms or ["1"], params, left)
        self.resume = None if edge is None else tuple(edge)
        self.done = edge is None or self.count > self.cap
        elapsed = time.perf_counter() - started
        scale = min(2.0, self._target_s / max(elapsed, 1e-4))
        self.window = int(
            min(RequestScan.MAX_WINDOW, max(RequestScan.MIN_WINDOW, self.window * scale))
        )


def _filter_terms(where: RequestFilter) -> tuple[list[str], list[Any]]:
    """Every filter of `where` as terms checked on the row (the live tail's few new rows)."""
    terms: list[str] = []
    params: list[Any] = []
    for name in _FILTER_INDEXES:
        value = getattr(where, name)
        if value is not None:
            terms.append(f"{name} = ?")
            params.append(value)
    if where.text:
        term, text_params = _text_term(where.text)
        terms.append(term)
        params.extend(text_params)
    return terms, params


async def data_version(conn: aiosqlite.Connection) -> int:
    """SQLite's `PRAGMA data_version`: it changes when another connection (the writer, another
    process) commits, and costs no read of the file: the live tail's "anything new?"."""
    async with conn.execute("PRAGMA data_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def latest_request_id(conn: aiosqlite.Connection) -> int:
    """The newest stored row's `id` (0 when there is none): one seek on the table's key."""
    async with conn.execute("SELECT ifnull(max(id), 0) FROM requests") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


# New rows the live tail reads at most in one step; a bigger gap reloads the first page.
TAIL_SPAN = 20_000


async def tail_requests(
    conn: aiosqlite.Connection, where: RequestFilter, after_id: int, *, limit: int = 200
) -> list[dict[str, Any]]:
    """Rows stored after `after_id` that match `where`, newest (by id) first, at most `limit`:
    a range of the table's key, so it costs what the new rows cost, whatever the history."""
    terms, params = _filter_terms(where)
    where_sql = " AND ".join(["id > ?", *terms])
    async with conn.execute(
        f"SELECT id, {', '.join(REQUEST_COLUMNS)} FROM requests NOT INDEXED "
        f"WHERE {where_sql} ORDER BY id DESC LIMIT ?",
        (after_id, *params, limit),
    ) as cur:
        return [request_row(r) for r in await cur.fetchall()]


async def requests_by_id(conn: aiosqlite.Connection, ids: Sequence[int]) -> list[dict[str, Any]]:
    """Rows by their `id` (the table's pending rows re-read: `queued` moving on to a result)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        async with conn.execute(
            f"SELECT id, {', '.join(REQUEST_COLUMNS)} FROM requests "
            f"WHERE id IN ({', '.join('?' for _ in chunk)})",
            chunk,
        ) as cur:
            found.extend(request_row(r) for r in await cur.fetchall())
    return found


async def page_requests(
    conn: aiosqlite.Connection,
    where: RequestFilter,
    *,
    sort: str = "time",
    descending: bool = True,
    after: tuple[Any, ...] | None = None,
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
