"""Screenshots of the real app for the README: `make screenshots` runs this under Xvfb.

Starts the desktop app (`gui.app.run_app`) on a scratch database and a scratch user models
folder, and drives it as a person would: a prediction from the model's example, two user models
added from the Models view (the example regression and text models in `assets/examples/`) and
a prediction by each, a small CSV dropped on the window, a filter in Requests, two traces, a
local `inferdeck serve` (on the same database) saved as targets, a prediction sent to it, two
short load runs and their comparison. Every view is saved in the light and the dark theme at
1440×900 and 1024×700, as `<view>-<light|dark>-<1440|1024>.png`.

    python assets/take_screenshots.py [OUT_DIR] [--only VIEW,VIEW...]

`--only` takes the parts of the tour those views need and skips the rest (the whole tour takes
several minutes; the Models part alone about one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel
from PySide6.QtWidgets import QWidget

from gui.main_window import MainWindow

SIZES = ((1440, 900), (1024, 700))
THEMES = ("light", "dark")
VIEWS = (  # each saved as <view>-<theme>-<width>.png, in the order the tour takes them
    "predict",
    "models",
    "predict-regression",
    "predict-text",
    "monitor-drop",
    "files",
    "requests",
    "trace",
    "targets",
    "predict-remote",
    "trace-remote",
    "load",
    "monitor-load",
    "runs",
    "compare",
)
EXAMPLES = Path(__file__).resolve().parent / "examples"  # the user model files `models add` takes
FILE_ROWS = 30_000  # small: the drop lasts long enough for its shots, and the script stays short


class Camera:
    """Saves a widget in every theme and size; `window` carries the theme."""

    def __init__(
        self, window: MainWindow, out_dir: Path, only: frozenset[str] = frozenset(VIEWS)
    ) -> None:
        self.window = window
        self.out_dir = out_dir
        self.only = only  # the views to save (the tour skips parts none of them needs)
        self.saved: list[Path] = []

    def wants(self, *views: str) -> bool:
        return any(view in self.only for view in views)

    async def shoot(self, view: str, widget: QWidget | None = None) -> None:
        """`<view>-<theme>-<width>.png` for each theme and size, of `widget` (the window)."""
        if view not in self.only:
            return
        target = widget or self.window
        theme = self.window.theme
        assert theme is not None
        for name in THEMES:
            theme.choose(name)
            for width, height in SIZES:
                target.resize(width, height)
                await asyncio.sleep(0.4)  # layout, and the plots' next redraw
                path = self.out_dir / f"{view}-{name}-{width}.png"
                target.grab().save(str(path))
                self.saved.append(path)
        theme.choose("light")
        target.resize(*SIZES[0])
        print(f"shot {view}", flush=True)


async def until(check: Callable[[], object], limit_s: float = 60.0, what: str = "") -> None:
    """Wait until `check()` is true, as a person watching the screen would (polling)."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"screenshots: gave up waiting for {what or check}")
        await asyncio.sleep(0.05)


def main(out_dir: Path, only: frozenset[str] = frozenset(VIEWS)) -> None:
    import qasync
    from PySide6.QtWidgets import QApplication

    from gui.app import run_app

    out_dir.mkdir(parents=True, exist_ok=True)
    # Fresh settings (layout, theme, targets' keyring file), so the shots never depend on, or
    # change, the user's own.
    os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="inferdeck-shots-")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        db_path = tmp / "shots.db"
        # A user models folder of its own: the models the tour adds go there, never into the
        # user's own (the app and the `models add` it runs both read this variable).
        os.environ["INFERDECK_MODELS_DIR"] = str(tmp / "models")

        saved: list[Path] = []

        async def drive(window: MainWindow) -> None:
            camera = Camera(window, out_dir, only)
            camera.saved = saved
            try:
                await tour(camera, tmp, db_path)
            finally:
                window.drop_panel.sigCancel.emit()  # a failed tour never waits on a file job
                window.close()

        qasync.run(run_app(db_path, None, drive))
    del app
    if len(saved) != len(only) * len(THEMES) * len(SIZES):
        sys.exit(f"screenshots: {len(saved)} saved, not every view (see the error above)")


async def tour(camera: Camera, tmp: Path, db_path: Path) -> None:
    window = camera.window
    window.resize(*SIZES[0])
    await until(lambda: window.models_ready, what="the models")
    # The app has run for a minute or two: the Monitor's shortest range shows its work best.
    monitor = window.monitor_view
    monitor.range_box.setCurrentIndex(0)
    monitor.range_box.activated.emit(0)
    if camera.wants("predict"):
        await predict_local(camera)
    if camera.wants("models", "predict-regression", "predict-text"):
        await user_models(camera)
    if camera.wants("monitor-drop", "files", "requests", "trace"):
        await file_drop(camera, tmp)
    remote = ("targets", "predict-remote", "trace-remote", "load", "monitor-load", "runs")
    if camera.wants(*remote, "compare"):
        async with local_service(db_path) as url:
            await targets_and_remote(camera, url)
            if camera.wants("load", "monitor-load", "runs", "compare"):
                await load_runs(camera)
                await runs_and_compare(camera)


