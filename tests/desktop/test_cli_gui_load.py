"""`inferdeck gui --target URL ... --autostart`: the real app (offscreen) runs the load, stores it
with the app's UI loop lag, and ends with the `--json` summary; bad flags end in one line."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from live_server import free_port
from tiny_server import TinyServer


@pytest.mark.slow
def test_autostart_runs_the_load_in_the_app_and_prints_the_summary(cli: Any, db_path: Path) -> None:
    with TinyServer() as server:
        result = cli(
            "gui", "--db", db_path, "--target", server.url, "--protocol", "json",
            "--autostart", "--rate", "150", "--duration", "1.5", "--autoquit", "10", "--json",
        )  # fmt: skip
    # --autoquit counts from the models being ready; before its 1.5 s the run also waits for the
    # Monitor's first paint, its payloads and the target's health check: 10 s leaves a busy
    # machine room for all of that, and the run must end by itself, every request sent.
    assert result.code == 0, result.stderr
    summary = result.summary
    assert summary["kind"] == "load"
    assert summary["ok"] == summary["accepted"] == summary["sent"] == 225
    lag = summary["ui_loop_lag_ms"]
    assert set(lag) == {"p50", "p99", "max"} and lag["max"] >= lag["p99"] >= lag["p50"] >= 0
    with sqlite3.connect(db_path) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM requests WHERE run_id = ? AND status = 'ok'",
            (summary["run_id"],),
        ).fetchone()
        row = conn.execute(
            "SELECT kind, status, summary FROM runs WHERE run_id = ?", (summary["run_id"],)
        ).fetchone()
        gui_runs = conn.execute("SELECT count(*) FROM runs WHERE kind = 'gui'").fetchone()
    assert stored == (225,)
    assert row[0:2] == ("load", "done") and '"ui_loop_lag_ms"' in row[2]
    assert gui_runs == (1,)  # the app's own session run, beside the load run


@pytest.mark.slow
def test_autoquit_before_the_end_stops_the_run_and_keeps_it(cli: Any, db_path: Path) -> None:
    with TinyServer() as server:
        result = cli(
            "gui", "--db", db_path, "--target", server.url, "--protocol", "json",
            "--autostart", "--concurrency", "2", "--duration", "60", "--autoquit", "4", "--json",
        )  # fmt: skip
    assert result.code == 0, result.stderr
    summary = result.summary
    assert 0 < summary["duration_s"] < 10 and summary["ok"] > 10
    with sqlite3.connect(db_path) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM requests WHERE run_id = ?", (summary["run_id"],)
        ).fetchone()
    assert stored == (summary["accepted"],)


@pytest.mark.slow
def test_an_unreachable_target_exits_2_in_one_line(cli: Any, db_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli(
        "gui", "--db", db_path, "--target", url, "--protocol", "json",
        "--autostart", "--rate", "10", "--duration", "1", "--autoquit", "20", "--json",
    )  # fmt: skip
    assert result.code == 2
    assert result.stdout.strip() == ""
    assert result.stderr.strip().count("\n") == 0, result.stderr
    # Refused by the health check before any traffic, the reason in plain words.
    assert "is down: nothing is listening at that address (connection refused)" in result.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--autostart", "--rate", "5"], "--autostart needs --target URL"),
        (["--rate", "5"], "--rate needs --autostart"),
        (["--target", "http://127.0.0.1:9", "--json"], "--json needs --autostart"),
        (
            ["--target", "http://127.0.0.1:9", "--autostart", "--rate", "5", "--concurrency", "2"],
            "one of --rate R or --concurrency C",
        ),
        (["--target", "http://127.0.0.1:9", "--autostart"], "one of --rate R or --concurrency C"),
        (["--target", "ftp://x", "--autostart", "--rate", "5"], "must be an http:// or https://"),
        (["--target", "http://127.0.0.1:9", "--autostart", "--rate", "-1"], "rate must be above"),
        (["--model", "iris"], "--protocol and --model need --target"),
        (["--autoquit", "0"], "--autoquit must be above 0"),
    ],
)
def test_bad_flag_combinations_exit_2_in_one_line(cli: Any, flags: list[str], message: str) -> None:
    result = cli("gui", *flags, timeout=60)
    assert result.code == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
