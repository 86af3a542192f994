"""History reads: filtered, sorted pages by keyset, on a real SQLite file with many rows."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

from storage import open_database
from storage.queries import REQUEST_COLUMNS, RequestFilter, page_requests

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
