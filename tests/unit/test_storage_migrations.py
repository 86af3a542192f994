"""Schema migrations: from an empty file and from every earlier version to the latest."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from storage.database import prepare
from storage.migrations import MIGRATIONS, SCHEMA_VERSION, SchemaTooNewError, migrate


def _shape(conn: sqlite3.Connection) -> dict[str, object]:
    """Tables with their columns, and indexes with their columns: what queries rely on."""
    shape: dict[str, object] = {}
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    ).fetchall():
        cols = [(r[1], r[2], r[3], r[5]) for r in conn.execute(f"PRAGMA table_info({name})")]
        shape[f"table {name}"] = sorted(cols)
    for name, table, sql in conn.execute(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
    ).fetchall():
        cols = [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
        shape[f"index {name}"] = (table, cols, "WHERE" in (sql or ""))
    return shape


def test_empty_file_reaches_latest(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    assert migrate(conn) == SCHEMA_VERSION
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"requests", "runs", "clients", "file_jobs"} <= tables
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {
        "idx_requests_run",
        "idx_requests_status",
        "idx_requests_created",
        "idx_requests_latency",
        "idx_requests_job_row",
        "idx_requests_model",
        "idx_requests_client",
        "idx_requests_source",
    } <= indexes


@pytest.mark.parametrize("start", range(1, SCHEMA_VERSION))
def test_every_earlier_version_migrates_and_keeps_data(tmp_path: Path, start: int) -> None:
    fresh = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    migrate(fresh)
    old = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    migrate(old, target=start)
    assert old.execute("PRAGMA user_version").fetchone()[0] == start
    old.execute(
        "INSERT INTO requests (request_id, source, status, created_us) VALUES ('r1', 'x', 'ok', 1)"
    )
    old.execute("INSERT INTO runs (run_id, kind, started_us) VALUES ('run1', 'predict', 1)")
    migrate(old)
    assert old.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert _shape(old) == _shape(fresh)
    assert old.execute("SELECT request_id, status FROM requests").fetchall() == [("r1", "ok")]
    assert old.execute("SELECT run_id FROM runs").fetchall() == [("run1",)]


def test_migrations_are_idempotent_and_newer_files_are_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    migrate(conn)
    migrate(conn)  # a second open changes nothing
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNewError):
        migrate(conn)


def test_prepare_sets_wal_and_refuses_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "inferdeck.db"
    prepare(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(Exception, match="is a directory"):
        prepare(tmp_path)


def test_filter_indexes_reach_a_database_full_of_history(tmp_path: Path) -> None:
    """Migration 5 on a v4 file with requests: every row kept, each filter index built with the
    time and latency next to its column, and the planner's queries use them."""
    path = tmp_path / "v4.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=4)
    conn.executemany(
        "INSERT INTO requests (request_id, source, model, client_id, status, created_us, "
        "latency_us) VALUES (?, ?, 'iris', ?, ?, ?, ?)",
        [
            (f"r{i:04d}", f"/d/{i % 3}.csv", f"c{i % 4}", "ok" if i % 5 else "failed", i, 10 * i)
            for i in range(2000)
        ],
    )
    assert migrate(conn) == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 2000
    for name, column in [
        ("idx_requests_status", "status"),
        ("idx_requests_model", "model"),
        ("idx_requests_client", "client_id"),
        ("idx_requests_source", "source"),
    ]:
        cols = [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
        assert cols == [column, "created_us", "latency_us"]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM requests WHERE client_id = 'c1' "
        "ORDER BY created_us DESC LIMIT 5"
    ).fetchall()
    assert any("idx_requests_client" in str(step[3]) for step in plan)
    found = conn.execute(
        "SELECT request_id FROM requests INDEXED BY idx_requests_source "
        "WHERE source = '/d/1.csv' ORDER BY created_us DESC LIMIT 2"
    ).fetchall()
    assert found == [("r1999",), ("r1996",)]


def test_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    # `serve --workers N` opens one file from N processes at the same moment.
    path = tmp_path / "shared.db"
    script = (
        "import sys; from pathlib import Path; from storage.database import prepare; "
        "prepare(Path(sys.argv[1]))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path)], cwd=REPO, stderr=subprocess.PIPE
        )
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM clients WHERE client_id = 'gui'").fetchone() == (
            1,
        )
