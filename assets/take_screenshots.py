"""Screenshots of the real app for the README: `make screenshots` runs this under Xvfb.

Starts the desktop app on a scratch database, fills the Predict form as a person would, runs a
prediction, and saves what the window shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel
from PySide6.QtWidgets import QComboBox

from gui.main_window import MainWindow


def main(out_dir: Path) -> None:
    import qasync
    from PySide6.QtWidgets import QApplication

    from gui.app import run_app

    out_dir.mkdir(parents=True, exist_ok=True)
    # Fresh settings (layout, theme), so the shots never depend on, or change, the user's own.
    os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="inferdeck-shots-")
    app = QApplication.instance() or QApplication(sys.argv[:1])

    async def drive(window: MainWindow) -> None:
        window.resize(1280, 720)
        view = window.predict_view
        view.model_box.setCurrentText("iris")
        # A script that watches the screen as a person would: polling is the point here.
        while "ready" not in window.model_state.text():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        view.set_values({"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 40})
        await asyncio.sleep(0.3)
        window.grab().save(str(out_dir / "predict-errors.png"))
        view.set_values({"sepal_length": 6.4, "sepal_width": 2.9, "petal_length": 4.3})
        view.set_values({"petal_width": 1.3})
        view.submit()
        while view.request_text.text() == "":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # let the status bar catch up
        window.grab().save(str(out_dir / "predict.png"))

        rows = tmp / "measurements.jsonl"
        good = '{"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2}'
        bad = ['{"sepal_length": "n/a"}', '{"sepal_length": 1e309}', "{truncated"]
        rows.write_text("\n".join(bad[i % 3] if i % 20_000 == 7 else good for i in range(200_000)))
        window.drop_files([rows])
        window.tabs.setCurrentWidget(window.monitor_view)
        await asyncio.sleep(2.0)
        for _ in range(20):  # form requests while the file runs: they overtake it
            view.submit()
            await asyncio.sleep(0.15)
        await asyncio.sleep(1.0)
        window.grab().save(str(out_dir / "monitor.png"))
        window.tabs.setCurrentIndex(0)
        await asyncio.sleep(0.2)
        window.grab().save(str(out_dir / "file-drop.png"))
        window.drop_panel.sigCancel.emit()
        await asyncio.sleep(0.5)
        window.tabs.setCurrentIndex(1)
        window.requests_view.status_box.setCurrentText("rejected")
        await asyncio.sleep(0.5)
        window.grab().save(str(out_dir / "requests.png"))
        requests = window.requests_view
        requests.status_box.setCurrentText("ok")
        requests.model_box.setCurrentText("iris")
        requests.text_edit.setText("")
        await asyncio.sleep(0.5)
        window.open_trace(requests.table_model.row(0))
        await asyncio.sleep(0.3)
        window.grab().save(str(out_dir / "trace.png"))
        window.tabs.setCurrentWidget(window.runs_view)
        window.runs_view.refresh()
        await asyncio.sleep(0.5)
        window.runs_view.table.selectRow(0)
        await asyncio.sleep(0.5)
        window.grab().save(str(out_dir / "runs.png"))
        await _targets_shots(window, out_dir, tmp)
        await _load_shots(window, out_dir, tmp)
        assert window.theme is not None
        window.theme.choose("dark")
        window.tabs.setCurrentWidget(window.monitor_view)
        await asyncio.sleep(0.5)
        window.grab().save(str(out_dir / "monitor-dark.png"))
        window.theme.choose("system")
        window.close()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        qasync.run(run_app(tmp / "shots.db", None, drive))
    del app


async def _grab_monitor_panels(window: MainWindow, path: Path) -> None:
    """The Monitor tab scrolled to its lower panels (targets, load), saved to `path`."""
    window.tabs.setCurrentWidget(window.monitor_view)
    await asyncio.sleep(0.8)
    window.monitor_view.scroll_to_panels()
    await asyncio.sleep(0.2)
    window.grab().save(str(path))


@contextlib.asynccontextmanager
async def _local_service(db_path: Path) -> AsyncIterator[str]:
    """This project's service on a free 127.0.0.1 port, in a thread; yields its base URL."""
    import threading

    import uvicorn

    from engine.server import ServerSettings, asgi_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(asgi_app(ServerSettings(db_path=db_path)), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)


