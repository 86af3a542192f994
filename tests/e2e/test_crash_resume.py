"""Crash and resume through the real CLI and a real SQLite file.

`inferdeck predict FILE --out OUT` is killed with SIGKILL part-way through the file, three times at
different points, then run to completion. After every kill the database must pass
`PRAGMA integrity_check` and every result already in `--out` must have its committed row; after
the last run every row of the file is committed exactly once, no row is left `queued`/`running`,
and `--out` holds each row exactly once.

Two kinds of damage a SIGKILL can leave are also made on purpose (a kill lands in either window
only by chance): a torn last line in `--out` (killed inside `write()`), and committed results
missing from the end of `--out` (killed between the commit and the write). Resuming must trim the
first and back-fill the second.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, CliResult, run_cli

ROWS = 80_000
# Kill once `--out` holds this share of the file (plus a random extra delay), so each attempt
# makes progress first and none reaches the end.
KILL_AT = (0.18, 0.42, 0.66)
START_TIMEOUT_S = 60.0

# Invalid rows (each is committed as `rejected`): not JSON, a missing field, a string, out of range,
# not an object.
BAD_ROWS = (
    b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": \n',
    b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}\n',
    b'{"sepal_length": "wide", "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}\n',
    b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 99}\n',
    b"[1, 2, 3]\n",
)


def _write_source(path: Path, rng: random.Random) -> tuple[set[int], set[int]]:
    """Write the JSONL file; return (line numbers that hold a row, those that are invalid).

    Bad rows sit early, in the middle and in the last lines (so the final run meets some), and
    two blank lines check that row numbers stay line numbers.
    """
    bad_at = {3, ROWS // 2, ROWS - 40, ROWS - 20, ROWS - 3}
    blank_at = {10, ROWS // 3}
    parts: list[bytes] = []
    rows: set[int] = set()
    bad: set[int] = set()
    bad_iter = iter(BAD_ROWS)
    for line_no in range(1, ROWS + 1):
        if line_no in blank_at:
            parts.append(b"\n")
            continue
        rows.add(line_no)
        if line_no in bad_at:
            parts.append(next(bad_iter))
            bad.add(line_no)
            continue
        values = (
            rng.uniform(4.0, 8.0),
            rng.uniform(2.0, 4.5),
            rng.uniform(1.0, 7.0),
            rng.uniform(0.1, 2.5),
        )
        parts.append(
            b'{"sepal_length":%.1f,"sepal_width":%.1f,"petal_length":%.1f,"petal_width":%.1f}\n'
            % values
        )
    path.write_bytes(b"".join(parts))
    return rows, bad


def _out_records(out: Path) -> list[dict[str, Any]]:
    """The complete lines of `--out` (a torn last line, if any, is not a result yet)."""
    if not out.exists():
        return []
    data = out.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines()]


def _count_lines(out: Path, state: dict[str, int]) -> int:
    """Newlines in `out`, reading only what was appended since the last call."""
    if not out.exists():
        return state["lines"]
    with out.open("rb") as fh:
        fh.seek(state["offset"])
        chunk = fh.read()
    state["offset"] += len(chunk)
    state["lines"] += chunk.count(b"\n")
    return state["lines"]


def _kill_when(
    cmd: list[str], env: dict[str, str], out: Path, lines: int, extra_s: float, logs: Path
) -> None:
    """Start the CLI, wait until `out` has `lines` lines (and `extra_s` more), SIGKILL it."""
    with (logs / "stdout.txt").open("ab") as so, (logs / "stderr.txt").open("ab") as se:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=so, stderr=se)
        try:
            state = {"offset": 0, "lines": 0}
            deadline = time.monotonic() + START_TIMEOUT_S
            while _count_lines(out, state) < lines:
                if proc.poll() is not None:
                    pytest.fail(
                        f"predict exited ({proc.returncode}) before it was killed at {lines} "
                        f"lines; stderr:\n{(logs / 'stderr.txt').read_text()[-3000:]}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(f"predict did not reach {lines} lines in {START_TIMEOUT_S} s")
                time.sleep(0.01)
            time.sleep(extra_s)
            assert proc.poll() is None, "predict finished before it could be killed"
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _check_db(db: Path, out: Path) -> dict[int, tuple[str, str]]:
    """Integrity, and a committed row for each result in `out`; returns row -> (id, status)."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        committed = {
            request_id: (row, status, job_id)
            for request_id, row, status, job_id in conn.execute(
                "SELECT request_id, source_row, status, job_id FROM requests"
            )
        }
        dupes = conn.execute(
            "SELECT job_id, source_row, count(*) FROM requests "
            "GROUP BY job_id, source_row HAVING count(*) > 1"
        ).fetchall()
    conn.close()
    assert dupes == []
    jobs = {job_id for _, _, job_id in committed.values()}
    assert jobs == {1} or not committed, f"rows of more than one file job: {jobs}"
    for record in _out_records(out):
        found = committed.get(record["request_id"])
        assert found is not None, f"in --out but not committed: {record}"
        assert found[:2] == (record["row"], record["status"]), (record, found)
    return {row: (request_id, status) for request_id, (row, status, _) in committed.items()}