async def predict_local(camera: Camera) -> None:
    """Predict: the form as it opens (the model's own example), after one prediction."""
    window, view = camera.window, camera.window.predict_view
    window.tabs.setCurrentWidget(view)
    view.model_box.setCurrentText("iris")
    view.fill_example()
    view.submit()
    await until(lambda: view.request_text.text() != "", what="the prediction")
    await camera.shoot("predict")


async def user_models(camera: Camera) -> None:
    """Models: the example regression and text models added from the view (its Add runs
    `inferdeck models add` in a child process), listed beside the built-ins with the last add's
    report; then Predict with the regression's named values, and with the text model's box."""
    window = camera.window
    view = window.models_view
    window.tabs.setCurrentWidget(view)
    for source in (EXAMPLES / "temperature.py", EXAMPLES / "reviews" / "reviews.py"):
        task = view.add_source(source)
        if task is None:
            raise RuntimeError(f"screenshots: Add did not start for {source.name}")
        await task
        if view.status.error:
            raise RuntimeError(f"screenshots: {view.status.text()}")
    view.select("temperature")
    await asyncio.sleep(0.5)
    await camera.shoot("models")

    predict = window.predict_view
    window.tabs.setCurrentWidget(predict)
    predict.model_box.setCurrentText("temperature")
    predict.set_values({"celsius": "100"})
    predict.submit()
    await until(lambda: predict.request_text.text() != "", what="the regression's answer")
    await camera.shoot("predict-regression")
    predict.model_box.setCurrentText("reviews")
    predict.set_values(
        {"text": "Great screen and a wonderful camera, but the battery life is poor."}
    )
    predict.submit()
    await until(lambda: predict.request_text.text() != "", what="the text model's answer")
    await camera.shoot("predict-text")
    predict.model_box.setCurrentText("iris")  # where the rest of the tour expects it


