"""History reads: filtered, sorted pages by keyset, on a real SQLite file with many rows."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from storage import migrations, open_database, queries
from storage.queries import (
    REQUEST_COLUMNS,
    RequestFilter,
    RequestScan,
    client_ids,
    page_requests,
    plan_requests,
    recent_sources,
    request_search,
    scan_requests,
)

ROWS = 50_000


def _fill(path: Path) -> None:
    rng = random.Random(3)
    statuses = ["ok"] * 8 + ["rejected", "failed"]
    rows = []
    for i in range(ROWS):
        row = dict.fromkeys(REQUEST_COLUMNS)
        row.update(
            request_id=f"req-{i:06d}",
            run_id=f"run-{i % 5}",
            source="form" if i % 7 == 0 else "file:a.jsonl",
            target="local",
            model="iris" if i % 3 else "digits",
            client_id="gui" if i % 7 == 0 else "cli",
            status=rng.choice(statuses),
            created_us=1_000_000 + i * 10,
            latency_us=rng.randint(100, 100_000),
            input=f'{{"sepal_length": {i % 100}}}',
            error="sepal_width: Field required" if i % 10 == 9 else None,
        )
        rows.append(tuple(row[c] for c in REQUEST_COLUMNS))
    with sqlite3.connect(path) as conn:
        conn.executemany(
            f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})",
            rows,
        )


def test_pages_filter_sort_and_continue_by_keyset(tmp_path: Path) -> None:
    path = tmp_path / "q.db"

    async def scenario() -> None:
        db = await open_database(path)
        await db.close()
        _fill(path)
        db = await open_database(path)
        try:
            first = await page_requests(db.reader, RequestFilter(), limit=100)
            assert [r["request_id"] for r in first[:2]] == ["req-049999", "req-049998"]
            after = (first[-1]["created_us"], first[-1]["id"])
            second = await page_requests(db.reader, RequestFilter(), after=after, limit=100)
            assert second[0]["request_id"] == "req-049899"

            where = RequestFilter(status="ok", model="iris", client_id="cli")
            page = await page_requests(db.reader, where, sort="latency", limit=50)
            assert len(page) == 50
            assert all(
                r["status"] == "ok" and r["model"] == "iris" and r["client_id"] == "cli"
                for r in page
            )
            latencies = [r["latency_us"] for r in page]
            assert latencies == sorted(latencies, reverse=True)

            found = await page_requests(db.reader, RequestFilter(text="req-01234"), limit=20)
            assert sorted(r["request_id"] for r in found) == [f"req-01234{d}" for d in range(10)]
            errors = await page_requests(db.reader, RequestFilter(text="Field required"))
            assert errors and all("Field required" in r["error"] for r in errors)

            # Keyset continuation from deep in the table (no OFFSET scan).
            deep = await page_requests(
                db.reader, RequestFilter(status="rejected"), after=(1_000_000 + 1000, 0)
            )
            assert deep and all(r["created_us"] < 1_000_000 + 1000 for r in deep)
        finally:
            await db.close()

    asyncio.run(scenario())


# -- every filter and sort, page by page, against the same rows filtered in Python -------------

TIE_ROWS = 800
LABELS = ("setosa", "virginica", "versicolor")


def _fill_with_ties(path: Path) -> list[dict[str, object]]:
    """Rows where many share a `created_us` (and a latency), so keysets must break ties by id;
    unfinished rows have no latency; IDs are UUID-like, a few callers' IDs are not."""
    rng = random.Random(5)
    rows: list[dict[str, object]] = []
    for i in range(TIE_ROWS):
        status = "interrupted" if i % 97 == 0 else rng.choice(["ok"] * 6 + ["rejected", "failed"])
        row: dict[str, object] = dict.fromkeys(REQUEST_COLUMNS)
        row.update(
            request_id=f"0193{i // 100:04x}-{i:04x}" if i % 11 else f"ext-{i:05d}",
            target="web" if i % 9 == 0 else "local",
            run_id=f"run-{i % 3}",
            source=rng.choice(["form", "/data/a.jsonl", "/data/b.jsonl", "http"]),
            model=rng.choice(["iris", "iris", "digits"]),
            client_id=rng.choice(["gui", "cli", "acme", "files"]),
            status=status,
            created_us=1_000_000 + (i // 4) * 10,  # four rows per timestamp
            latency_us=None if status == "interrupted" else rng.choice([500, 900, 1_500, 7_000]),
            input=f'{{"sepal_length": {i % 50}, "note": "{"50% off_" if i % 13 == 0 else ""}"}}',
            error="sepal_width: Field required" if status == "rejected" else None,
            # Compact, as the engine writes outputs; no model on some old rejections.
            # Every output scores every class, as the engine writes them.
            output=json.dumps(
                {"label": LABELS[i % 3], "scores": dict.fromkeys(LABELS, 0.3)},
                separators=(",", ":"),
            )
            if status == "ok"
            else None,
        )
        if status == "rejected" and i % 2:
            row["model"] = None
        rows.append(row)
    # Written out of time order, as concurrent writers commit them.
    order = list(range(TIE_ROWS))
    rng.shuffle(order)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})",
            [tuple(rows[i][c] for c in REQUEST_COLUMNS) for i in order],
        )
        ids = dict(conn.execute("SELECT request_id, id FROM requests").fetchall())
    for row in rows:
        row["id"] = ids[row["request_id"]]
    return rows


