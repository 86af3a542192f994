"""The live database is never opened outside SQLite, and writing stops if its files change.

SQLite's locks are POSIX locks, held per process: one `close()` of any descriptor on the
database file drops them all, and the next InferDeck process that closes its connection
deletes the `-wal` and `-shm` under the live one. These tests use the real app window
(offscreen), a real file on disk and the real CLI in another process, and look at
`/proc/self/fd` for a write-ahead log that is "(deleted)".
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import qasync
from conftest import REPO, run_on_qasync
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QFileSystemModel,
    QMessageBox,
    QPushButton,
)
from pytestqt.qtbot import QtBot

from engine.cli.load_args import LoadStartError
from engine.models import ModelRegistry
from engine.remote.load.child import build_payloads
from engine.remote.load.process import LoadSpec
from engine.remote.plan import LoadPlan
from engine.remote.targets import Target
from engine.tasks import TaskOwner
from gui.app import run_app
from gui.main_window import MainWindow
from gui.predict.predict_view import PredictView
from gui.runs.runs_view import RunsView
from storage import open_database
from storage.database import DatabaseFilesChangedError, is_live_database

SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
DEADLINE_S = 120.0  # generous: the machine is shared; every wait below polls a condition


def _deleted_db_files(db: Path) -> list[str]:
    """This process's descriptors on `db`'s files whose file was deleted under it."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(db)) and target.endswith("(deleted)"):
            found.append(target)
    return found


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _other_process_opens_and_closes(db: Path) -> None:
    """Any InferDeck command on the same file, as a user would run one from a terminal."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.cli.main",
        "runs",
        "list",
        "--db",
        str(db),
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err


def _gui_rows(window: MainWindow) -> int:
    table = window.requests_view.table_model
    return sum(1 for i in range(table.rowCount()) if table.row(i)["client_id"] == "gui")


async def _predict(window: MainWindow, count: int) -> None:
    await _until(lambda: "ready" in window.model_state.text(), "the models")
    window.tabs.setCurrentWidget(window.requests_view)  # (a hidden table takes no rows)
    before = _gui_rows(window)
    for _ in range(count):
        window.predict_view.sigPredict.emit("iris", dict(SETOSA))
    await _until(lambda: _gui_rows(window) >= before + count, f"{count} stored predictions")


def _stored(db: Path) -> tuple[str, int]:
    """integrity_check and the app's stored form requests, read by a fresh connection."""
    conn = sqlite3.connect(db)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM requests WHERE client_id = 'gui'").fetchone()[0]
    finally:
        conn.close()
    return check, rows


def _drop(window: MainWindow, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)