async def file_drop(camera: Camera, tmp: Path) -> None:
    """A CSV with a few bad rows dropped on the window; while it runs: the Monitor, the Files
    area over the Requests view's live tail, then a filter typed there with its match count
    and a matching request's trace."""
    window = camera.window
    rows = tmp / "measurements.csv"
    lines = ["sepal_length,sepal_width,petal_length,petal_width"]
    bad = ["n/a,3.0,4.1,1.3", "5.1,3.5,,0.2", "7.0,3.2,4.7,99"]
    for i in range(FILE_ROWS):
        if i % 5_000 == 17:
            lines.append(bad[(i // 5_000) % len(bad)])
        else:
            lines.append(
                f"{4.5 + (i % 35) / 10:.1f},{2.2 + (i % 20) / 10:.1f},"
                f"{1.0 + (i % 59) / 10:.1f},{0.1 + (i % 24) / 10:.1f}"
            )
    rows.write_text("\n".join(lines) + "\n")
    panel = window.drop_panel
    window.drop_files([rows])
    await until(lambda: panel.job_running, what="the file job")
    window.tabs.setCurrentWidget(window.monitor_view)
    bar = panel.progress
    await until(lambda: bar.value() >= bar.minimum() + (bar.maximum() - bar.minimum()) // 10)
    await camera.shoot("monitor-drop")
    requests = window.requests_view
    window.tabs.setCurrentWidget(requests)
    await camera.shoot("files")
    requests.text_edit.setText('"sepal_length": 6.9')  # JSON as the Trace spells it
    requests.apply_filter()  # what the typing pause would do a moment later
    await until(lambda: requests.count_label.text() != "", what="the match count")
    await asyncio.sleep(0.5)
    await camera.shoot("requests")
    window.open_trace(requests.table_model.row(0))
    await asyncio.sleep(0.5)
    await camera.shoot("trace")
    requests.text_edit.setText("")
    await until(lambda: not panel.job_running, limit_s=180, what="the file job's end")
    await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def local_service(db_path: Path) -> AsyncIterator[str]:
    """`inferdeck serve` on a free 127.0.0.1 port, writing the app's own database (so its
    requests join History live and the remote trace nests the server's stages)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "engine.cli", "serve", "--port", str(port)]
    quiet = subprocess.DEVNULL  # its access log
    server = await asyncio.create_subprocess_exec(
        *command, "--db", str(db_path), stdout=quiet, stderr=quiet
    )

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    try:
        deadline = time.monotonic() + 120
        while not await asyncio.to_thread(ready):
            if server.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("screenshots: inferdeck serve did not start")
            await asyncio.sleep(0.3)
        yield url
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 20)


async def targets_and_remote(camera: Camera, url: str) -> None:
    """Targets: the service twice (inferdeck and OIP protocol, up) and a port nothing listens
    on (down); Predict sending to the service; that request's trace."""
    from engine.remote.target_store import make_target
    from gui.targets.targets_view import TargetsView

    window = camera.window
    view = window.targets_view
    assert isinstance(view, TargetsView)
    view.interval_spin.setValue(1.0)  # as a person would: type it, leave the field
    view.interval_spin.editingFinished.emit()
    await view.save(make_target(name="serve", base_url=url, protocol="inferdeck", model="iris"))
    await view.save(make_target(name="serve-oip", base_url=url, protocol="oip", model="iris"))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
        await view.save(make_target(name="staging", base_url=dead, model="iris"), "a-token")
        window.tabs.setCurrentWidget(view)
        await until(lambda: window.targets.states.get("staging", ("",))[0] == "down", 30)
        await until(lambda: window.targets.states.get("serve", ("",))[0] == "up", 30)
        view.select("serve")
        await asyncio.sleep(0.5)
        await camera.shoot("targets")

    predict = window.predict_view
    window.targets.select("serve")  # the side pane scopes Predict, Requests, Monitor, Load
    window.tabs.setCurrentWidget(predict)
    await until(lambda: predict.remote_form is not None, what="the remote form")
    predict.set_values({"sepal_length": 6.4, "sepal_width": 2.9, "petal_length": 4.3})
    predict.set_values({"petal_width": 1.3})
    predict.submit()
    await until(lambda: "request" in predict.request_text.text(), what="the remote answer")
    await asyncio.sleep(0.3)
    await camera.shoot("predict-remote")

    requests = window.requests_view
    window.tabs.setCurrentWidget(requests)
    await until(lambda: requests.table_model.rowCount() > 0, what="the remote request's row")
    window.open_trace(requests.table_model.row(0))
    await asyncio.sleep(0.8)  # the server's own row is looked up and nested
    await camera.shoot("trace-remote")


async def load_runs(camera: Camera) -> None:
    """Two short load runs to the service from the Load tab (scoped by the side pane): the tab
    and the Monitor mid-run."""
    from gui.load.load_panel import LoadPanel

    window = camera.window
    panel = window.load_view
    assert isinstance(panel, LoadPanel)
    window.tabs.setCurrentWidget(panel)
    await until(lambda: panel.target_box.currentText() == "serve", what="the scoped target")

    async def run(rate: float, seconds: float, during: Callable[[], Awaitable[None]]) -> None:
        panel.rate_spin.setValue(rate)
        panel.duration_spin.setValue(seconds)
        panel.start_button.click()
        await until(lambda: not panel.start_button.isEnabled(), what="the load's start")
        # A third of the way in: the live chart and the Monitor's load plots have a curve.
        await until(lambda: panel.progress_bar.value() > 330, what="the load's progress")
        await during()
        await until(panel.start_button.isEnabled, limit_s=120, what="the load's end")
        await asyncio.sleep(1.0)  # its stored summary

    async def mid_run() -> None:
        await camera.shoot("load")
        window.tabs.setCurrentWidget(window.monitor_view)
        await asyncio.sleep(0.5)
        await camera.shoot("monitor-load")
        window.tabs.setCurrentWidget(panel)

    async def nothing() -> None:
        return None

    await run(50.0, 18.0, mid_run)
    await run(120.0, 5.0, nothing)


async def runs_and_compare(camera: Camera) -> None:
    """Runs with the newest run selected; its two load runs compared."""
    window = camera.window
    window.targets.select(None)
    runs = window.runs_view
    window.tabs.setCurrentWidget(runs)
    await runs.load()
    model = runs.table_model
    loads = [i for i in range(model.rowCount()) if model.run(i).kind == "load"][:2]
    runs.table.selectRow(loads[0])
    await asyncio.sleep(0.8)
    await camera.shoot("runs")
    runs.table.clearSelection()
    for row in loads:
        runs.table.selectionModel().select(
            model.index(row, 0),
            QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows,
        )
    runs.compare_button.click()
    await until(lambda: runs.compare_window is not None, what="the compare window")
    assert runs.compare_window is not None
    await asyncio.sleep(0.5)
    await camera.shoot("compare", runs.compare_window)
    runs.compare_window.close()


def _arguments() -> tuple[Path, frozenset[str]]:
    parser = argparse.ArgumentParser(description="Screenshots of the real app for the README.")
    parser.add_argument("out_dir", nargs="?", default="assets/screenshots", type=Path)
    parser.add_argument(
        "--only", help=f"comma-separated views to take (default: all): {', '.join(VIEWS)}"
    )
    args = parser.parse_args()
    only = frozenset(v.strip() for v in args.only.split(",") if v.strip()) if args.only else None
    unknown = sorted((only or frozenset()) - set(VIEWS))
    if unknown:
        parser.error(f"unknown view(s): {', '.join(unknown)}")
    return args.out_dir, only or frozenset(VIEWS)


if __name__ == "__main__":
    main(*_arguments())