def _expected(
    rows: list[dict[str, Any]], where: RequestFilter, sort: str, descending: bool
) -> list[str]:
    def matches(r: dict[str, Any]) -> bool:
        for name in ("status", "model", "source", "client_id", "run_id", "target"):
            value = getattr(where, name)
            if value is not None and r[name] != value:
                return False
        if where.text:
            t = where.text
            if any(str(x["request_id"]).startswith(t) for x in rows):
                return str(r["request_id"]).startswith(t)
            if t.lower() in str(r["request_id"]).lower():
                return True
            # Plain words look at the label; JSON-shaped text at the whole output too.
            json_shaped = '"' in t or ":" in t
            output = (r["output"] or "") if json_shaped else label(r)
            hay = (r["input"] or "", output, r["error"] or "")
            spellings = request_search.json_spellings(t)
            return any(s.lower() in str(h).lower() for h in hay for s in spellings)
        return True

    def label(r: dict[str, Any]) -> str:
        return str(json.loads(str(r["output"]))["label"]) if r["output"] else ""

    keys: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
        "time": lambda r: (r["created_us"], r["id"]),
        "latency": lambda r: (r["latency_us"], r["id"]),
        "status": lambda r: (r["status"], r["created_us"], r["id"]),
        "source": lambda r: (r["source"], r["created_us"], r["id"]),
        "model": lambda r: (r["model"] or "", r["created_us"], r["id"]),
        "label": lambda r: (label(r), r["created_us"], r["id"]),
    }
    found = [r for r in rows if matches(r) and (sort != "latency" or r["latency_us"] is not None)]
    found.sort(key=keys[sort], reverse=descending)
    return [str(r["request_id"]) for r in found]


FILTERS = [
    RequestFilter(),
    RequestFilter(status="ok"),
    RequestFilter(status="interrupted"),
    RequestFilter(status="queued"),
    RequestFilter(model="digits"),
    RequestFilter(client_id="acme"),
    RequestFilter(source="/data/a.jsonl"),
    RequestFilter(run_id="run-1"),
    RequestFilter(text="01930005"),  # a request-ID prefix
    RequestFilter(text="ext-0"),  # a caller's own IDs
    RequestFilter(text="FIELD req"),  # in errors, any case
    RequestFilter(text="50% off_"),  # LIKE's wildcards taken literally
    RequestFilter(text="nothing like this"),
    RequestFilter(status="ok", model="digits", client_id="gui"),
    RequestFilter(status="rejected", source="form", text="Field"),
    RequestFilter(client_id="cli", text="0193"),
    RequestFilter(target="web"),
    RequestFilter(text="virginica"),  # a label, in outputs
    RequestFilter(target="local", text="VIRGINICA"),
    RequestFilter(text='"sepal_length":3,'),  # compact, as typed; the inputs are spaced
    RequestFilter(text='"label": "setosa"'),  # spaced, as the Trace shows it; outputs compact
]