def test_file_dialog_on_the_database_folder_leaves_the_database_whole(
    qapp: QApplication, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    (tmp_path / "rows.jsonl").write_text("{}\n")
    seen: dict[str, object] = {}

    async def drive(window: MainWindow) -> None:
        await _predict(window, 5)
        window.choose_files()  # File → Open files…
        dialog = window.findChild(QFileDialog)
        assert dialog is not None
        dialog.selectNameFilter("All files (*)")
        dialog.setDirectory(str(tmp_path))
        model = dialog.findChild(QFileSystemModel)
        assert model is not None

        def listed() -> bool:
            # The type column is filled when the dialog has gathered the entry's details;
            # before the fix, that is where the database file was opened and closed.
            index = model.index(str(db))
            return index.isValid() and bool(model.type(index))

        await _until(listed, "the dialog to list the database's folder")
        seen["type"] = model.type(model.index(str(db)))
        dialog.reject()
        await _other_process_opens_and_closes(db)
        seen["deleted"] = _deleted_db_files(db)
        await _predict(window, 5)  # go on using the app
        window.close()

    qasync.run(run_app(db, None, drive))
    assert seen["deleted"] == [], seen
    assert seen["type"] == "DB file"  # named from the suffix, not sniffed from the contents
    assert _stored(db) == ("ok", 10)


def test_dropping_the_database_on_the_window_is_refused(qapp: QApplication, tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    seen: dict[str, object] = {}

    async def drive(window: MainWindow) -> None:
        await _predict(window, 3)
        await window.runs_view.load()
        runs_before = window.runs_view.table_model.rowCount()
        _drop(window, [db])
        seen["dropped"] = window.drop_panel.status.text()
        seen["busy"] = window.drop_panel.cancel_button.isEnabled()
        _drop(window, [Path(f"{db}-wal")])
        seen["dropped_wal"] = window.drop_panel.status.text()
        # The same file chosen in File → Open files… takes the same path.
        window.choose_files()
        dialog = window.findChild(QFileDialog)
        assert dialog is not None
        dialog.filesSelected.emit([str(db)])
        seen["chosen"] = window.drop_panel.status.text()
        dialog.reject()
        await _other_process_opens_and_closes(db)
        seen["deleted"] = _deleted_db_files(db)
        await window.runs_view.load()
        seen["new_runs"] = window.runs_view.table_model.rowCount() - runs_before
        await _predict(window, 3)
        window.close()

    qasync.run(run_app(db, None, drive))
    refused = "c.db is the database InferDeck has open; it cannot be run as an input file"
    assert refused in str(seen["dropped"]), seen
    assert "c.db-wal is the database InferDeck has open" in str(seen["dropped_wal"]), seen
    assert refused in str(seen["chosen"]), seen
    assert seen["busy"] is False
    assert seen["new_runs"] == 0  # no file job was started
    assert seen["deleted"] == [], seen
    assert _stored(db) == ("ok", 6)


def test_writing_stops_with_a_clear_message_when_the_log_is_deleted_under_it(
    tmp_path: Path,
) -> None:
    """The guard: a stray close (simulated here by opening the file directly) and another
    process's close delete the WAL; the next write is refused, and nothing goes into the
    deleted log."""
    db = tmp_path / "c.db"

    async def scenario() -> None:
        database = await open_database(db)
        try:
            insert = "INSERT INTO clients (client_id, display_name) VALUES (?, ?)"
            await database.writer.execute(insert, ("before", "kept"))
            assert is_live_database(db) and is_live_database(f"{db}-wal")
            with open(db, "rb") as fh:  # what the guards elsewhere prevent
                fh.read(16)
            await _other_process_opens_and_closes(db)
            deleted = _deleted_db_files(db)
            assert any(name.endswith("-wal (deleted)") for name in deleted), deleted
            wal_fd = next(
                int(fd)
                for fd in os.listdir("/proc/self/fd")
                if os.readlink(f"/proc/self/fd/{fd}") == f"{db}-wal (deleted)"
            )
            size_before = os.fstat(wal_fd).st_size
            commits = database.writer.commits
            refused = r"c\.db-wal was deleted or replaced"
            with pytest.raises(DatabaseFilesChangedError, match=refused):
                await database.writer.execute(insert, ("after", "refused"))
            with pytest.raises(DatabaseFilesChangedError):  # and every write after it
                await database.writer.execute(insert, ("later", "refused"))
            assert database.writer.commits == commits
            assert os.fstat(wal_fd).st_size == size_before  # nothing written into the lost log
        finally:
            await database.close()
        assert not is_live_database(db)

    asyncio.run(scenario())
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        names = [r[0] for r in conn.execute("SELECT client_id FROM clients ORDER BY client_id")]
    finally:
        conn.close()
    assert "before" in names and "after" not in names and "later" not in names


def test_the_app_says_writing_stopped_when_its_log_is_replaced(
    qapp: QApplication, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    seen: dict[str, object] = {}

    async def drive(window: MainWindow) -> None:
        await _predict(window, 2)
        # Another program swaps the log for a new file (a replaced inode, not only a deleted one).
        replacement = tmp_path / "other-wal"
        replacement.write_bytes(b"")
        os.replace(replacement, f"{db}-wal")
        window.predict_view.sigPredict.emit("iris", dict(SETOSA))

        def box() -> QMessageBox | None:
            return next((b for b in window.findChildren(QMessageBox) if b.isVisible()), None)

        await _until(lambda: box() is not None, "the message")
        message = box()
        assert message is not None
        seen["box"] = message.text()
        seen["db_state"] = window.db_state.text()
        message.close()
        window.close()

    qasync.run(run_app(db, None, drive))
    assert "c.db-wal was deleted or replaced by another program" in str(seen["box"])
    assert "stopped writing" in str(seen["box"])
    assert seen["db_state"] == "db: writing stopped"


def test_export_onto_the_database_is_refused_in_one_line(cli: Any, db_path: Path) -> None:
    rows = db_path.parent / "rows.jsonl"
    rows.write_text(json.dumps(SETOSA) + "\n")
    made = cli("predict", rows, "--model", "iris", "--json")
    assert made.code == 0, made.stderr
    run_id = made.summary["run_id"]
    size = db_path.stat().st_size
    for target in (db_path, Path(f"{db_path}-wal")):
        result = cli("export", run_id, "--format", "csv", "--out", target)
        assert result.code == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"inferdeck: --out {target}: that is the database; choose another file"
        ]
    assert db_path.stat().st_size == size
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 1
    finally:
        conn.close()


def test_image_payload_and_export_choices_never_open_the_database(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    """What a dialog hands back is checked before it is opened: the form's image, the load
    run's payload file and the Runs export target."""
    db = tmp_path / "c.db"
    seen: dict[str, object] = {}

    async def main() -> None:
        database = await open_database(db)
        tasks = TaskOwner()
        try:
            registry = ModelRegistry.discover()
            view = PredictView([registry.models[n] for n in registry.names()])
            qtbot.addWidget(view)
            view.model_box.setCurrentText("digits")
            fields = view._fields.items()
            image_field = next(n for n, f in fields if isinstance(f.editor, QPushButton))
            view.set_image(image_field, db)
            seen["image"] = view._image_errors.get(image_field)
            spec = LoadSpec(
                Target(name="t", base_url="http://127.0.0.1:9"),
                LoadPlan(rate=1.0, requests=1),
                payload_kind="file",
                payload_text=str(db),
            )
            with pytest.raises(LoadStartError) as payload_error:
                await build_payloads(database, spec)
            seen["payload"] = str(payload_error.value)
            runs = RunsView(database, tasks)
            qtbot.addWidget(runs)
            seen["export"] = await runs.export_run("any", "csv", db)
            seen["export_status"] = runs.status.text()
            await database.writer.execute(
                "INSERT INTO clients (client_id, display_name) VALUES ('kept', 'kept')"
            )
            await _other_process_opens_and_closes(db)
            seen["deleted"] = _deleted_db_files(db)
        finally:
            await tasks.wait()
            await database.close()

    run_on_qasync(qapp, main())
    assert seen["deleted"] == [], seen
    assert "c.db is the database InferDeck has open; it cannot be used as an image" in str(
        seen["image"]
    )
    assert "is the database InferDeck has open, not a payload file" in str(seen["payload"])
    assert seen["export"] == -1
    assert "Export refused: c.db is the database InferDeck has open" in str(seen["export_status"])
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM clients WHERE client_id = 'kept'").fetchone()
    finally:
        conn.close()


def test_the_cli_stops_in_one_line_when_its_log_is_deleted_mid_run(db_path: Path) -> None:
    """`predict` on a long file while another program deletes the database's WAL: the job
    stops at once (not after every row has failed), with one line and a non-zero exit."""
    rows = db_path.parent / "long.jsonl"
    rows.write_text((json.dumps(SETOSA) + "\n") * 100_000)
    wal, shm = Path(f"{db_path}-wal"), Path(f"{db_path}-shm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "predict", str(rows), "--model", "iris", "--json"],
        cwd=REPO,
        env={**os.environ, "INFERDECK_DB": str(db_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        # Rows are being committed once the log has grown past its first pages.
        while not (wal.exists() and wal.stat().st_size > 200_000):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no commits seen"
            time.sleep(0.02)
        wal.unlink()
        shm.unlink()
        _, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = err.strip().splitlines()
    assert proc.returncode == 2, err
    said = [line for line in lines if line.startswith(f"inferdeck: database {db_path}:")]
    assert len(said) == 1, err  # the command's own last word (the log may add its count after)
    assert "its file inferdeck.db-wal was deleted or replaced" in said[0]
    assert "stopped writing" in said[0]
    assert not any("internal error" in line or "Traceback" in line for line in lines), err
    assert len(lines) < 80, err  # at most the rows in flight, not one line per row of the file
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
