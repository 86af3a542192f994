"""The Targets view on a real SQLite file with a real (memory) token store and a real server on
127.0.0.1: add, edit and remove through the dialog, inline validation, and no secret anywhere it
could be seen or stored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from conftest import run_on_qasync
from fault_server import FaultServer
from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QApplication, QMainWindow, QMenu, QMessageBox, QWidget
from pytestqt.qtbot import QtBot
from qt_helpers import all_cells, drive, wait_for

from engine.models import ModelRegistry
from engine.remote.secrets import TokenStore
from engine.remote.target_store import TargetStore, make_target
from engine.tasks import TaskOwner
from gui.main_window import MainWindow
from gui.targets.target_dialog import TargetDialog
from gui.targets.targets_table_model import COLUMNS
from gui.targets.targets_view import ACTIONS, INTERVAL_KEY, TargetsView
from storage import Database, open_database

TOKEN = "s3cret-bearer-token-7f3a"
API_KEY = "api-key-value-91bc"


def _open_dialog(view: TargetsView, action: Callable[[], None]) -> TargetDialog:
    action()
    dialog = view.dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def test_add_edit_remove_round_trip_with_inline_errors_and_no_secret_shown_or_stored(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    db_file = tmp_path / "targets.db"
    seen: dict[str, object] = {}

    async def scenario(view: TargetsView, db: Database, tokens: TokenStore) -> None:
        store = view.store
        with FaultServer() as server:
            # A bad URL: the dialog names the field, keeps what was typed, stores nothing.
            dialog = _open_dialog(view, view.add_target)
            dialog.name_edit.setText("svc")
            dialog.url_edit.setText("localhost:8000")  # no scheme
            dialog.headers_edit.setPlainText(f"X-Api-Key: {API_KEY}\nX-Tenant: team-a")
            dialog.token_edit.setText(TOKEN)
            assert dialog.token_edit.echoMode() == dialog.token_edit.EchoMode.Password
            assert dialog.verify_box.isChecked()  # TLS verification on by default
            dialog.submit()
            seen["bad_url"] = dialog.error_label.text()
            assert dialog.isVisible() and dialog.name_edit.text() == "svc"
            assert dialog.url_edit.styleSheet() and not dialog.name_edit.styleSheet()
            assert await store.list_all() == []

            # A malformed header line is named too.
            dialog.url_edit.setText(server.url)
            dialog.headers_edit.setPlainText(f"X-Api-Key: {API_KEY}\nno colon here")
            dialog.submit()
            seen["bad_header"] = dialog.error_label.text()
            assert dialog.isVisible() and await store.list_all() == []

            # Fixed: saved, listed, probed.
            dialog.headers_edit.setPlainText(f"X-Api-Key: {API_KEY}\nX-Tenant: team-a")
            dialog.submit()
            await wait_for(lambda: view.table_model.rowCount() == 1)
            assert not dialog.isVisible()
            stored = await store.get("svc")
            assert stored is not None and stored.has_token
            assert stored.target.headers["X-Api-Key"] == API_KEY
            assert tokens.get("svc") == TOKEN
            first_prober = view.host.probers["svc"]
            state_col = COLUMNS.index("state")
            await wait_for(
                lambda: view.table_model.data(view.table_model.index(0, state_col)) == "up"
            )

            # Not in the table (any role), not in the database file, nor its WAL.
            cells = all_cells(view)
            assert TOKEN not in cells and API_KEY not in cells
            assert "bearer token kept in memory for this session" in cells
            await db.writer.flush()
            raw = b"".join(p.read_bytes() for p in tmp_path.glob("targets.db*"))
            assert b"svc" in raw  # the file is the one written
            assert TOKEN.encode() not in raw and API_KEY.encode() not in raw

            # Edit: the token is not shown again, credential headers read back as ***.
            view.select("svc")
            dialog = _open_dialog(view, view.edit_target)
            assert dialog.token_edit.text() == ""
            assert dialog.token_edit.placeholderText() == "kept in memory for this session"
            assert API_KEY not in dialog.headers_edit.toPlainText()
            assert "X-Api-Key: ***" in dialog.headers_edit.toPlainText()
            assert dialog.name_edit.isReadOnly()
            dialog.timeout_spin.setValue(3.0)
            dialog.model_edit.setText("iris")
            dialog.submit()
            await wait_for(lambda: not dialog.isVisible())  # closed once saved
            edited = await store.get("svc")
            assert edited is not None and edited.target.timeout_s == 3.0
            assert edited.target.model == "iris"
            assert edited.target.headers["X-Api-Key"] == API_KEY  # *** kept the stored value
            assert tokens.get("svc") == TOKEN  # an empty token field keeps the token
            restarted = view.host.probers["svc"]
            assert restarted is not first_prober and restarted.target.timeout_s == 3.0

            # A second target with the same name: the store's refusal shows in the dialog.
            dialog = _open_dialog(view, view.add_target)
            dialog.name_edit.setText("svc")
            dialog.url_edit.setText(server.url)
            dialog.submit()
            await wait_for(lambda: "already exists" in dialog.error_label.text())
            assert dialog.isVisible() and dialog.buttons.isEnabled()
            dialog.reject()

            # An OIP target without a model is refused before the store sees it.
            dialog = _open_dialog(view, view.add_target)
            dialog.name_edit.setText("oip")
            dialog.url_edit.setText(server.url)
            dialog.protocol_box.setCurrentText("oip")
            dialog.submit()
            seen["oip_no_model"] = dialog.error_label.text()
            dialog.reject()

            # Remove: asked first (Cancel keeps it), then gone with its token and prober.
            view.select("svc")
            view.remove_target()
            await wait_for(lambda: view.confirm is not None and view.confirm.isVisible())
            assert view.confirm is not None
            view.confirm.button(QMessageBox.StandardButton.Cancel).click()
            await asyncio.sleep(0.1)
            assert view.table_model.rowCount() == 1
            view.select("svc")
            view.remove_target()
            await wait_for(lambda: view.confirm is not None and view.confirm.isVisible())
            view.confirm.button(QMessageBox.StandardButton.Yes).click()
            await wait_for(lambda: view.table_model.rowCount() == 0)
            assert "svc" not in view.host.probers
            assert tokens.get("svc") is None and await store.list_all() == []

    drive(qapp, qtbot, db_file, scenario)
    assert str(seen["bad_url"]).startswith("Base URL: must be an http:// or https:// URL")
    assert "Headers: line 2 is not 'Name: value'" in str(seen["bad_header"])
    assert str(seen["oip_no_model"]) == "Model: an OIP target needs a model"


def test_probe_interval_is_a_persisted_setting_that_restarts_the_probers(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    settings = QSettings(str(tmp_path / "prefs.ini"), QSettings.Format.IniFormat)

    async def scenario(view: TargetsView, db: Database, tokens: TokenStore) -> None:
        with FaultServer() as server:
            dialog = _open_dialog(view, view.add_target)
            dialog.name_edit.setText("svc")
            dialog.url_edit.setText(server.url)
            dialog.submit()
            await wait_for(lambda: "svc" in view.host.probers)
            before = view.host.probers["svc"]
            assert before.interval_s == 30.0
            view.interval_spin.setValue(5)
            view.interval_spin.editingFinished.emit()
            await wait_for(lambda: view.host.probers["svc"] is not before)
            assert view.host.probers["svc"].interval_s == 5.0

    drive(qapp, qtbot, tmp_path / "t.db", scenario, settings=settings)
    assert float(settings.value(INTERVAL_KEY)) == 5.0
    assert TargetsView.saved_interval(settings) == 5.0
    assert TargetsView.saved_interval(None) == 10.0


def test_the_window_gets_a_targets_tab_and_menu_with_shortcuts(
    qapp: QApplication, qtbot: QtBot
) -> None:
    registry = ModelRegistry.discover()
    window = MainWindow([registry.models[n] for n in registry.names()], Path("x.db"))
    qtbot.addWidget(window)
    called: list[str] = []

    class Host(QObject):  # what the window reads of the probers' host
        sigSnapshots = Signal(dict)
        sigStateChanged = Signal(str, str, str, str)
        sigRemoved = Signal(str)

    class Page(QWidget):  # stands in for the Targets view: its list and its host
        sigTargetsChanged = Signal(list)

        def __init__(self) -> None:
            super().__init__()
            self.host = Host(self)

    page = Page()

    def slot(method: str) -> Callable[[], None]:
        return lambda: called.append(method)

    actions = [(text, keys, slot(m)) for text, keys, m in ACTIONS]
    window.add_targets_view(page, actions)  # type: ignore[arg-type]
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus.index("&Targets") == menus.index("&Help") - 1
    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Targets")
    assert isinstance(menu, QMenu)
    shortcuts = {a.text().replace("&", ""): a.shortcut().toString() for a in menu.actions()}
    assert shortcuts == {
        "Add target…": "Ctrl+Shift+A",
        "Edit target…": "Ctrl+Shift+E",
        "Remove target": "Ctrl+Shift+D",
        "Probe now": "Ctrl+Shift+P",
    }
    for action in menu.actions():
        action.trigger()
    assert called == ["add_target", "edit_target", "remove_target", "probe_target"]
    window.tabs.setCurrentWidget(page)
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Targets"
    assert isinstance(window, QMainWindow)


def test_attach_targets_wires_the_window_and_starts_probing_stored_targets(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    """The app's composition: a target stored earlier (with probes) is listed, probed, drawn in
    the Monitor's timeline from its history onwards, and offered in the Predict view."""
    from qt_helpers import StubView

    from engine.remote.prober import Prober
    from gui.targets.targets_view import attach_targets

    registry = ModelRegistry.discover()
    window = MainWindow([registry.models[n] for n in registry.names()], tmp_path / "w.db")
    qtbot.addWidget(window)
    window.add_views(StubView(), StubView())  # type: ignore[arg-type]
    seen: dict[str, object] = {}

    async def main() -> None:
        db = await open_database(tmp_path / "w.db")
        tokens = TokenStore(system_keyring=False)
        tasks = TaskOwner()
        try:
            with FaultServer() as server:
                stored = await TargetStore(db, tokens).add(
                    make_target(name="earlier", base_url=server.url)
                )
                async with Prober(stored.target, db=db) as prober:  # a previous session
                    first = await prober.probe_once()
                await db.writer.flush()
                wiring = await attach_targets(window, db, tasks, None, tokens)
                try:
                    timeline = wiring.timeline
                    seen["first_point"] = min(timeline.lanes["earlier"].points) * 1e6
                    seen["first_probe"] = first.at_us
                    await wait_for(lambda: wiring.host.snapshot("earlier") is not None)
                    await wait_for(lambda: len(timeline.lanes["earlier"].points) >= 2)
                    seen["tab"] = window.tabs.tabText(window.tabs.indexOf(wiring.view))
                    seen["in_monitor"] = window.monitor_view.isAncestorOf(timeline)
                    box = wiring.remote.source_box
                    seen["sources"] = [box.itemText(i) for i in range(box.count())]
                finally:
                    await wiring.aclose()
                seen["probers_after_close"] = dict(wiring.host.probers)
        finally:
            await tasks.wait()
            await db.close()

    run_on_qasync(qapp, main())
    # The stored round is drawn from the start (seconds as floats: within a microsecond).
    assert abs(float(seen["first_point"]) - float(seen["first_probe"])) < 2  # type: ignore[arg-type]
    assert seen["tab"] == "Targets" and seen["in_monitor"] is True
    assert seen["sources"] == ["Local engine", "earlier"]
    assert seen["probers_after_close"] == {}


def test_a_down_target_shows_why_in_its_row_in_plain_words(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    """The reason is in the table (a column beside the state, and the tooltip), not only in a
    status-bar message that goes away."""
    from live_server import free_port
    from PySide6.QtCore import Qt

    seen: dict[str, object] = {}

    async def scenario(view: TargetsView, db: Database, tokens: TokenStore) -> None:
        closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        await view.store.add(make_target(name="gone", base_url=closed, connect_timeout_s=0.5))
        await view.load()
        model = view.table_model
        state, reason = COLUMNS.index("state"), COLUMNS.index("reason")
        await wait_for(lambda: model.data(model.index(0, state)) == "down")
        seen["reason"] = model.data(model.index(0, reason))
        seen["tip"] = model.data(model.index(0, state), Qt.ItemDataRole.ToolTipRole)
        seen["header"] = model.headerData(reason, Qt.Orientation.Horizontal)

    drive(qapp, qtbot, tmp_path / "t.db", scenario)
    assert seen["reason"] == "nothing is listening at that address (connection refused)"
    tip = str(seen["tip"])
    assert "nothing is listening" in tip and "connect_refused" in tip
    assert seen["header"] == "reason"