@pytest.mark.parametrize("small", [False, True], ids=["defaults", "tiny-limits"])
def test_every_filter_pages_in_order_across_ties(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: bool
) -> None:
    """Pages by keyset (and by scan steps with small windows) add up to exactly the matching
    rows, in order, for every filter and sort; with tiny limits every strategy is exercised."""
    if small:
        monkeypatch.setattr(request_search, "RANK_FROM_INDEX", 40)
        monkeypatch.setattr(request_search, "RANK_WITH_LOOKUPS", 20)
        monkeypatch.setattr(request_search, "SCAN_WINDOW", 37)
        monkeypatch.setattr(queries.RequestScan, "MIN_WINDOW", 5)
    path = tmp_path / "ties.db"
    strategies: set[str] = set()

    async def scenario() -> None:
        db = await open_database(path)
        await db.close()
        rows = _fill_with_ties(path)
        db = await open_database(path)
        try:
            for where in FILTERS:
                for sort in ("time", "latency"):
                    for descending in (True, False):
                        want = _expected(rows, where, sort, descending)
                        key = "created_us" if sort == "time" else "latency_us"
                        got: list[str] = []
                        after = None
                        while True:  # pages of 23, each continued from its last row
                            page = await page_requests(
                                db.reader,
                                where,
                                sort=sort,
                                descending=descending,
                                after=after,
                                limit=23,
                            )
                            got.extend(str(r["request_id"]) for r in page)
                            if len(page) < 23:
                                break
                            after = (page[-1][key], page[-1]["id"])
                        assert got == want, (where, sort, descending)
                        plan = await plan_requests(
                            db.reader, where, sort=sort, descending=descending
                        )
                        strategies.add(plan.strategy)
                        scan = RequestScan(db.reader, plan)
                        stepped: list[str] = []
                        while not scan.done:
                            stepped.extend(str(r["request_id"]) for r in await scan.step(7))
                        assert stepped == want, (where, sort, descending, plan)
                # Every column the table sorts by, stepped by its own keyset.
                for sort in ("status", "source", "model", "label"):
                    for descending in (True, False):
                        want = _expected(rows, where, sort, descending)
                        plan = await plan_requests(
                            db.reader, where, sort=sort, descending=descending
                        )
                        strategies.add(plan.strategy)
                        scan = RequestScan(db.reader, plan)
                        stepped = []
                        while not scan.done:
                            stepped.extend(str(r["request_id"]) for r in await scan.step(23))
                        assert stepped == want, (where, sort, descending, plan)
                        count = request_search.RequestCount(db.reader, plan, cap=1_000)
                        while not count.done:
                            await count.step()
                        assert count.count == len(want), (where, sort, plan)
        finally:
            await db.close()

    asyncio.run(scenario())
    if small:
        assert strategies == {"ordered", "ranked", "window"}


