"""Benchmark of the Requests view's reads (issue: Requests). Run: `make bench-requests`.

Builds (once; cached under bench/out/) a 1,000,000-row database through `storage.open_database`
and bulk inserts of rows shaped as the engine writes them, then measures on the reader connection:
1. the first page and a deep page (the page after 50 pages, by keyset) for each filter and sort
   the view offers, as `queries.page_requests` and the table model read them (`plan_requests`,
   then bounded `RequestScan` steps): the page's time, how many queries it took and the longest;
2. the real `RequestsTableModel` on a qasync loop: time from `set_filter` to its first rows and
   to `sigLoaded`, and the loop's worst stall meanwhile;
3. the filter boxes' choices (`client_ids`, `recent_sources`); bytes per row, table and indexes;
4. `--floor` (issue 13's numbers, only these): through the real `RequestsTableModel`, (a) the
   live tail: rows committed by another connection -> `poll_tail` -> the rows on top of the
   table, and (b) a filter keystroke: the text as typed -> `set_filter` -> the first page in
   (and the first rows), for text and column filters; each must be <= 100 ms at 1,000,000 rows.

Medians of `--repeat` runs (warm OS cache), printed as a table and saved to bench/out/requests.json.
One script over 400 lines on purpose: the building, the three measurements and the table share
one database and one set of figures, and a reader follows them top to bottom.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from storage import open_database  # noqa: E402
from storage.queries import (  # noqa: E402
    REQUEST_COLUMNS,
    RequestFilter,
    RequestPlan,
    RequestScan,
    client_ids,
    plan_requests,
    recent_sources,
)

OUT = REPO / "bench" / "out"
PAGE = 200
DEEP = 50  # pages walked before the "deep page"
T0_US = 1_767_225_600_000_000  # 2026-01-01 UTC
IRIS = ("setosa", "versicolor", "virginica")
HOME = "/home/ana"


# -- building the database ----------------------------------------------------------------------


def _uuid7(ms: int, counter: int, rng: random.Random) -> str:
    """The engine's ID layout (`engine.ids.new_id`) for a given millisecond."""
    value = (ms << 80) | (0x7 << 76) | ((counter & 0xFFF) << 64) | (0b10 << 62)
    value |= rng.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _iris_input(rng: random.Random) -> str:
    return _dumps(
        {
            "sepal_length": round(rng.uniform(4.3, 7.9), 1),
            "sepal_width": round(rng.uniform(2.0, 4.4), 1),
            "petal_length": round(rng.uniform(1.0, 6.9), 1),
            "petal_width": round(rng.uniform(0.1, 2.5), 1),
        }
    )


def _scores(rng: random.Random, labels: tuple[str, ...]) -> dict[str, Any]:
    raw = [rng.random() ** 4 for _ in labels]
    best = max(range(len(labels)), key=raw.__getitem__)
    raw[best] += 2.0
    total = sum(raw)
    return {
        "label": labels[best],
        "scores": {k: round(v / total, 4) for k, v in zip(labels, raw, strict=True)},
    }


def _spans(rng: random.Random, latency_us: int, batch: int) -> str:
    infer = max(50, int(latency_us * rng.uniform(0.05, 0.4)))
    wait = max(1, latency_us - infer - 200)
    return _dumps(
        [
            ["validate", 0, rng.randint(20, 80)],
            ["metadata", 60, rng.randint(1, 4)],
            ["queue_wait", 100, wait],
            ["inference", 100 + wait, infer, {"batch_size": batch}],
            ["write", 100 + wait + infer, rng.randint(40, 400)],
        ]
    )


def _rejection(rng: random.Random, request_id: str, row: int) -> tuple[str, str]:
    field = rng.choice(("sepal_length", "sepal_width", "petal_length", "petal_width"))
    if rng.random() < 0.5:
        raw = _dumps({field: "n/a"})
        message = f"{field}: Input should be a valid number, unable to parse string as a number"
        kind = "float_parsing"
    else:
        raw = _dumps({"sepal_length": 5.0})
        message = f"{field}: Field required"
        kind = "missing"
    error = {
        "code": "validation_error",
        "message": message,
        "details": [
            {"field": field, "message": message.split(": ", 1)[1], "type": kind, "row": row}
        ],
        "request_id": request_id,
    }
    return raw, _dumps(error)


