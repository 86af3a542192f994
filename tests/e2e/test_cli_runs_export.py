"""`runs`, `export` and `models` through the real CLI on a real database."""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, CliResult

Cli = Callable[..., CliResult]
ROW = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}


@pytest.fixture
def finished_run(cli: Cli, tmp_path: Path) -> dict[str, Any]:
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(ROW) + "\n" for _ in range(20)) + '{"sepal_length": 1}\n')
    res = cli("predict", src, "--json")
    assert res.code == 1, res.stderr  # one row is rejected
    return res.summary


def test_runs_list_and_show(cli: Cli, finished_run: dict[str, Any]) -> None:
    run_id = finished_run["run_id"]
    listed = cli("runs", "list", "--json")
    assert listed.code == 0
    runs = listed.summary["runs"]
    assert [r["run_id"] for r in runs] == [run_id]
    assert runs[0]["summary"]["ok"] == 20 and runs[0]["status"] == "done"
    shown = cli("runs", "show", run_id[:13], "--json")
    assert shown.code == 0, shown.stderr
    detail = shown.summary
    assert detail["status_counts"] == {"ok": 20, "rejected": 1}
    assert detail["file_jobs"][0]["rows_done"] == 21
    assert detail["file_jobs"][0]["status"] == "done"
    human = cli("runs", "show", run_id)
    assert "20 ok" in human.stdout and "1 rejected" in human.stdout


def test_unknown_run_is_one_line_and_exit_2(cli: Cli, finished_run: dict[str, Any]) -> None:
    res = cli("runs", "show", "ffffffff")
    assert res.code == 2
    assert res.stderr.strip().count("\n") == 0 and "no run matches" in res.stderr


def test_export_chrome_trace_is_valid_trace_event_format(
    cli: Cli, finished_run: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "trace.json"
    res = cli("export", finished_run["run_id"], "--format", "chrome-trace", "--out", out)
    assert res.code == 0, res.stderr
    trace = json.loads(out.read_text())
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    requests = [e for e in events if e["cat"] == "request"]
    assert len(requests) == 21
    for event in events:
        assert isinstance(event["ts"], int) and isinstance(event["dur"], int)
        assert event["ts"] >= 0 and event["dur"] >= 0
    ok_id = next(e["args"]["request_id"] for e in requests if e["args"]["status"] == "ok")
    stages = [e["name"] for e in events if e["cat"] == "stage" and e["args"]["request_id"] == ok_id]
    assert stages == ["validate", "metadata", "queue_wait", "inference", "write"]
    request = next(e for e in requests if e["args"]["request_id"] == ok_id)
    for stage in (e for e in events if e["cat"] == "stage" and e["args"]["request_id"] == ok_id):
        # Spans sit inside their request on the same lane, so the viewer nests them.
        assert stage["tid"] == request["tid"]
        assert request["ts"] <= stage["ts"] <= request["ts"] + request["dur"]


def test_export_csv_and_jsonl(cli: Cli, finished_run: dict[str, Any]) -> None:
    res = cli("export", finished_run["run_id"], "--format", "csv")
    assert res.code == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 21
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["label"] for r in ok} == {"virginica"}
    assert all(float(r["latency_ms"]) > 0 and int(r["inference_us"]) >= 0 for r in ok)
    bad = [r for r in rows if r["status"] == "rejected"]
    assert len(bad) == 1
    assert bad[0]["error"].startswith("sepal_width: Field required")
    res = cli("export", finished_run["run_id"], "--format", "jsonl")
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(records) == 21
    assert all(isinstance(r["spans"], list) for r in records)


def test_export_csv_carries_each_requests_inputs_and_scores(cli: Cli, tmp_path: Path) -> None:
    """One column per input field and one per label beside the fixed columns; a cell that a
    spreadsheet would run as a formula is quoted out; numbers stay numbers."""
    src = tmp_path / "rows.jsonl"
    bad = {"sepal_length": -1.5, "sepal_width": "=HYPERLINK(1)"}
    src.write_text(json.dumps(ROW) + "\n" + json.dumps(bad) + "\n")
    run_id = cli("predict", src, "--json").summary["run_id"]
    res = cli("export", run_id, "--format", "csv")
    assert res.code == 0, res.stderr
    header = next(csv.reader(io.StringIO(res.stdout)))
    assert header[:3] == ["request_id", "run_id", "source"] and "label" in header
    assert [h for h in header if h.startswith("input.")] == [f"input.{k}" for k in ROW]
    assert [h for h in header if h.startswith("score.")] == [
        "score.setosa",
        "score.versicolor",
        "score.virginica",
    ]
    ok, rejected = list(csv.DictReader(io.StringIO(res.stdout)))
    assert ok["status"] == "ok" and ok["label"] == "virginica"
    assert {k: float(ok[f"input.{k}"]) for k in ROW} == ROW
    scores = {k: float(ok[f"score.{k}"]) for k in ("setosa", "versicolor", "virginica")}
    assert max(scores, key=scores.__getitem__) == "virginica"
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-3)
    assert rejected["status"] == "rejected" and rejected["score.setosa"] == ""
    assert rejected["input.sepal_length"] == "-1.5"
    assert rejected["input.sepal_width"] == "'=HYPERLINK(1)"
    assert rejected["input.petal_length"] == ""


def test_models_list(cli: Cli) -> None:
    res = cli("models", "list", "--json")
    assert res.code == 0
    models = {m["name"]: m for m in res.summary["models"]}
    assert set(models) >= {"iris", "digits"}
    schema = models["iris"]["input_schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(ROW)
    assert models["digits"]["task"] == "image-classification"
    human = cli("models", "list")
    assert "iris" in human.stdout and "digits" in human.stdout


def test_bad_arguments_exit_2_without_traceback(cli: Cli) -> None:
    for args in (("predict",), ("export", "x", "--format", "pdf"), ("nonsense",)):
        res = cli(*args)
        assert res.code == 2, args
        assert "Traceback" not in res.stderr


def test_an_export_cut_short_keeps_the_earlier_file_and_leaves_no_part(
    cli: Cli, tmp_path: Path, db_path: Path
) -> None:
    """The disk fills mid-export (a file-size limit on the process: far below the export's size,
    above what reading the database writes): one line and exit 2, and the good export from before
    is untouched."""
    src = tmp_path / "many.jsonl"
    src.write_text("".join(json.dumps(ROW) + "\n" for _ in range(2000)))
    run_id = cli("predict", src, "--json").summary["run_id"]
    out = tmp_path / "exports" / "trace.json"
    out.parent.mkdir()
    assert cli("export", run_id, "--format", "chrome-trace", "--out", out).code == 0
    good = out.read_bytes()
    limit = 256 * 1024  # the database's shared-memory file takes 32 KiB; the export ~1.8 MB
    assert len(good) > 4 * limit

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command = ["export", run_id, "--format", "chrome-trace", "--out", str(out)]
    cut = subprocess.run(
        [sys.executable, "-m", "engine.cli", *command],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "INFERDECK_DB": str(db_path)},
        cwd=REPO,
        preexec_fn=small_files,
    )
    assert cut.returncode == 2, cut.stderr
    assert cut.stderr.startswith("inferdeck: ") and cut.stderr.count("\n") == 1, cut.stderr
    assert "Traceback" not in cut.stderr
    assert out.read_bytes() == good
    assert sorted(p.name for p in out.parent.iterdir()) == ["trace.json"]