async def _targets_shots(window: MainWindow, out_dir: Path, tmp: Path) -> None:
    """Two real targets: this project's service on 127.0.0.1 (OIP, up) and a port nothing
    listens on (down); the Targets view, their timeline in Monitor, a prediction sent to one."""
    from engine.remote.target_store import make_target

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]  # bound, never listening: connections are refused
        async with _local_service(tmp / "serve.db") as url:
            from gui.targets.targets_view import TargetsView

            view = window.targets_view
            assert isinstance(view, TargetsView)
            view.interval_spin.setValue(1.0)  # as a person would: type it, leave the field
            view.interval_spin.editingFinished.emit()
            await view.save(
                make_target(name="serve-oip", base_url=url, protocol="oip", model="iris")
            )
            staging = make_target(name="staging", base_url=f"http://127.0.0.1:{dead}", model="iris")
            await view.save(staging, "not-a-real-token")
            window.tabs.setCurrentWidget(view)
            await asyncio.sleep(6.0)
            view.select("serve-oip")
            await asyncio.sleep(0.3)
            window.grab().save(str(out_dir / "targets.png"))
            await _grab_monitor_panels(window, out_dir / "monitor-targets.png")
            predict = window.predict_view
            window.tabs.setCurrentWidget(predict)
            remote = window.findChild(QComboBox, "sendTo")
            assert isinstance(remote, QComboBox)
            remote.setCurrentText("serve-oip")
            while predict.remote_form is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            predict.set_values({"sepal_length": 6.4, "sepal_width": 2.9, "petal_length": 4.3})
            predict.set_values({"petal_width": 1.3})
            predict.submit()
            while "request" not in predict.request_text.text():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            window.grab().save(str(out_dir / "predict-remote.png"))
            remote.setCurrentIndex(0)
            await asyncio.sleep(0.3)


async def _load_shots(window: MainWindow, out_dir: Path, tmp: Path) -> None:
    """Two real load runs against this project's service on 127.0.0.1, from the Load tab: the
    tab mid-run, the Monitor's load plots, and the two runs compared in the Runs view."""
    from gui.load.load_panel import LoadPanel

    async with _local_service(tmp / "serve-load.db") as url:
        panel = window.load_view
        assert isinstance(panel, LoadPanel)
        window.tabs.setCurrentWidget(panel)
        panel.target_box.setCurrentIndex(0)
        panel.url_edit.setText(url)
        panel.protocol_box.setCurrentText("inferdeck")
        panel.model_edit.setText("iris")
        for rate, shot in ((150.0, "load.png"), (400.0, None)):
            panel.rate_spin.setValue(rate)
            panel.duration_spin.setValue(6.0)
            panel.start_button.click()
            await asyncio.sleep(3.0)
            if shot is not None:
                window.grab().save(str(out_dir / shot))
            while not panel.start_button.isEnabled():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        await _grab_monitor_panels(window, out_dir / "monitor-load.png")
        runs = window.runs_view
        window.tabs.setCurrentWidget(runs)
        await runs.load()
        model = runs.table_model
        loads = [i for i in range(model.rowCount()) if model.run(i).kind == "load"][:2]
        runs.table.clearSelection()
        for row in loads:
            runs.table.selectionModel().select(
                model.index(row, 0),
                QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows,
            )
        runs.compare_button.click()
        await asyncio.sleep(0.8)
        assert runs.compare_window is not None
        runs.compare_window.grab().save(str(out_dir / "compare.png"))
        runs.compare_window.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "assets/screenshots"))