@dataclass
class Plan:
    """Who sent the rows: a mix over ~60 days, most of it iris files run from the CLI."""

    rows: int
    seed: int = 17


def _generate(plan: Plan) -> list[tuple[Any, ...]]:
    rng = random.Random(plan.seed)
    out: list[tuple[Any, ...]] = []
    now = T0_US
    job_id = 0
    run_no = 0
    api_clients = ("acme-web", "acme-batch", "qa-bot", "partner-eu")
    digit_labels = tuple(str(d) for d in range(10))

    def base(
        created: int, counter: int, run_id: str, source: str, client: str, model: str | None
    ) -> dict[str, Any]:
        return {
            "request_id": _uuid7(created // 1000, counter, rng),
            "run_id": run_id,
            "job_id": None,
            "source_row": None,
            "source": source,
            "target": "local",
            "model": model,
            "client_id": client,
            "created_us": created,
            "metadata": None,
            "error": None,
            "output": None,
        }

    while len(out) < plan.rows:
        run_no += 1
        run_id = _uuid7(now // 1000, 0, rng)
        roll = rng.random()
        left = plan.rows - len(out)
        if roll < 0.085:  # an iris file from the CLI or dropped on the window
            job_id += 1
            n = min(left, rng.choice((500, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)))
            client = "cli" if rng.random() < 0.7 else "files"
            folder = rng.choice(("data/iris", "exports", "projects/field-survey"))
            source = f"{HOME}/{folder}/batch_{job_id:04d}.jsonl"
            step = rng.choice((60, 90, 150))  # µs between accepted rows
            for i in range(n):
                created = now + i * step + rng.randint(0, step // 2)
                row = base(created, i, run_id, source, client, "iris")
                row.update(job_id=job_id, source_row=i + 1)
                if rng.random() < 0.012:
                    raw, error = _rejection(rng, row["request_id"], i + 1)
                    latency = rng.randint(80, 900)
                    row.update(
                        status="rejected",
                        input=raw,
                        error=error,
                        spans=_dumps([["validate", 0, 70], ["write", 100, latency - 100]]),
                    )
                else:
                    latency = int(rng.lognormvariate(9.2, 0.6))  # ~10 ms in a busy batch
                    row.update(
                        status="ok",
                        input=_iris_input(rng),
                        output=_dumps(_scores(rng, IRIS)),
                        spans=_spans(rng, latency, rng.choice((32, 64, 64, 128))),
                    )
                row.update(latency_us=latency, finished_us=created + latency)
                out.append(row_tuple(row))
            now += n * step + rng.randint(60, 3_600) * 1_000_000
        elif roll < 0.49:  # a few digit images dropped on the window: one job per image
            n = min(left, rng.randint(5, 80))
            for i in range(n):
                job_id += 1
                created = now + i * 4_000 + rng.randint(0, 1000)
                source = f"{HOME}/scans/2026-{1 + run_no % 12:02d}/digit_{job_id:06d}.png"
                row = base(created, i, run_id, source, "files", "digits")
                row.update(job_id=job_id, source_row=1)
                pixels = [float(rng.randint(0, 16)) for _ in range(64)]
                latency = int(rng.lognormvariate(8.6, 0.5))
                row.update(
                    status="ok",
                    input=_dumps({"image": pixels}),
                    output=_dumps(_scores(rng, digit_labels)),
                    spans=_spans(rng, latency, rng.choice((1, 8, 16))),
                    latency_us=latency,
                    finished_us=created + latency,
                )
                out.append(row_tuple(row))
            now += n * 4_000 + rng.randint(60, 3_600) * 1_000_000
        elif roll < 0.94:  # the desktop form: written `queued` first, a few interrupted
            n = min(left, rng.randint(3, 40))
            for i in range(n):
                created = now + i * rng.randint(2, 30) * 1_000_000
                row = base(created, 0, run_id, "form", "gui", "iris")
                row["input"] = _iris_input(rng)
                if rng.random() < 0.04:
                    row.update(
                        status="interrupted",
                        latency_us=None,
                        finished_us=None,
                        spans=_dumps([["validate", 0, 41], ["metadata", 41, 2]]),
                    )
                else:
                    latency = int(rng.lognormvariate(7.4, 0.3))  # ~1.6 ms
                    row.update(
                        status="ok",
                        output=_dumps(_scores(rng, IRIS)),
                        spans=_spans(rng, latency, 1),
                        latency_us=latency,
                        finished_us=created + latency,
                    )
                out.append(row_tuple(row))
            now += n * 30_000_000 + rng.randint(60, 3_600) * 1_000_000
        else:  # HTTP callers of the served engine: own IDs sometimes, a few failures
            n = min(left, rng.choice((200, 1_000, 5_000)))
            client = rng.choice(api_clients)
            step = rng.choice((1_000, 5_000))
            for i in range(n):
                created = now + i * step
                row = base(created, i, run_id, "http", client, "iris")
                if client == "partner-eu":
                    row["request_id"] = f"peu-{rng.getrandbits(48):012x}"
                row["input"] = _iris_input(rng)
                row["metadata"] = _dumps({"tenant": client.split("-")[0], "trace": i % 97 == 0})
                r = rng.random()
                if r < 0.003:
                    row.update(
                        status="interrupted",
                        latency_us=None,
                        finished_us=None,
                        spans=_dumps([["validate", 0, 35]]),
                    )
                elif r < 0.006:
                    latency = rng.randint(30_000_000, 31_000_000)
                    row.update(
                        status="failed",
                        error=_dumps(
                            {
                                "code": "inference_error",
                                "message": "model raised RuntimeError: worker lost",
                                "request_id": row["request_id"],
                            }
                        ),
                        spans=_spans(rng, latency, 64),
                        latency_us=latency,
                        finished_us=created + latency,
                    )
                else:
                    latency = int(rng.lognormvariate(8.0, 0.5))
                    row.update(
                        status="ok",
                        output=_dumps(_scores(rng, IRIS)),
                        spans=_spans(rng, latency, rng.choice((1, 4, 16))),
                        latency_us=latency,
                        finished_us=created + latency,
                    )
                out.append(row_tuple(row))
            now += n * step + rng.randint(60, 3_600) * 1_000_000
    # A run still in progress in another process: its rows stay `queued`.
    for i in range(20):
        row = base(now + i * 1000, i, "live-run", "http", "acme-web", "iris")
        row.update(
            input=_iris_input(rng),
            status="queued",
            latency_us=None,
            finished_us=None,
            spans=_dumps([["validate", 0, 35]]),
        )
        out[-1 - i] = row_tuple(row)
    return out


def row_tuple(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in REQUEST_COLUMNS)


def _runs_and_jobs(data: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """The `runs` and `file_jobs` rows that the requests imply (derived: the requests stay the
    same whatever is added here)."""
    col = {c: i for i, c in enumerate(REQUEST_COLUMNS)}
    runs: dict[str, list[int]] = {}
    jobs: dict[int, list[Any]] = {}
    for r in data:
        created = r[col["created_us"]]
        span = runs.setdefault(r[col["run_id"]], [created, created])
        span[1] = max(span[1], created)
        job_id = r[col["job_id"]]
        if job_id is not None:
            job = jobs.setdefault(job_id, [r[col["run_id"]], r[col["source"]], r[col["model"]], 0])
            job[3] += 1
            job.append(created)
    run_rows = [
        (run_id, "gui" if run_id != "live-run" else "serve", "done", "{}", lo, hi)
        for run_id, (lo, hi) in runs.items()
    ]
    job_rows = []
    for job_id, (run_id, source, model, n, *times) in jobs.items():
        fmt = "image" if source.endswith(".png") else "jsonl"
        sha = f"{job_id:064x}"
        first, last = min(times), max(times)
        job_rows.append(
            (job_id, run_id, source, n * 80, sha, fmt, model, "done", n, n, first, last)
        )
    return run_rows, job_rows


def build(path: Path, rows: int) -> float:
    """Create the database at `path` as the app would, then bulk-insert `rows` requests (and
    the runs and file jobs they belong to)."""
    start = time.perf_counter()
    asyncio.run(_open_close(path))
    data = _generate(Plan(rows))
    runs, jobs = _runs_and_jobs(data)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    with conn:
        conn.executemany(
            "INSERT INTO runs (run_id, kind, status, config, started_us, ended_us) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            runs,
        )
        conn.executemany(
            "INSERT INTO file_jobs (job_id, run_id, source_path, size_bytes, sha256, format, "
            "model, status, rows_done, rows_total, created_us, updated_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            jobs,
        )
        conn.executemany(
            f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})",
            data,
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - start


def footprint(path: Path) -> dict[str, Any]:
    """Bytes per row of the whole file, and of the table and each index (dbstat)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    rows = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    objects = {
        name: size
        for name, size in conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat WHERE name = 'requests' "
            "OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'requests') "
            "GROUP BY name ORDER BY 2 DESC"
        )
    }
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    return {
        "rows": rows,
        "schema_version": version,
        "file_bytes_per_row": round(path.stat().st_size / rows, 1),
        "bytes_per_row": {k: round(v / rows, 1) for k, v in objects.items()},
    }


# -- the cases ----------------------------------------------------------------------------------


def cases(path: Path) -> list[tuple[str, RequestFilter, str]]:
    conn = sqlite3.connect(path)
    big_file = conn.execute(
        "SELECT source FROM requests WHERE job_id = (SELECT job_id FROM requests "
        "WHERE source LIKE '%.jsonl' GROUP BY job_id ORDER BY count(*) DESC LIMIT 1) LIMIT 1"
    ).fetchone()[0]
    image = conn.execute(
        "SELECT source FROM requests WHERE model = 'digits' ORDER BY id DESC LIMIT 1"
    ).fetchone()[0]
    some_id = conn.execute(
        "SELECT request_id FROM requests WHERE id = (SELECT max(id) / 3 FROM requests)"
    ).fetchone()[0]
    conn.close()
    rf = RequestFilter
    return [
        ("no filter", rf(), "time"),
        ("status=ok", rf(status="ok"), "time"),
        ("status=rejected", rf(status="rejected"), "time"),
        ("status=failed", rf(status="failed"), "time"),
        ("status=interrupted", rf(status="interrupted"), "time"),
        ("status=queued", rf(status="queued"), "time"),
        ("model=iris", rf(model="iris"), "time"),
        ("model=digits", rf(model="digits"), "time"),
        ("client=cli", rf(client_id="cli"), "time"),
        ("client=gui", rf(client_id="gui"), "time"),
        ("client=partner-eu", rf(client_id="partner-eu"), "time"),
        ("source=form", rf(source="form"), "time"),
        ("source=largest file", rf(source=big_file), "time"),
        ("source=one image", rf(source=image), "time"),
        ("text=ID prefix (13)", rf(text=some_id[:13]), "time"),
        ("text=full ID", rf(text=some_id), "time"),
        ("text=Field required", rf(text="Field required"), "time"),
        ("text=matches nothing", rf(text="no such text"), "time"),
        ("status=failed+client", rf(status="failed", client_id="acme-web"), "time"),
        ("model=digits+status=ok", rf(model="digits", status="ok"), "time"),
        ("client=cli+source=form", rf(client_id="cli", source="form"), "time"),
        ("latency: no filter", rf(), "latency"),
        ("latency: status=ok", rf(status="ok"), "latency"),
        ("latency: status=rejected", rf(status="rejected"), "latency"),
        ("latency: status=interrupted", rf(status="interrupted"), "latency"),
        ("latency: model=digits", rf(model="digits"), "latency"),
        ("latency: client=gui", rf(client_id="gui"), "latency"),
        ("latency: client=cli", rf(client_id="cli"), "latency"),
        ("latency: source=largest file", rf(source=big_file), "latency"),
        ("latency: text=Field required", rf(text="Field required"), "latency"),
    ]


# -- measuring ----------------------------------------------------------------------------------


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


async def _one_page(
    conn: Any, plan: RequestPlan, after: tuple[int, int] | None
) -> tuple[int, list[float], tuple[int, int] | None]:
    """A page as the table model loads one: bounded steps until it is full or nothing more
    matches. Returns the rows, each step's time and where the next page resumes."""
    scan = RequestScan(conn, plan, after)
    rows, steps = 0, []
    while not scan.done and rows < PAGE:
        t = time.perf_counter()
        rows += len(await scan.step(PAGE - rows))
        steps.append(_ms(t))
    return rows, steps, scan.resume


async def measure_queries(
    path: Path, todo: list[tuple[str, RequestFilter, str]], repeat: int
) -> dict[str, dict[str, Any]]:
    """The first page (planning included) and a deep page, as `page_requests` runs them."""
    db = await open_database(path)
    results: dict[str, dict[str, Any]] = {}
    try:
        conn = db.reader
        for name, where, sort in todo:
            firsts, plans, longest, steps, rows = [], [], [], 0, 0
            for _ in range(repeat + 1):  # the first run warms the caches and is dropped
                t = time.perf_counter()
                plan = await plan_requests(conn, where, sort=sort)
                plans.append(_ms(t))
                rows, step_ms, _ = await _one_page(conn, plan, None)
                firsts.append(_ms(t))
                longest.append(max([plans[-1], *step_ms]))
                steps = len(step_ms)
            after: tuple[int, int] | None = None
            pages = 0
            scan = RequestScan(conn, plan)
            while pages < DEEP and not scan.done:
                got = 0
                while got < PAGE and not scan.done:
                    got += len(await scan.step(PAGE - got))
                pages += got == PAGE
            deeps: list[float] = []
            if pages == DEEP and not scan.done:
                after = scan.resume
                for _ in range(repeat + 1):
                    t = time.perf_counter()
                    await _one_page(conn, plan, after)
                    deeps.append(_ms(t))
            results[name] = {
                "strategy": f"{plan.strategy} {plan.index.removeprefix('idx_requests_')}",
                "first_page_rows": rows,
                "plan_ms": round(statistics.median(plans[1:]), 2),
                "first_page_ms": round(statistics.median(firsts[1:]), 2),
                "queries": steps,
                "longest_query_ms": round(statistics.median(longest[1:]), 2),
                "deep_page_ms": round(statistics.median(deeps[1:]), 2) if deeps else None,
            }
            print(f"  {name:32} {results[name]}", flush=True)
        for label, read in (("client_ids", client_ids), ("recent_sources", recent_sources)):
            times = []
            for _ in range(repeat + 1):
                t = time.perf_counter()
                found = await read(conn)
                times.append(_ms(t))
            results[f"choices: {label}"] = {
                "values": len(found),
                "ms": round(statistics.median(times[1:]), 2),
            }
    finally:
        await db.close()
    return results


def measure_model(
    path: Path, todo: list[tuple[str, RequestFilter, str]], repeat: int
) -> dict[str, dict[str, Any]]:
    """`set_filter` to the first rows and to `sigLoaded` through the real table model on a
    qasync loop, and the loop's longest stall meanwhile (a 2 ms ticker's worst lateness)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import qasync
    from PySide6.QtWidgets import QApplication

    from engine.tasks import TaskOwner
    from gui.history.requests_table_model import RequestsTableModel

    app = QApplication.instance() or QApplication([])
    results: dict[str, dict[str, Any]] = {}

    async def scenario() -> None:
        db = await open_database(path)
        tasks = TaskOwner()
        model = RequestsTableModel(db, tasks)
        loaded = asyncio.Event()
        first_rows: list[float] = []
        model.sigLoaded.connect(loaded.set)
        model.rowsInserted.connect(lambda *_: first_rows.append(time.perf_counter()))
        try:
            for name, where, sort in todo:
                times, firsts, stalls = [], [], []
                for _ in range(repeat + 1):
                    loaded.clear()
                    first_rows.clear()
                    stall = 0.0
                    t = time.perf_counter()
                    model.set_filter(where, sort)
                    last = time.perf_counter()
                    while not loaded.is_set():
                        await asyncio.sleep(0.002)
                        now = time.perf_counter()
                        stall = max(stall, now - last - 0.002)
                        last = now
                    times.append(_ms(t))
                    firsts.append((first_rows[0] - t) * 1000 if first_rows else times[-1])
                    stalls.append(stall * 1000)
                    await tasks.wait()
                results[name] = {
                    "rows": model.rowCount(),
                    "first_rows_ms": round(statistics.median(firsts[1:]), 2),
                    "loaded_ms": round(statistics.median(times[1:]), 2),
                    "worst_loop_stall_ms": round(max(stalls[1:]), 2),
                }
                print(f"  {name:32} {results[name]}", flush=True)
        finally:
            await tasks.wait()
            await db.close()

    loop = qasync.QEventLoop(app)
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    return results


TAIL_ROWS = 20  # rows another process commits per live-tail measurement


def floor_cases() -> list[tuple[str, RequestFilter, str]]:
    """A keystroke's filters: a label, the Trace's JSON as typed, an error's words, a request
    that matches nothing (every row examined), a column filter, a scope and a sort."""
    rf = RequestFilter
    return [
        ("type: virginica", rf(text="virginica"), "time"),
        ('type: "sepal_length": 7.9', rf(text='"sepal_length": 7.9'), "time"),
        ("type: Field required", rf(text="Field required"), "time"),
        ("type: matches nothing", rf(text="no such text"), "time"),
        ("status=rejected", rf(status="rejected"), "time"),
        ("scope=local + virginica", rf(target="local", text="virginica"), "time"),
        ("sort by label", rf(), "label"),
        ("sort by model + virginica", rf(text="virginica"), "model"),
    ]


def measure_floor(path: Path, repeat: int) -> dict[str, Any]:
    """Issue 13's floor through the real table model on a qasync loop: the live tail (rows
    another connection commits, to those rows on top) and a filter keystroke (to the first
    page; the first rows too). The view polls every 500 ms; the tail's own time is measured."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import qasync
    from PySide6.QtWidgets import QApplication

    from engine.tasks import TaskOwner
    from gui.history.requests_table_model import SCREEN, RequestsTableModel

    app = QApplication.instance() or QApplication([])
    out: dict[str, Any] = {"tail": {}, "keystroke": {}}
    rng = random.Random(99)

    def commit_rows(conn: sqlite3.Connection, n: int) -> None:
        now = int(time.time() * 1_000_000)
        rows = []
        for i in range(n):
            row = dict.fromkeys(REQUEST_COLUMNS)
            row.update(
                request_id=_uuid7(now // 1000, i, rng),
                source="load",
                target="local" if i % 2 else "web",
                model="iris",
                client_id="load",
                status="ok",
                created_us=now + i,
                latency_us=900,
                finished_us=now + i + 900,
                input=_iris_input(rng),
                output=_dumps(_scores(rng, IRIS)),
            )
            rows.append(row_tuple(row))
        with conn:
            conn.executemany(
                f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})",
                rows,
            )

    async def scenario() -> None:
        db = await open_database(path)
        tasks = TaskOwner()
        model = RequestsTableModel(db, tasks)
        loaded = asyncio.Event()
        first_rows: list[float] = []
        model.sigLoaded.connect(loaded.set)
        model.rowsInserted.connect(lambda *_: first_rows.append(time.perf_counter()))
        screens: list[float] = []  # when the table first holds a screenful (SCREEN rows)

        def on_rows(*_: object) -> None:
            if not screens and model.rowCount() >= SCREEN:
                screens.append(time.perf_counter())

        model.rowsInserted.connect(on_rows)
        other = sqlite3.connect(path)  # another writer, as `inferdeck serve` would be
        try:
            for name, where, sort in floor_cases():
                pages, firsts, screenful = [], [], []
                for _ in range(repeat + 1):
                    loaded.clear()
                    first_rows.clear()
                    screens.clear()
                    t = time.perf_counter()
                    model.set_filter(where, sort, sort in ("time", "latency"))
                    await loaded.wait()
                    pages.append(_ms(t))
                    firsts.append((first_rows[0] - t) * 1000 if first_rows else pages[-1])
                    screenful.append((screens[0] - t) * 1000 if screens else pages[-1])
                    await tasks.wait()
                out["keystroke"][name] = {
                    "rows": model.rowCount(),
                    "first_page_ms": round(statistics.median(pages[1:]), 2),
                    "first_rows_ms": round(statistics.median(firsts[1:]), 2),
                    "first_screen_ms": round(statistics.median(screenful[1:]), 2),
                    "max_first_page_ms": round(max(pages[1:]), 2),
                }
                print(f"  keystroke {name:30} {out['keystroke'][name]}", flush=True)
            for name, where in (
                ("no filter", RequestFilter()),
                ("status=ok", RequestFilter(status="ok")),
                ("scope=web", RequestFilter(target="web")),
                ("text=virginica", RequestFilter(text="virginica")),
            ):
                model.set_filter(where)
                await tasks.wait()
                times = []
                for _ in range(repeat + 1):
                    before = model.rowCount()
                    commit_rows(other, TAIL_ROWS)
                    t = time.perf_counter()
                    model.poll_tail()
                    await tasks.wait()
                    times.append(_ms(t))
                    assert model.rowCount() > before, name
                out["tail"][name] = {
                    "rows_per_commit": TAIL_ROWS,
                    "tail_ms": round(statistics.median(times[1:]), 2),
                    "max_tail_ms": round(max(times[1:]), 2),
                }
                print(f"  tail {name:30} {out['tail'][name]}", flush=True)
        finally:
            other.close()
            await tasks.wait()
            await db.close()

    loop = qasync.QEventLoop(app)
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    # The rows written here are not the benchmark's: remove them, the cached file stays as built.
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM requests WHERE client_id = 'load'")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", type=Path, help="database to use (default: cached in bench/out)")
    parser.add_argument("--out", type=Path, default=OUT / "requests.json")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--skip-model", action="store_true", help="queries only, no Qt model")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="only the live tail and a filter keystroke (issue 13): bench/out/requests-floor.json",
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = args.db or OUT / f"requests-{args.rows}.db"
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "sqlite": sqlite3.sqlite_version,
    }
    if not path.exists():
        print(f"building {path} ({args.rows:,} rows)...", flush=True)
        result["build_s"] = round(build(path, args.rows), 1)
    with sqlite3.connect(path) as conn:
        before = conn.execute("PRAGMA user_version").fetchone()[0]
    t = time.perf_counter()
    asyncio.run(_open_close(path))  # applies any pending migration, as the app does at start
    result["open_s"] = {"seconds": round(time.perf_counter() - t, 2), "from_schema": before}
    result["footprint"] = footprint(path)
    print(json.dumps(result, indent=1), flush=True)
    if args.floor:
        print("RequestsTableModel: keystroke -> first page, live tail -> rows on top (ms):")
        result["floor"] = measure_floor(path, args.repeat)
        floor_out = OUT / "requests-floor.json"
        floor_out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {floor_out}")
        return
    todo = [c for c in cases(path) if not args.only or args.only in c[0]]
    print("page_requests (ms):", flush=True)
    result["queries"] = asyncio.run(measure_queries(path, todo, args.repeat))
    if not args.skip_model:
        print("RequestsTableModel, set_filter -> sigLoaded (ms):", flush=True)
        result["model"] = measure_model(path, todo, args.repeat)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)