def test_plans_name_the_index_for_each_filter(tmp_path: Path) -> None:
    """Which index and strategy answer the view's filters, the choices the bench measured."""
    path = tmp_path / "plan.db"

    async def scenario() -> dict[str, tuple[str, str]]:
        db = await open_database(path)
        await db.close()
        _fill(path)
        db = await open_database(path)
        try:
            cases = {
                "all": (RequestFilter(), "time"),
                "model": (RequestFilter(model="digits"), "time"),
                "client": (RequestFilter(client_id="gui"), "time"),
                "source": (RequestFilter(source="form"), "time"),
                "id": (RequestFilter(text="req-0123"), "time"),
                "text": (RequestFilter(text="Field required"), "time"),
                "two": (RequestFilter(model="digits", client_id="gui"), "time"),
                "slowest": (RequestFilter(), "latency"),
                "slowest rare": (RequestFilter(status="failed"), "latency"),
                "slowest text": (RequestFilter(text="Field required"), "latency"),
            }
            found: dict[str, tuple[str, str]] = {}
            for name, (where, sort) in cases.items():
                plan = await plan_requests(db.reader, where, sort=sort)
                found[name] = (plan.strategy, plan.index)
            return found
        finally:
            await db.close()

    found = asyncio.run(scenario())
    assert found == {
        "all": ("ordered", "idx_requests_created"),
        "model": ("ordered", "idx_requests_model"),
        "client": ("ordered", "idx_requests_client"),
        "source": ("ordered", "idx_requests_source"),
        "id": ("ranked", "sqlite_autoindex_requests_1"),
        "text": ("window", "idx_requests_created"),
        # gui (1 row in 7) is fewer than digits (1 in 3): its index is walked, model checked.
        "two": ("window", "idx_requests_client"),
        "slowest": ("ordered", "idx_requests_latency"),
        "slowest rare": ("ranked", "idx_requests_status"),
        "slowest text": ("window", "idx_requests_latency"),
    }


def test_a_window_step_is_bounded_and_says_where_to_resume(tmp_path: Path) -> None:
    path = tmp_path / "w.db"

    async def scenario() -> None:
        db = await open_database(path)
        await db.close()
        _fill(path)
        db = await open_database(path)
        try:
            plan = await plan_requests(db.reader, RequestFilter(text="no such text"))
            step = await scan_requests(db.reader, plan, window=1000)
            assert step.rows == [] and step.examined == 1000
            # The window's last entry: the 1,000th newest row; the next step starts below it.
            assert step.resume == (1_000_000 + (ROWS - 1000) * 10, ROWS - 1000 + 1)
            last = await scan_requests(db.reader, plan, after=(1_000_000 + 500 * 10, 0))
            assert last.rows == [] and last.resume is None and last.examined == 500
        finally:
            await db.close()

    asyncio.run(scenario())


def test_filter_choices_come_from_the_indexes(tmp_path: Path) -> None:
    path = tmp_path / "c.db"

    async def scenario() -> tuple[list[str], list[str]]:
        db = await open_database(path)
        await db.close()
        _fill(path)
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO file_jobs (job_id, run_id, source_path, size_bytes, sha256, format, "
                "created_us, updated_us) VALUES (1, 'r', '/old/file.csv', 1, 'x', 'csv', 1, 2)"
            )
        db = await open_database(path)
        try:
            return await client_ids(db.reader), await recent_sources(db.reader, latest=100)
        finally:
            await db.close()

    clients, sources = asyncio.run(scenario())
    assert clients == ["cli", "gui"]
    # The newest requests' sources first, then the older file job's.
    assert sources[-1] == "/old/file.csv" and set(sources[:-1]) == {"form", "file:a.jsonl"}


def test_the_live_tail_reads_only_rows_stored_since_by_another_connection(tmp_path: Path) -> None:
    """`data_version` moves when another connection commits; `tail_requests` returns only the
    newer rows that match the filter (text in a label included); counts stop at their cap."""
    path = tmp_path / "tail.db"

    async def scenario() -> None:
        db = await open_database(path)
        await db.close()
        _fill_with_ties(path)
        db = await open_database(path)
        try:
            version = await request_search.data_version(db.reader)
            newest = await request_search.latest_request_id(db.reader)
            assert newest == TIE_ROWS
            assert await request_search.data_version(db.reader) == version  # nothing new
            new_rows = []
            for i, label in enumerate(("virginica", "setosa", "virginica")):
                row = dict.fromkeys(REQUEST_COLUMNS)
                row.update(
                    request_id=f"tail-{i}",
                    source="http",
                    target="local",
                    model="iris",
                    status="ok",
                    created_us=9_000_000 + i,
                    latency_us=100,
                    input='{"sepal_length":7.9}',
                    output=f'{{"label":"{label}"}}',
                )
                new_rows.append(tuple(row[c] for c in REQUEST_COLUMNS))
            with sqlite3.connect(path) as other:  # another connection, as another process
                other.executemany(
                    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})",
                    new_rows,
                )
            assert await request_search.data_version(db.reader) != version
            found = await request_search.tail_requests(
                db.reader, RequestFilter(text="virginica"), newest
            )
            assert [r["request_id"] for r in found] == ["tail-2", "tail-0"]
            typed = await request_search.tail_requests(
                db.reader, RequestFilter(text='"sepal_length": 7.9'), newest
            )
            assert len(typed) == 3
            assert await request_search.tail_requests(db.reader, RequestFilter(), newest + 3) == []

            plan = await plan_requests(db.reader, RequestFilter())
            count = request_search.RequestCount(db.reader, plan, cap=100)
            while not count.done:
                await count.step()
            assert count.capped and count.count == 101
        finally:
            await db.close()

    asyncio.run(scenario())


