"""`inferdeck load` and `inferdeck probe` with the server's own statistics, through the command
line against real processes on 127.0.0.1.

- `serve --workers 2` found on its own (OIP statistics and `/metrics`): the `--json` summary's
  `server` object counts exactly the requests the client sent, and the stored run keeps the
  series the `runs show` command and the views read.
- A metrics endpoint that stalls or answers garbage (`--metrics-url` at a fault server) never
  disturbs the run: every request answered and stored, the run ends on time, and the summary
  says what was missing.
- A real Prometheus in front of two replicas (`--prometheus --selector`): per replica.
- A probe's rounds carry the server's figures.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_server import FaultServer, Rule
from live_server import ServeProcess
from prometheus_server import Prometheus, wait_for

from engine.cli.main import main
from engine.remote.load.server_side import SERVER_KEYS


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path_factory.mktemp("serve") / "serve.log", "--workers", "2")
    try:
        yield process
    finally:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=30)


def _json_line(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out = capsys.readouterr().out.strip().splitlines()
    value = json.loads(out[-1])
    assert isinstance(value, dict)
    return value


def test_load_summary_counts_what_the_server_counted(
    serve: ServeProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "load.db")
    argv = ["load", serve.url, "--protocol", "oip", "--model", "iris", "--concurrency", "4"]
    assert main([*argv, "--requests", "300", "--db", db, "--json"]) == 0
    summary = _json_line(capsys)
    server = summary["server"]
    assert isinstance(server, dict)
    assert set(SERVER_KEYS) <= set(server)
    # Every request this run sent, none of the preflight's: the first snapshot comes after it.
    assert summary["ok"] == 300 and server["requests"] == 300
    assert server["source"] == "metrics+oip-stats" and server["missing"] == []
    assert server["queue_ms"] is not None and server["compute_ms"] > 0
    assert server["pending_max"] is not None and server["batch_size_mean"] >= 1.0
    assert "server_series" not in summary  # stored with the run, not printed

    stored = sqlite3.connect(db).execute("SELECT summary FROM runs").fetchone()[0]
    kept = json.loads(stored)
    series = kept["server_series"]
    assert kept["server"]["requests"] == 300
    assert sum(i["requests"] for i in series) == 300
    assert all(i["source"] == "metrics+oip-stats" for i in series)
    assert main(["runs", "show", str(summary["run_id"]), "--db", db]) == 0
    assert "server (metrics+oip-stats): 300 requests" in capsys.readouterr().out

    # --no-server-stats: nothing is looked at, and the summary says so with null.
    assert main([*argv, "--requests", "20", "--db", db, "--json", "--no-server-stats"]) == 0
    assert _json_line(capsys)["server"] is None


@pytest.mark.parametrize("fault", ["stall", "garbage"])
def test_a_bad_metrics_endpoint_never_disturbs_the_run(
    fault: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FaultServer() as target, FaultServer(statistics_faults=True) as metrics:
        if fault == "stall":
            metrics.add(Rule("delay", delay_s=30.0))
        else:
            metrics.add(Rule("garbage"))
        db = str(tmp_path / "load.db")
        argv = ["load", target.url, "--protocol", "oip", "--model", "iris"]
        argv += ["--rate", "100", "--duration", "2", "--no-server-stats"]
        argv += ["--metrics-url", f"{metrics.url}/metrics", "--db", db, "--json"]
        began = time.monotonic()
        assert main(argv) == 0
        took = time.monotonic() - began
    summary = _json_line(capsys)
    assert summary["ok"] == summary["sent"] == 200 and summary["failed"] == 0
    # The run's 2 s, its set-up, and at most a bounded wait on the metrics at each end.
    assert took < 2 + 15, took
    server = summary["server"]
    assert isinstance(server, dict) and server["source"] is None
    missing = " ".join(server["missing"])
    assert "metrics" in missing and metrics.url.split("//")[1] in missing
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM requests").fetchone()[0]
    assert rows == 200


def test_a_fleet_through_prometheus_per_replica(
    serve: ServeProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = ServeProcess(tmp_path / "other.log")
    prometheus = None
    try:
        replicas = [serve.url.split("//")[1], other.url.split("//")[1]]
        prometheus = Prometheus(tmp_path, replicas, job="fleet")
        fleet = prometheus
        wait_for("Prometheus", fleet.ready, lambda: fleet.log.read_text())
        wait_for(
            "both replicas up",
            lambda: True if len(fleet.query('up{job="fleet"} == 1')) == 2 else None,
            lambda: str(fleet.query('up{job="fleet"}')),
        )
        db = str(tmp_path / "load.db")
        argv = ["load", serve.url, "--model", "iris", "--concurrency", "2", "--duration", "4"]
        argv += ["--prometheus", prometheus.url, "--selector", '{job="fleet"}']
        assert main([*argv, "--db", db, "--json"]) == 0
        summary = _json_line(capsys)
    finally:
        if prometheus is not None:
            prometheus.stop()
        other.proc.kill()
        other.proc.wait(timeout=30)
    server = summary["server"]
    assert isinstance(server, dict) and server["source"] == "prometheus"
    by_instance = {r["instance"]: r for r in server["replicas"]}
    assert set(by_instance) == set(replicas)
    # The load went to the first replica only; Prometheus lags it by up to a scrape.
    assert by_instance[replicas[0]]["requests"] > 0
    assert by_instance[replicas[1]]["requests"] == 0
    assert server["requests"] == sum(r["requests"] for r in server["replicas"])
    assert "Prometheus" in " ".join(server["in_use"])


def test_probe_rounds_carry_the_servers_figures(
    serve: ServeProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "probe.db")
    argv = ["probe", serve.url, "--protocol", "oip", "--model", "iris"]
    assert main([*argv, "--count", "2", "--interval", "0.5", "--db", db, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert all("server:" in line and "req/s" in line for line in out[:-1])
    rounds = summary["round_details"]
    assert [r["state"] for r in rounds] == ["up", "up"]
    assert all(r["server"]["source"] == "metrics+oip-stats" for r in rounds)
    assert all(r["server"]["pending"] is not None for r in rounds)
    assert summary["server"]["in_use"][0] == "OIP statistics"