@pytest.mark.slow
def test_sigkill_mid_file_then_resume_processes_every_row_once(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    note = f"(seed {seed})"
    src = tmp_path / "iris.jsonl"
    rows, bad = _write_source(src, rng)
    db = tmp_path / "inferdeck.db"
    out = tmp_path / "out.jsonl"
    args = ["predict", str(src), "--db", str(db), "--out", str(out), "--json"]
    cmd = [sys.executable, "-m", "engine.cli", *args]
    env = {**os.environ, "INFERDECK_DB": str(db)}

    committed_counts = [0]
    for attempt, share in enumerate(KILL_AT):
        _kill_when(cmd, env, out, int(share * len(rows)), rng.uniform(0, 0.05), tmp_path)
        done = _check_db(db, out)
        assert committed_counts[-1] < len(done) < len(rows), (
            f"kill {attempt + 1} was not mid-file: {len(done)} of {len(rows)} rows {note}"
        )
        committed_counts.append(len(done))
        data = out.read_bytes()
        if attempt == 0 and data.endswith(b"\n"):
            # As if killed inside `write()`: half of one more line, no newline.
            last = data[data.rstrip(b"\n").rfind(b"\n") + 1 :]
            out.write_bytes(data + last[: len(last) // 2])
        elif attempt == 1:
            # As if killed between a commit and its write: the last 300 results never arrived.
            lines = data[: data.rfind(b"\n") + 1].splitlines(keepends=True)
            out.write_bytes(b"".join(lines[:-300]))

    with sqlite3.connect(db) as conn:
        runs = conn.execute("SELECT status FROM runs ORDER BY started_us").fetchall()
        job = conn.execute("SELECT status FROM file_jobs").fetchall()
    conn.close()
    # Nothing opened the file since the last kill, so its run still reads `running`.
    assert [s for (s,) in runs] == ["interrupted", "interrupted", "running"], note
    assert job == [("running",)], note
    before = _check_db(db, out)
    left = rows - set(before)
    left_bad = left & bad
    assert left_bad, f"the final run must meet some invalid rows {note}"

    final: CliResult = run_cli(args, db, timeout=120)
    assert final.code == (1 if left_bad else 0), final.stderr
    assert "resumed job 1" in final.stderr
    summary = final.summary
    # The summary counts only what this run processed, not the rows done before the crashes.
    assert summary["accepted"] == len(left), note
    assert summary["ok"] == len(left - bad), note
    assert summary["rejected"] == len(left_bad), note
    assert summary["failed"] == 0, note

    done = _check_db(db, out)
    with sqlite3.connect(db) as conn:
        unfinished = conn.execute(
            "SELECT count(*) FROM requests WHERE status IN ('queued', 'running')"
        ).fetchone()
        per_row = conn.execute(
            "SELECT count(*), count(DISTINCT source_row), min(source_row), max(source_row) "
            "FROM requests WHERE job_id = 1"
        ).fetchone()
        total = conn.execute("SELECT count(*) FROM requests").fetchone()
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM requests GROUP BY status").fetchall()
        )
        jobs = conn.execute(
            "SELECT job_id, status, rows_done, rows_total, run_id FROM file_jobs"
        ).fetchall()
        runs = conn.execute("SELECT run_id, status FROM runs ORDER BY started_us").fetchall()
    conn.close()
    assert unfinished == (0,)
    assert per_row == (len(rows), len(rows), min(rows), max(rows))
    assert total == (len(rows),)
    assert set(done) == rows
    assert statuses == {"ok": len(rows - bad), "rejected": len(bad)}
    assert {row for row, (_, status) in done.items() if status == "rejected"} == bad
    # Rows committed before the final run kept their first (and only) request.
    assert all(done[row] == before[row] for row in before)
    assert jobs == [(1, "done", len(rows), len(rows), summary["run_id"])]
    assert [status for _, status in runs] == ["interrupted"] * len(KILL_AT) + ["done"]
    assert runs[-1][0] == summary["run_id"]

    # `--out` ends whole and holds every row of the file exactly once, with its committed result.
    data = out.read_bytes()
    assert data.endswith(b"\n")
    records = [json.loads(line) for line in data.splitlines()]
    out_rows = [r["row"] for r in records]
    assert len(out_rows) == len(set(out_rows)) == len(rows), (
        f"{len(out_rows)} lines for {len(set(out_rows))} distinct rows of {len(rows)} {note}"
    )
    assert set(out_rows) == rows
    assert {r["row"]: (r["request_id"], r["status"]) for r in records} == done


LOCKED_ROWS = 30_000
# Longer than the product's `busy_timeout` (5 s): one group commit fails with "database is locked";
# the writer's next attempt waits out the rest and succeeds.
LOCK_HOLD_S = 6.5


@pytest.mark.slow
def test_results_whose_commit_failed_stay_out_of_out_and_are_redone_on_resume(
    tmp_path: Path,
) -> None:
    """Another process holds the write lock past the busy timeout, so one transaction of results
    fails. Those results have no row, so they must not reach `--out`, and the job must stay
    resumable: running the file again stores exactly them, once."""
    src = tmp_path / "iris.jsonl"
    src.write_bytes(
        b"".join(
            b'{"sepal_length":%.1f,"sepal_width":3.0,"petal_length":%.1f,"petal_width":1.2}\n'
            % (4.0 + (i % 40) / 10, 1.0 + (i % 60) / 10)
            for i in range(LOCKED_ROWS)
        )
    )
    rows = set(range(1, LOCKED_ROWS + 1))
    db = tmp_path / "inferdeck.db"
    out = tmp_path / "out.jsonl"
    args = ["predict", str(src), "--db", str(db), "--out", str(out), "--json"]
    env = {**os.environ, "INFERDECK_DB": str(db)}
    cmd = [sys.executable, "-m", "engine.cli", *args]

    with (tmp_path / "stdout.txt").open("w+") as so, (tmp_path / "stderr.txt").open("w+") as se:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=so, stderr=se, text=True)
        try:
            state = {"offset": 0, "lines": 0}
            deadline = time.monotonic() + START_TIMEOUT_S
            while _count_lines(out, state) < LOCKED_ROWS // 5:
                assert proc.poll() is None, "predict ended before the lock was taken"
                assert time.monotonic() < deadline, "predict made no progress"
                time.sleep(0.01)
            lock = sqlite3.connect(db, isolation_level=None, timeout=30)
            try:
                lock.execute("BEGIN IMMEDIATE")
                time.sleep(LOCK_HOLD_S)
                lock.execute("ROLLBACK")
            finally:
                lock.close()
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        so.seek(0)
        se.seek(0)
        first = CliResult(code, so.read(), se.read())

    assert first.code == 1, first.stderr
    summary = first.summary
    assert summary["failed"] > 0, "no commit failed: the lock did not bite"
    assert summary["ok"] + summary["failed"] == LOCKED_ROWS
    assert "database is locked" in first.stderr
    done = _check_db(db, out)  # every result in `--out` has its committed row
    # Exactly the results reported `ok` are stored: the writer never splits a group of results
    # over two transactions, so each group hears the one outcome all its rows share.
    assert len(done) == summary["ok"]
    records = _out_records(out)
    assert len(records) == summary["ok"]
    assert {r["status"] for r in records} == {"ok"}
    with sqlite3.connect(db) as conn:
        job = conn.execute("SELECT status, rows_done FROM file_jobs").fetchall()
    conn.close()
    # Rows are missing, so the job is not done: running the file again must resume it.
    assert job == [("interrupted", summary["ok"])]

    second = run_cli(args, db, timeout=120)
    assert second.code == 0, second.stderr
    assert "resumed job 1" in second.stderr
    assert second.summary["ok"] == summary["failed"]
    assert second.summary["failed"] == 0
    after = _check_db(db, out)
    assert set(after) == rows
    assert all(after[row] == done[row] for row in done)
    records = _out_records(out)
    assert len(records) == len({r["row"] for r in records}) == LOCKED_ROWS
    with sqlite3.connect(db) as conn:
        job = conn.execute("SELECT status, rows_done, rows_total FROM file_jobs").fetchall()
        total = conn.execute("SELECT count(*) FROM requests").fetchone()
    conn.close()
    assert job == [("done", LOCKED_ROWS, LOCKED_ROWS)]
    assert total == (LOCKED_ROWS,)
