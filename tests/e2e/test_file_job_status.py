"""File jobs end saying what happened, and no input can hang, blow up or erase a run.

Through the real CLI (`inferdeck predict`, a subprocess on a real SQLite file) and the real app
window (offscreen): a run and its file jobs are stored `done`, `cancelled`, `interrupted` or
`failed` with the rows done and the rows the file has; Ctrl+C ends a run promptly with its
summary; a FIFO or a device is refused in one line; `--out` can name neither an input nor the
database; an oversized or deeply nested row is one rejected row, with bounded memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import qasync
from conftest import REPO, CliResult
from PySide6.QtWidgets import QApplication, QMessageBox

from gui.app import run_app
from gui.main_window import MainWindow

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
GOOD = json.dumps(ROW)
CSV_HEADER = "sepal_length,sepal_width,petal_length,petal_width\n"
BIG_ROWS = 150_000  # enough that a run is still going when it is stopped, on a busy machine


def _clean(res: CliResult) -> None:
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert "internal error" not in res.stderr, res.stderr


def _big_jsonl(path: Path, rows: int = BIG_ROWS) -> Path:
    path.write_text((GOOD + "\n") * rows)
    return path


def _stored(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def _rows_stored(db: Path) -> int:
    try:
        return int(_stored(db, "SELECT count(*) FROM requests")[0][0])
    except sqlite3.Error:
        return 0  # not created yet


def _popen_cli(args: list[str], db: Path) -> subprocess.Popen[str]:
    """The CLI as a person's terminal starts it: SIGINT at its default (a process started in
    the background by a non-interactive shell would inherit it ignored; see PLATFORM.md)."""
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "INFERDECK_DB": str(db)},
        cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_rows(proc: subprocess.Popen[str], db: Path, rows: int, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while _rows_stored(db) < rows:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no rows were stored in time"
        time.sleep(0.05)


# -- Ctrl+C ----------------------------------------------------------------------------------


def test_ctrl_c_ends_predict_promptly_with_its_summary_and_a_cancelled_run(
    cli: Any, db_path: Path, tmp_path: Path
) -> None:
    src = _big_jsonl(tmp_path / "big.jsonl")
    out = tmp_path / "out.jsonl"
    proc = _popen_cli(["predict", str(src), "--json", "--out", str(out)], db_path)
    try:
        _wait_for_rows(proc, db_path, 200, deadline_s=120)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    took = time.monotonic() - sent
    res = CliResult(proc.returncode, stdout, stderr)
    _clean(res)
    assert took < 15, f"Ctrl+C took {took:.1f} s to end the command"
    assert res.code == 130
    summary = res.summary
    assert summary["status"] == "cancelled"
    assert summary["rows_total"] == BIG_ROWS
    ((run_status, stored_summary),) = _stored(db_path, "SELECT status, summary FROM runs")
    ((job_status, rows_done, rows_total),) = _stored(
        db_path, "SELECT status, rows_done, rows_total FROM file_jobs"
    )
    committed = _rows_stored(db_path)
    assert run_status == job_status == "cancelled"
    assert 0 < summary["rows_done"] == rows_done == committed < BIG_ROWS
    assert rows_total == BIG_ROWS
    assert json.loads(stored_summary)["rows_done"] == committed
    assert len(out.read_text().splitlines()) == committed  # --out holds exactly what committed
    shown = cli("runs", "show", summary["run_id"])
    assert "(predict, cancelled)" in shown.stdout
    assert f"cancelled, {committed} of {BIG_ROWS} rows" in shown.stdout

    # Running it again resumes the cancelled job: every row once, the run and job `done`.
    again = cli("predict", src, "--json", "--out", out, timeout=600)
    _clean(again)
    assert again.code == 0, again.stderr
    assert again.summary["status"] == "done"
    assert again.summary["rows_done"] == again.summary["rows_total"] == BIG_ROWS
    assert _rows_stored(db_path) == BIG_ROWS
    assert _stored(db_path, "SELECT status, rows_done, rows_total FROM file_jobs") == [
        ("done", BIG_ROWS, BIG_ROWS)
    ]
    assert len(out.read_text().splitlines()) == BIG_ROWS


def test_sigterm_ends_predict_with_what_it_stored_and_an_interrupted_run_that_resumes(
    cli: Any, db_path: Path, tmp_path: Path
) -> None:
    """`kill`, a service manager or a container stopping: the run ends as Ctrl+C ends it (its
    summary printed and stored, every committed row kept), marked `interrupted`, and the next
    run resumes the job. Before, SIGTERM killed the process mid-write."""
    src = _big_jsonl(tmp_path / "big.jsonl")
    proc = _popen_cli(["predict", str(src), "--json"], db_path)
    try:
        _wait_for_rows(proc, db_path, 200, deadline_s=120)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    res = CliResult(proc.returncode, stdout, stderr)
    _clean(res)
    assert res.code == 143
    assert "inferdeck: terminated: stopping after the rows in flight" in res.stderr
    summary = res.summary
    assert summary["status"] == "interrupted"
    ((run_status,),) = _stored(db_path, "SELECT status FROM runs")
    ((job_status, rows_done),) = _stored(db_path, "SELECT status, rows_done FROM file_jobs")
    committed = _rows_stored(db_path)
    assert run_status == job_status == "interrupted"
    assert 0 < summary["rows_done"] == rows_done == committed < BIG_ROWS
    again = cli("predict", src, "--json", timeout=600)
    _clean(again)
    assert again.code == 0, again.stderr
    assert again.summary["rows_done"] == BIG_ROWS and _rows_stored(db_path) == BIG_ROWS


# -- files that are not files ------------------------------------------------------------------


def test_a_fifo_and_dev_zero_are_refused_in_one_line(
    cli: Any, db_path: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "pipe"), (Path("/dev/zero"), "device")):
        # Before: the FIFO hung after hashing, /dev/zero hashed forever (the timeout fails it).
        res = cli("predict", path, "--json", timeout=60)
        _clean(res)
        assert res.code == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and kind in lines[0] and "not a regular file" in lines[0], lines


# -- --out onto what it must not touch -------------------------------------------------------


def test_out_naming_an_input_or_the_database_is_refused_and_nothing_is_truncated(
    cli: Any, db_path: Path, tmp_path: Path
) -> None:
    src = tmp_path / "rows.jsonl"
    body = (GOOD + "\n") * 3
    src.write_text(body)
    assert cli("predict", src).code == 0  # the database now exists, with a run in it
    hard = tmp_path / "hard-link.jsonl"
    os.link(src, hard)
    soft = tmp_path / "symlink.jsonl"
    soft.symlink_to(src)
    relative = os.path.relpath(src, REPO)  # the CLI runs in REPO
    db_before = db_path.read_bytes()
    runs_before = _stored(db_path, "SELECT count(*) FROM runs")
    # The input by another spelling, a hard link, a symbolic link; the database itself.
    for out in (relative, hard, soft, db_path):
        res = cli("predict", src, "--out", out)
        _clean(res)
        assert res.code == 2, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "nothing was changed" in res.stderr
        assert src.read_text() == body
    assert db_path.read_bytes() == db_before
    assert _stored(db_path, "SELECT count(*) FROM runs") == runs_before


# -- rows too large or too deep --------------------------------------------------------------

_PEAK = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(proc.stdout)
sys.stderr.write(proc.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(proc.returncode)
"""


