"""Edge cases through the real CLI: duplicate IDs, --restart, hostile images, a full disk,
a database from the future, and a broken user model. None may hang or print a traceback."""

from __future__ import annotations

import json
import shutil
import sqlite3
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, CliResult, run_cli

Cli = Callable[..., CliResult]
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _clean(res: CliResult) -> None:
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr


def _full(request_id: str) -> str:
    return json.dumps(
        {"client_id": "t", "model": "iris", "input_payload": ROW, "request_id": request_id}
    )


def test_a_repeated_caller_request_id_is_rejected_not_overwritten(
    cli: Cli, db_path: Path, tmp_path: Path
) -> None:
    src = tmp_path / "dup.jsonl"
    src.write_text(_full("same-1") + "\n" + _full("same-1") + "\n" + _full("other") + "\n")
    res = cli("predict", src, "--json")
    _clean(res)
    assert res.code == 1
    assert "line 2 field 'request_id'" in res.stderr and "already used" in res.stderr
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT source_row, status, request_id FROM requests ORDER BY 1")
        found = rows.fetchall()
    assert [(r[0], r[1]) for r in found] == [(1, "ok"), (2, "rejected"), (3, "ok")]
    assert found[0][2] == "same-1" and found[1][2] != "same-1"
    # The same IDs sent again in a later run are taken too.
    again = cli("predict", src, "--restart", "--json")
    assert again.summary["rejected"] == 3


def test_restart_supersedes_the_interrupted_job(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(ROW) + "\n" for _ in range(30)))
    assert cli("predict", src).code == 0
    with sqlite3.connect(db_path) as conn:  # as if the first run had been killed
        conn.execute("UPDATE file_jobs SET status = 'interrupted'")
    restarted = cli("predict", src, "--restart", "--json")
    assert restarted.code == 0 and restarted.summary["ok"] == 30
    plain = cli("predict", src, "--json")
    assert plain.code == 0 and plain.summary["ok"] == 30  # a fresh job, not a stale resume
    assert "resumed" not in plain.stderr
    with sqlite3.connect(db_path) as conn:
        statuses = [r[0] for r in conn.execute("SELECT status FROM file_jobs ORDER BY job_id")]
    assert statuses == ["superseded", "done", "done"]


def test_resume_keeps_the_model_the_job_started_with(
    cli: Cli, db_path: Path, tmp_path: Path
) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(ROW) + "\n" for _ in range(5)))
    assert cli("predict", src, "--model", "iris").code == 0
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE file_jobs SET status = 'interrupted'")
    res = cli("predict", src, "--model", "digits")
    _clean(res)
    assert res.code == 2
    assert "ran on model 'iris'" in res.stderr and "--restart" in res.stderr


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims a huge canvas: a decompression bomb by its header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_an_image_bomb_is_rejected_without_hanging(cli: Cli, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(40_000, 40_000))
    res = cli("predict", bomb, "--model", "digits", "--json", timeout=60)
    _clean(res)
    assert res.code == 1
    assert "bomb.png: row 1" in res.stderr and "not a readable image" in res.stderr


def test_a_full_disk_for_out_stops_with_one_line(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(ROW) + "\n" for _ in range(2000)))
    res = cli("predict", src, "--out", "/dev/full", timeout=60)
    _clean(res)
    assert res.code == 1
    assert "--out /dev/full" in res.stderr and "run the command again" in res.stderr
    with sqlite3.connect(db_path) as conn:
        job = conn.execute("SELECT status FROM file_jobs").fetchone()[0]
    assert job == "failed"  # stopped by an error; a later run resumes it and back-fills --out


def test_a_database_from_a_newer_version_is_refused_in_one_line(cli: Cli, db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 999")
    res = cli("runs", "list")
    assert res.code == 2
    assert res.stderr.strip().count("\n") == 0 and "newer than this InferDeck" in res.stderr


def test_a_broken_user_model_is_skipped_and_the_rest_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    broken = models / "bad"
    shutil.copytree(REPO / "engine" / "models" / "builtin" / "iris", broken)
    manifest = json.loads((broken / "model.json").read_text())
    manifest["name"] = "bad"
    manifest["labels"] = ["a", "b", "c", "d"]  # the network has 3 outputs
    (broken / "model.json").write_text(json.dumps(manifest))
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps(ROW) + "\n")
    monkeypatch.setenv("INFERDECK_MODELS_DIR", str(models))
    res = run_cli(["predict", src, "--json"], tmp_path / "d.db")
    _clean(res)
    assert res.code == 0 and res.summary["ok"] == 1
