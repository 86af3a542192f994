"""The real CLI on a real file and a real SQLite database: a good file end to end."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from conftest import CliResult

IRIS_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def test_predict_jsonl_commits_every_row_and_streams_out(
    cli: object, db_path: Path, tmp_path: Path
) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(IRIS_ROW) + "\n" for _ in range(50)))
    out = tmp_path / "out.jsonl"
    res: CliResult = cli("predict", src, "--out", out, "--json")  # type: ignore[operator]
    assert res.code == 0, res.stderr
    summary = res.summary
    assert summary["ok"] == 50 and summary["rejected"] == 0 and summary["failed"] == 0
    assert set(summary["latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == 50
    assert {r["output"]["label"] for r in results} == {"setosa"}
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM requests WHERE run_id = ? GROUP BY status",
            (summary["run_id"],),
        ).fetchall()
        assert rows == [("ok", 50)]
        ids = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
    assert ids == {r["request_id"] for r in results}