def test_migration_7_gives_old_rejections_the_model_they_named(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as conn:
        migrations.migrate(conn, 6)
        conn.execute(
            "INSERT INTO file_jobs (job_id, run_id, source_path, size_bytes, sha256, format, "
            "model, created_us, updated_us) VALUES (1, 'r', '/d/x.csv', 1, 's', 'csv', "
            "'digits', 0, 0)"
        )
        conn.executemany(
            "INSERT INTO requests (request_id, source, status, created_us, input, job_id, "
            "source_row, output) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    "a",
                    "http",
                    "rejected",
                    1,
                    '{"model": "iris", "input_payload": {}}',
                    None,
                    None,
                    None,
                ),
                ("b", "/d/x.csv", "rejected", 2, "not json", 1, 4, None),
                ("c", "http", "rejected", 3, '{"sepal_length": 1}', None, None, None),
                ("d", "form", "ok", 4, "{}", None, None, '{"label":"setosa"}'),
            ],
        )
        conn.commit()
        migrations.migrate(conn)
        found = conn.execute("SELECT request_id, model, label FROM requests ORDER BY id")
        assert found.fetchall() == [
            ("a", "iris", ""),
            ("b", "digits", ""),
            ("c", None, ""),
            ("d", None, "setosa"),
        ]


def test_a_request_id_is_looked_up_on_the_callers_thread_and_a_lock_is_never_waited_for(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ids.db"
    locked_path = tmp_path / "locked.db"

    async def run() -> None:
        db = await open_database(path)
        try:
            rows = []
            for request_id, status in (("kept", "ok"), ("refused", "rejected")):
                row = dict.fromkeys(REQUEST_COLUMNS)
                row.update(
                    request_id=request_id,
                    status=status,
                    created_us=1,
                    source="form",
                    target="local",
                )
                rows.append(tuple(row[c] for c in REQUEST_COLUMNS))
            with closing(sqlite3.connect(path)) as conn, conn:
                conn.executemany(
                    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})",
                    rows,
                )
            # A rejection's ID may be taken by an accepted request: only "kept" is held.
            for request_id, held in (("kept", True), ("refused", False), ("absent", False)):
                assert db.request_id_held_now(request_id) is held
                assert await queries.request_id_held(db.reader, request_id) is held
            # A file another connection holds exclusively: "cannot tell now", at once.
            with closing(sqlite3.connect(locked_path, isolation_level=None)) as holder:
                holder.execute("CREATE TABLE requests (request_id TEXT, status TEXT)")
                holder.execute("PRAGMA locking_mode = EXCLUSIVE")
                holder.execute("BEGIN EXCLUSIVE")
                holder.execute("INSERT INTO requests VALUES ('kept', 'ok')")
                own = db._point_reader
                db._point_reader = sqlite3.connect(locked_path, isolation_level=None, timeout=0)
                try:
                    started = time.perf_counter()
                    assert db.request_id_held_now("kept") is None
                    assert time.perf_counter() - started < 0.5
                finally:
                    db._point_reader.close()
                    db._point_reader = own
        finally:
            await db.close()

    asyncio.run(run())
