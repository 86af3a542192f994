"""The group-commit writer and crash recovery, on a real SQLite file."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from storage import open_database
from storage.database import recover
from storage.writer import Row

INSERT = "INSERT INTO requests (request_id, source, status, created_us) VALUES (?, 'test', ?, ?)"


def test_group_commit_batches_rows_and_calls_back_after_commit(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = await open_database(tmp_path / "w.db", max_batch_rows=1000)
        seen_committed: list[int] = []

        def check(error: BaseException | None) -> None:
            assert error is None
            # The callback runs only once the rows are visible to another connection.
            with sqlite3.connect(tmp_path / "w.db") as other:
                seen_committed.append(other.execute("SELECT count(*) FROM requests").fetchone()[0])

        for i in range(2500):
            db.writer.add(INSERT, [(f"r{i}", "ok", i)], check if i == 2499 else None)
        await db.writer.flush()
        assert seen_committed == [2500]
        # 2,500 rows added without awaiting: at most 1,000 per transaction, so 3 commits,
        # never one per row.
        assert db.writer.commits == 3
        assert db.writer.rows_committed == 2500
        await db.close()

    asyncio.run(scenario())


def test_a_failed_commit_reports_to_every_waiter_and_keeps_earlier_rows(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = await open_database(tmp_path / "w.db")
        await db.writer.execute(INSERT, ("dup", "ok", 1))
        errors: list[BaseException | None] = []
        db.writer.add(INSERT, [("fresh", "ok", 2), ("dup", "ok", 3)], errors.append)
        await db.writer.flush()
        assert len(errors) == 1 and isinstance(errors[0], sqlite3.IntegrityError)
        # The failed transaction rolled back whole; the writer keeps working afterwards.
        await db.writer.execute(INSERT, ("after", "ok", 4))
        async with db.reader.execute("SELECT request_id FROM requests ORDER BY 1") as cur:
            assert [r[0] for r in await cur.fetchall()] == ["after", "dup"]
        await db.close()

    asyncio.run(scenario())


def test_close_flushes_pending_rows(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = await open_database(tmp_path / "w.db")
        db.writer.add(INSERT, [(f"r{i}", "ok", i) for i in range(300)])
        await db.close()  # no explicit flush: close must commit what is pending

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / "w.db") as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 300


def test_wait_below_holds_producers_until_the_writer_catches_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = await open_database(tmp_path / "w.db", max_batch_rows=100)
        db.writer.add(INSERT, [(f"r{i}", "ok", i) for i in range(1000)])
        assert db.writer.pending_rows == 1000
        await asyncio.wait_for(db.writer.wait_below(200), timeout=10)
        assert db.writer.pending_rows < 200
        await db.close()

    asyncio.run(scenario())


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_recovery_interrupts_only_work_of_dead_processes(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    asyncio.run(_create(path))
    conn = sqlite3.connect(path, isolation_level=None)
    dead = _dead_pid()
    conn.execute(
        "INSERT INTO runs (run_id, kind, started_us, owner_pid) VALUES ('dead', 'gui', 1, ?)",
        (dead,),
    )
    conn.execute(
        "INSERT INTO runs (run_id, kind, started_us, owner_pid) VALUES ('live', 'gui', 1, ?)",
        (os.getpid(),),
    )
    for rid, run, status in [
        ("a", "dead", "queued"),
        ("b", "dead", "running"),
        ("c", "dead", "ok"),
        ("d", "live", "queued"),
    ]:
        conn.execute(
            "INSERT INTO requests (request_id, run_id, source, status, created_us) "
            "VALUES (?, ?, 'form', ?, 1)",
            (rid, run, status),
        )
    result = recover(conn)
    assert (result.requests, result.runs) == (2, 1)
    statuses = dict(conn.execute("SELECT request_id, status FROM requests").fetchall())
    assert statuses == {"a": "interrupted", "b": "interrupted", "c": "ok", "d": "queued"}
    runs = dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
    assert runs == {"dead": "interrupted", "live": "running"}


async def _create(path: Path) -> None:
    db = await open_database(path)
    await db.close()


@pytest.mark.parametrize("garbage", [b"this is not a database" * 100])
def test_a_file_that_is_not_a_database_gives_a_clear_error(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(garbage)
    with pytest.raises(Exception, match="cannot use database"):
        asyncio.run(_create(path))


def test_a_large_commit_shares_the_loop_while_it_builds_rows_and_calls_back(
    tmp_path: Path,
) -> None:
    """300 rows that each take 1 ms to build and 1 ms to hear their commit: the writer gives the
    loop back between slices, so another task (the app's painting, its timers) keeps running."""

    def busy_ms() -> None:
        end = time.perf_counter() + 0.001
        while time.perf_counter() < end:
            pass

    async def scenario() -> None:
        db = await open_database(tmp_path / "w.db", max_batch_rows=1000)
        ticks = 0
        seen_building: list[int] = []  # the ticker's count as each row was built
        seen_calling_back: list[int] = []  # ... and as each row heard its commit

        def build(i: int) -> Callable[[int], list[Row]]:
            def rows(_start_ns: int) -> list[Row]:
                busy_ms()
                seen_building.append(ticks)
                return [(f"r{i}", "ok", i)]

            return rows

        def heard(_error: BaseException | None) -> None:
            busy_ms()
            seen_calling_back.append(ticks)

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        for i in range(300):
            db.writer.add_deferred(INSERT, 1, build(i), heard)
        await db.writer.flush()
        task.cancel()
        assert db.writer.rows_committed == 300 and db.writer.commits == 1
        # 300 ms of building and 300 ms of callbacks for one transaction: the ticker ran
        # between their slices (each about 1 ms), not only before and after them.
        assert seen_building[-1] - seen_building[0] >= 20, seen_building[-1] - seen_building[0]
        spread = seen_calling_back[-1] - seen_calling_back[0]
        assert spread >= 20, spread
        await db.close()

    asyncio.run(scenario())
