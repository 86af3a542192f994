"""The QThreadPool executor as the engine's inference boundary, under a real qasync loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from conftest import run_on_qasync
from PySide6.QtWidgets import QApplication

from engine.contracts import PredictRequest
from engine.models import ModelRegistry
from engine.pipeline import Engine, Origin
from engine.runs import begin_run, end_run
from engine.work import FutureSink
from gui.shared.qt_executor import QThreadPoolExecutor
from storage import open_database


def test_jobs_run_on_pool_threads_and_errors_reach_the_caller(qapp: QApplication) -> None:
    executor = QThreadPoolExecutor(max_workers=2)
    main = threading.get_ident()
    results = [executor.submit(threading.get_ident) for _ in range(50)]
    assert all(f.result(timeout=10) != main for f in results)
    failing = executor.submit(int, "not a number")
    with pytest.raises(ValueError):
        failing.result(timeout=10)
    executor.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        executor.submit(int, "1")


def test_engine_predicts_through_the_qt_executor_on_a_qasync_loop(
    qapp: QApplication, tmp_path: Path
) -> None:
    """The desktop composition: qasync loop + QThreadPool executor + engine + SQLite."""
    db_file = tmp_path / "gui.db"
    executor = QThreadPoolExecutor(max_workers=1)
    outcome: dict[str, object] = {}

    async def scenario() -> None:
        db = await open_database(db_file)
        engine = Engine(db, ModelRegistry.discover(), executor)
        try:
            await engine.start()
            run = await begin_run(db, "gui", {})
            origin = Origin(run, FutureSink(), "form", "gui")
            row = {"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.4, "petal_width": 2.1}
            works = await asyncio.gather(
                *(
                    engine.predict(
                        PredictRequest(client_id="gui", model="iris", input_payload=row),
                        origin,
                        acknowledge=True,
                    )
                    for _ in range(300)
                )
            )
            outcome["statuses"] = {w.status for w in works}
            outcome["labels"] = {w.output["label"] for w in works if w.output}
            await end_run(db, run)
        finally:
            await engine.stop()
            await db.close()

    try:
        run_on_qasync(qapp, scenario())
    finally:
        executor.shutdown(wait=True)
    assert outcome == {"statuses": {"ok"}, "labels": {"virginica"}}
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("SELECT count(*) FROM requests WHERE status = 'ok'").fetchone() == (
            300,
        )