async def _open_close(path: Path) -> None:
    db = await open_database(path)
    await db.close()


def print_table(result: dict[str, Any]) -> None:
    q, m = result["queries"], result.get("model", {})
    print(
        f"\n{'case':30} {'strategy':16} {'rows':>4} {'page':>7} {'n':>3} {'longest':>7} "
        f"{'deep':>6} | {'model':>7} {'1st row':>7} {'stall':>5}"
    )
    for name, r in q.items():
        if name.startswith("choices: "):
            continue
        deep = "-" if r["deep_page_ms"] is None else f"{r['deep_page_ms']:.1f}"
        mm = m.get(name)
        model = (
            f"{mm['loaded_ms']:>7.1f} {mm['first_rows_ms']:>7.1f} {mm['worst_loop_stall_ms']:>5.1f}"
            if mm
            else f"{'-':>7} {'-':>7} {'-':>5}"
        )
        print(
            f"{name:30} {r['strategy']:16} {r['first_page_rows']:>4} {r['first_page_ms']:>7.1f} "
            f"{r['queries']:>3} {r['longest_query_ms']:>7.1f} {deep:>6} | {model}"
        )
    for name, r in q.items():
        if name.startswith("choices: "):
            print(f"{name}: {r['values']} values in {r['ms']:.1f} ms")
    fp = result["footprint"]
    print(
        f"\n{fp['rows']:,} rows, {fp['file_bytes_per_row']} bytes/row in the file "
        f"(schema v{fp['schema_version']}); ms are medians of the repeats; page = first page "
        "with planning, n = queries it took, longest = the longest of them (or the planning)"
    )


if __name__ == "__main__":
    main()