def _cli_peak_rss(args: list[str | Path], db: Path) -> tuple[CliResult, int]:
    """Run the CLI under a fresh wrapper process and return its peak RSS in KiB: the
    wrapper's RUSAGE_CHILDREN covers the CLI alone, not every process this test run made."""
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK, sys.executable, "-m", "engine.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "INFERDECK_DB": str(db)},
        cwd=REPO,
    )
    out, _, peak = proc.stdout.rstrip("\n").rpartition("\n")
    return CliResult(proc.returncode, out, proc.stderr), int(peak)


def test_a_multi_megabyte_row_is_rejected_with_bounded_memory(tmp_path: Path) -> None:
    width = 30 << 20  # 30 MB in one row: ~10 million short cells for the CSV parser
    wide_csv = tmp_path / "wide.csv"
    wide_csv.write_text(
        CSV_HEADER + "5.1,3.5,1.4,0.2\n" + "10," * (width // 3) + "1\n" + "6,3,5,2\n"
    )
    wide_jsonl = tmp_path / "wide.jsonl"
    wide_jsonl.write_text(GOOD + '\n{"sepal_length": [' + "10," * (width // 3) + "1]}\n" + GOOD)
    wide_json = tmp_path / "wide.json"
    wide_json.write_text(
        f'[{GOOD},\n{{"sepal_length": [' + "10," * (width // 3) + f"1]}},\n{GOOD}]\n"
    )
    small = tmp_path / "small.csv"
    small.write_text(CSV_HEADER + "5.1,3.5,1.4,0.2\n")
    baseline, base_kib = _cli_peak_rss(["predict", small], tmp_path / "base.db")
    assert baseline.code == 0, baseline.stderr
    db = tmp_path / "wide.db"
    res, peak_kib = _cli_peak_rss(["predict", wide_csv, wide_jsonl, wide_json, "--json"], db)
    _clean(res)
    assert res.code == 1, res.stderr
    assert f"{wide_csv}: row 2 (line 3): row is longer than 1 MiB; skipped" in res.stderr
    assert f"{wide_jsonl}: line 2: line is longer than 1 MiB; skipped" in res.stderr
    assert f"{wide_json}: line 2: value is longer than 1 MiB; skipped" in res.stderr
    assert res.summary["ok"] == 6 and res.summary["rejected"] == 3
    assert res.summary["status"] == "done" and res.summary["rows_total"] == 9
    # Before: the CSV row alone took ~1.1 GB on top of the CLI's own ~350 MB.
    grown_mb = (peak_kib - base_kib) / 1024
    assert grown_mb < 150, f"peak RSS grew {grown_mb:.0f} MB over a one-row run"


def test_a_deeply_nested_json_document_is_one_rejected_row(
    cli: Any, db_path: Path, tmp_path: Path
) -> None:
    deep = '{"sepal_length": ' + "[" * 100_000 + "]" * 100_000 + "}"
    src = tmp_path / "deep.json"
    src.write_text(f"[\n{GOOD},\n{deep},\n{GOOD}\n]\n")
    res = cli("predict", src, "--json")
    _clean(res)
    assert res.code == 1, res.stderr
    assert f"{src}: row 2 (line 3): nested too deeply to decode; skipped" in res.stderr
    assert res.summary["ok"] == 2 and res.summary["rejected"] == 1
    assert (res.summary["status"], res.summary["rows_done"], res.summary["rows_total"]) == (
        "done",
        3,
        3,
    )
    assert _stored(db_path, "SELECT status, rows_done, rows_total FROM file_jobs") == [
        ("done", 3, 3)
    ]
    statuses = _stored(db_path, "SELECT source_row, status FROM requests ORDER BY source_row")
    assert statuses == [(1, "ok"), (2, "rejected"), (3, "ok")]


# -- failures -----------------------------------------------------------------------------------


def test_a_binary_file_makes_the_run_failed_not_done(
    cli: Any, db_path: Path, tmp_path: Path
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text((GOOD + "\n") * 4)
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    res = cli("predict", good, binary, "--json")
    _clean(res)
    assert res.code == 1
    summary = res.summary
    assert summary["status"] == "failed"
    assert summary["rows_done"] == 4
    assert any("blob.jsonl" in e and "binary" in e for e in summary["errors"]), summary
    assert _stored(db_path, "SELECT status FROM runs") == [("failed",)]

    alone = cli("predict", binary, "--json")
    assert alone.code == 2
    assert alone.summary["status"] == "failed"
    assert _stored(db_path, "SELECT status FROM runs ORDER BY started_us") == [
        ("failed",),
        ("failed",),
    ]


# Raises an unexpected exception for one row, inside the engine, in the real CLI process: what
# any bug or unforeseen input in the per-row path would do.
_FAULTY_ROW = """
import sys
import engine.validation as validation
real = validation.RowValidator.validate
def validate(self, data):
    if b"boom" in (data if isinstance(data, bytes) else repr(data).encode()):
        raise TypeError("boom: something no check foresaw")
    return real(self, data)
validation.RowValidator.validate = validate
from engine.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_row_that_raises_is_rejected_and_the_rows_after_it_run(
    db_path: Path, tmp_path: Path
) -> None:
    src = tmp_path / "rows.jsonl"
    full = {"client_id": "alice", "model": "iris", "input_payload": ROW}
    lines = [
        GOOD,
        json.dumps({**ROW, "note": "boom"}),
        json.dumps({**full, "metadata": {"n": 2**70}}),  # above 64 bits
        GOOD,
    ]
    src.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [sys.executable, "-c", _FAULTY_ROW, "predict", str(src), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "INFERDECK_DB": str(db_path)},
        cwd=REPO,
    )
    res = CliResult(proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in res.stderr
    assert res.code == 1, res.stderr
    assert f"{src}: line 2: could not process this row: TypeError: boom" in res.stderr
    # A per-field rejection once the contract checks the integer's size; this row's own
    # rejection whatever raised.
    assert f"{src}: line 3" in res.stderr
    assert res.summary["accepted"] == 4
    assert res.summary["ok"] == 2 and res.summary["rejected"] == 2
    assert res.summary["status"] == "done" and res.summary["rows_total"] == 4
    statuses = _stored(db_path, "SELECT source_row, status FROM requests ORDER BY source_row")
    assert statuses == [(1, "ok"), (2, "rejected"), (3, "rejected"), (4, "ok")]
    assert _stored(db_path, "SELECT status, rows_done, rows_total FROM file_jobs") == [
        ("done", 4, 4)
    ]


# -- the app -----------------------------------------------------------------------------------


def _drop_and_stop(db: Path, src: Path, stop: str) -> dict[str, Any]:
    """Drop `src` on the real window; once rows are flowing, press Cancel or close the window."""
    seen: dict[str, Any] = {}

    async def drive(window: MainWindow) -> None:
        while "ready" not in window.model_state.text():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        window.drop_files([src])
        panel = window.drop_panel
        deadline = time.monotonic() + 120
        while panel.progress.value() <= 0:  # -1 before a job starts
            assert time.monotonic() < deadline, "the dropped file did not start"
            await asyncio.sleep(0.02)
        if stop == "close":
            window.close()
            # The window asks before quitting during a job: the person says Quit.
            while window.quit_question is None:
                assert time.monotonic() < deadline, "closing did not ask"
                await asyncio.sleep(0.02)
            window.quit_question.button(QMessageBox.StandardButton.Yes).click()
            return
        panel.cancel_button.click()
        while panel.cancel_button.isEnabled():
            assert time.monotonic() < deadline, "Cancel did not end the job"
            await asyncio.sleep(0.02)
        seen["panel"] = panel.status.text()
        window.close()

    qasync.run(run_app(db, 120, drive))
    return seen


def _files_run(db: Path) -> tuple[str, dict[str, Any], tuple[Any, ...]]:
    ((status, summary),) = _stored(db, "SELECT status, summary FROM runs WHERE kind = 'files'")
    (job,) = _stored(db, "SELECT status, rows_done, rows_total FROM file_jobs")
    return status, json.loads(summary), job


def test_cancel_in_the_app_stores_the_run_cancelled_with_its_rows(
    qapp: QApplication, tmp_path: Path
) -> None:
    src = _big_jsonl(tmp_path / "drop.jsonl")
    db = tmp_path / "app.db"
    seen = _drop_and_stop(db, src, "cancel")
    assert "cancelled" in seen["panel"]
    status, summary, job = _files_run(db)
    committed = _rows_stored(db)
    assert status == "cancelled"
    assert job == ("cancelled", committed, BIG_ROWS)
    assert (summary["status"], summary["rows_done"], summary["rows_total"]) == (
        "cancelled",
        committed,
        BIG_ROWS,
    )
    assert 0 < committed < BIG_ROWS


def test_closing_the_window_during_a_job_stores_it_interrupted(
    qapp: QApplication, tmp_path: Path
) -> None:
    src = _big_jsonl(tmp_path / "drop.jsonl")
    db = tmp_path / "app.db"
    _drop_and_stop(db, src, "close")
    status, summary, job = _files_run(db)
    committed = _rows_stored(db)
    assert status == "interrupted"
    assert job[0] == "interrupted" and job[1] == committed
    assert summary["rows_done"] == committed < BIG_ROWS
