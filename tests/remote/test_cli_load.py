"""`inferdeck load` as scripts use it: the `--json` summary line, the human summary, exit codes."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from live_server import free_port
from tiny_server import TinyServer

REPO = Path(__file__).resolve().parents[2]


def test_json_summary_and_exit_0(cli: Any, db_path: Path, tmp_path: Path) -> None:
    payload = tmp_path / "rows.jsonl"
    payload.write_text('{"a": 1}\n{"a": 2}\n')
    with TinyServer() as server:
        result = cli(
            "load", server.url, "--protocol", "json", "--concurrency", "3", "--requests", "25",
            "--payload", payload, "--header", "X-Team: ml", "--json",
        )  # fmt: skip
    assert result.code == 0, result.stderr
    summary = result.summary
    assert (summary["accepted"], summary["ok"], summary["failed"], summary["rejected"]) == (
        25,
        25,
        0,
        0,
    )
    assert summary["errors"] == {}
    assert set(summary["latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}
    assert summary["throughput_per_s"] > 0 and summary["duration_s"] > 0
    with sqlite3.connect(db_path) as conn:
        inputs = [r[0] for r in conn.execute("SELECT input FROM requests ORDER BY id")]
        kind = conn.execute("SELECT kind FROM runs WHERE run_id = ?", (summary["run_id"],))
        assert kind.fetchone() == ("load",)
    assert len(inputs) == 25 and set(inputs) == {'{"a":1}', '{"a":2}'}  # the file, cycled


def test_failures_exit_1_with_error_classes(cli: Any) -> None:
    with TinyServer() as server:
        result = cli(
            "load", server.url + "/unavailable", "--protocol", "json", "--rate", "200",
            "--requests", "10",
        )  # fmt: skip
    assert result.code == 1, result.stderr
    assert "0 ok, 10 failed" in result.stdout
    assert "errors: http_503 10" in result.stdout
    assert "p99" in result.stdout


def test_unreachable_target_exits_2_in_one_line(cli: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("load", url, "--protocol", "json", "--concurrency", "1", "--requests", "3")
    assert result.code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unreachable (connect_refused" in result.stderr and "Traceback" not in result.stderr


def test_bad_arguments_and_unreadable_payloads_exit_2(cli: Any, tmp_path: Path) -> None:
    url = "http://127.0.0.1:9"
    both = cli("load", url, "--rate", "5", "--concurrency", "2")
    assert both.code == 2 and "not allowed with argument" in both.stderr
    missing = cli("load", url, "--rate", "5", "--payload", tmp_path / "nope.json")
    assert missing.code == 2 and "nope.json" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_url = cli("load", "ftp://x", "--rate", "5")
    assert bad_url.code == 2 and "http" in bad_url.stderr
    no_model = cli("load", url, "--protocol", "inferdeck", "--concurrency", "1")
    assert no_model.code == 2 and "needs a model" in no_model.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_a_signal_ends_the_run_with_its_summary_and_every_request_stored(
    db_path: Path, signum: signal.Signals
) -> None:
    """Ctrl+C, or SIGTERM from `kill` or a service manager: nothing new is sent, what is out
    gets its grace, and the summary is printed and stored with every request sent."""
    with TinyServer(delay_s=0.02) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "load", server.url, "--protocol", "json",
             "--rate", "100", "--duration", "120", "--db", str(db_path), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            # SIGINT at its default, as a person's terminal starts it (see PLATFORM.md).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while server.count < 30:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "no requests arrived in time"
                time.sleep(0.05)
            proc.send_signal(signum)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["sent"] >= 29 and summary["duration_s"] < 100
    with sqlite3.connect(db_path) as conn:
        (stored,) = conn.execute(
            "SELECT count(*) FROM requests WHERE run_id = ?", (summary["run_id"],)
        ).fetchone()
        (status,) = conn.execute(
            "SELECT status FROM runs WHERE run_id = ?", (summary["run_id"],)
        ).fetchone()
    assert stored == summary["sent"] and status == "done"
