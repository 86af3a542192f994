"""`inferdeck probe` against a real `inferdeck serve` on 127.0.0.1: lines, summary, exit codes.

Two runs go through the real CLI process (the --json contract, and Ctrl+C ending an open-ended
run with its summary); the rest call `main()` in this process, which is the same code.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, CliResult
from live_server import LiveServer, free_port

import engine.cli.probe as probe_command
import engine.cli.targets as targets_command
from engine.cli.main import main
from engine.remote.secrets import TokenStore
from engine.server import ServerSettings

CLI = (sys.executable, "-m", "engine.cli")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(ServerSettings(db_path=tmp_path_factory.mktemp("serve") / "serve.db"))
    live.start()
    yield live
    live.stop()


@pytest.fixture(autouse=True)
def _no_system_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERDECK_KEYRING", "memory")


def _env(db: Path) -> dict[str, str]:
    return {**os.environ, "INFERDECK_DB": str(db), "INFERDECK_KEYRING": "memory"}


def _summary(stdout: str) -> dict[str, Any]:
    return CliResult(0, stdout, "").summary


def test_probe_real_serve_json_summary_and_stored_rows(served: LiveServer, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    args = ["--model", "iris", "--count", "3", "--interval", "0.05", "--json"]
    proc = subprocess.run(
        [*CLI, "probe", served.url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(db),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 4  # one per round, then the summary
    for line in lines[:3]:
        assert "  up  " in line and "live 200" in line and "model_ready 200" in line
    summary = json.loads(lines[-1])
    assert summary["rounds"] == 3 and summary["final_state"] == "up"
    assert summary["states"] == {"up": 3, "degraded": 0, "down": 0}
    assert [(c["from"], c["to"]) for c in summary["changes"]] == [("unknown", "up")]
    assert summary["errors"] == {}
    latency = summary["latency_ms"]
    assert set(latency) == {"live", "ready", "model_ready"}
    assert all(0 < v["p50"] <= v["max"] < 5_000 for v in latency.values())
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT kind, status_code, ok, state FROM probes").fetchall()
    conn.close()
    assert sorted(rows) == sorted([(k, 200, 1, "up") for k in ("live", "ready", "model_ready")] * 3)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_probe_until_ctrl_c_ends_with_its_summary(
    served: LiveServer, tmp_path: Path, signum: signal.Signals
) -> None:
    proc = subprocess.Popen(
        [*CLI, "probe", served.url, "--interval", "0.05", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path / "cli.db"),
        cwd=REPO,
    )
    assert proc.stdout is not None
    first = [proc.stdout.readline(), proc.stdout.readline()]  # two rounds, then interrupt
    proc.send_signal(signum)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert all("  up  " in line for line in first)
    summary = _summary("".join(first) + rest)
    assert summary["rounds"] >= 2 and summary["final_state"] == "up"


def test_unknown_model_is_degraded_and_exits_1(
    served: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "cli.db")
    assert main(["probe", served.url, "--model", "nope", "--json", "--db", db]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert "degraded" in out[0] and "model_ready 404" in out[0]
    summary = _summary("\n".join(out))
    assert summary["final_state"] == "degraded" and summary["errors"] == {"model_ready": 1}


def test_closed_port_is_down_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code = main(
        [
            "probe",
            url,
            "--count",
            "2",
            "--interval",
            "0.01",
            "--json",
            "--db",
            str(tmp_path / "c.db"),
        ]
    )
    assert code == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3
    assert "down" in out[0] and "live ERR" in out[0] and "connect_refused" in out[0]
    summary = _summary("\n".join(out))
    assert summary["final_state"] == "down"
    assert summary["states"] == {"up": 0, "degraded": 0, "down": 2}
    assert summary["errors"] == {"live": 2, "ready": 2}


def test_probe_a_saved_target_by_name(
    served: LiveServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shared = TokenStore(system_keyring=False)  # one store for both commands, as in one app
    monkeypatch.setattr(targets_command, "TokenStore", lambda: shared)
    monkeypatch.setattr(probe_command, "TokenStore", lambda: shared)
    monkeypatch.setattr("sys.stdin", io.StringIO("tok-SECRET-probe\n"))
    db = str(tmp_path / "cli.db")
    assert (
        main(
            ["targets", "add", "local", served.url, "--model", "iris", "--token-stdin", "--db", db]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["probe", "local", "--json", "--db", db]) == 0
    out = capsys.readouterr().out
    summary = _summary(out)
    assert summary["target"] == "local" and summary["model"] == "iris"
    assert set(summary["latency_ms"]) == {"live", "ready", "model_ready"}
    assert "tok-SECRET-probe" not in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["probe", "http://127.0.0.1:1", "--count", "0"], "--count must be at least 1"),
        (["probe", "http://127.0.0.1:1", "--interval", "-1"], "--interval must be a positive"),
        (["probe", "http://127.0.0.1:1", "--timeout", "0"], "--timeout must be a positive"),
        (["probe", "ftp://host"], "base_url: must be an http"),
        (["probe", "no-such-target"], "neither an http(s) URL nor a saved target"),
        (["probe", "http://h", "--header", "nocolon"], "expected NAME:VALUE"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--db", str(tmp_path / "cli.db")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("inferdeck: ") and says in err[0], err


def test_protocol_is_checked_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["probe", "http://h", "--protocol", "grpc"])
    assert caught.value.code == 2
    assert "invalid choice: 'grpc'" in capsys.readouterr().err
