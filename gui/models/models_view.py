"""The Models view: every model the app knows (built-in and the user's), each with its check,
the selected one's details, and Add / Remove / Reload.

The table (`models_table_model`) lists each model's task, version, inputs, labels or outputs,
held-out score, source and folder, and each model folder that failed with what is wrong with
it, so a broken folder is seen where the models are, not only in a log.

Add and Remove run the `inferdeck models` commands in a child process (`model_commands`: the
user's code never runs in the app); their stderr lines show as progress, and the end is one
line: the agreement report, or why not. Both end with a reload, and Reload does it alone: the
models folders are read again and the new set is swapped into the running engine (the host's
`reload`, see `models_host`), so the Predict form offers them at once, with no restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from engine.models.registry import ModelRegistry, default_models_dir
from engine.tasks import TaskOwner
from gui.models.model_commands import (
    CommandFailed,
    ModelsCommand,
    add_args,
    add_report,
    remove_args,
)
from gui.models.model_rows import ModelRow, details_html, model_rows
from gui.models.models_table_model import COLUMNS, ModelsTableModel
from gui.shared.fields import MessageLabel
from gui.shared.file_dialogs import file_dialog
from gui.shared.tables import row_table

log = logging.getLogger(__name__)

# px, one a column of `ModelsTableModel`: name to labels fit the table at 1024 px.
WIDTHS = (110, 145, 80, 65, 55, 170, 170, 110, 260)
LOG_LINES = 5  # the progress area's height, in lines of its text

# (text, shortcut, ModelsView method): the menu bar shows these (gui.main_window).
ACTIONS = (
    ("Add model from &Python file…", "Ctrl+Shift+M", "choose_python_file"),
    ("Add model from &folder…", "", "choose_folder"),
    ("&Remove model", "", "remove_model"),
    ("Re&load models", "Ctrl+Shift+R", "reload_models"),
)

Reload = Callable[[], Awaitable[ModelRegistry]]


class _ElidesInTheMiddle(QStyledItemDelegate):
    """The folder column: "/home/…/models/temperature" keeps both ends of a long path."""

    def initStyleOption(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideMiddle


class ModelsView(QWidget):
    """The Models tab: the table, the details, the actions and their progress; `attach_models`
    builds it and hands it the reload."""

    def __init__(self, tasks: TaskOwner, reload: Reload, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tasks = tasks
        self._reload = reload
        self.ready = False  # the engine has loaded its models: a reload may swap them
        self.busy = False  # an add, a removal or a reload is under way (one at a time)
        self.command: ModelsCommand | None = None
        self.dialog: QFileDialog | None = None  # the open file dialog
        self.confirm: QMessageBox | None = None  # the open "remove?" question
        # Parented: the table must never outlive its model (a dangling model crashes Qt).
        self.table_model = ModelsTableModel(self)
        self.table = row_table(self.table_model, WIDTHS)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)  # a list keeps its start
        # A folder keeps its end (the model's own folder name) as well as its start.
        self._folder_cells = _ElidesInTheMiddle(self.table)
        self.table.setItemDelegateForColumn(COLUMNS.index("folder"), self._folder_cells)
        self.details = QTextBrowser()
        self.details.setOpenLinks(False)
        self.details.setPlaceholderText("Choose a model to see its inputs and outputs.")

        self.add_button = QPushButton("Add model…")
        add_menu = QMenu(self.add_button)
        self.add_file_action = QAction("Python file…", add_menu)
        self.add_file_action.setToolTip("A .py file with build(), MANIFEST and EXAMPLES")
        self.add_file_action.triggered.connect(self.choose_python_file)
        self.add_folder_action = QAction("Folder…", add_menu)
        self.add_folder_action.setToolTip("A model folder: model.json and model.pt2")
        self.add_folder_action.triggered.connect(self.choose_folder)
        add_menu.addAction(self.add_file_action)
        add_menu.addAction(self.add_folder_action)
        add_menu.setToolTipsVisible(True)
        self.add_button.setMenu(add_menu)
        self.add_button.setToolTip(
            "Add a model from a Python file or a model folder, checked against its examples"
        )
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected user model (built-ins stay)")
        self.remove_button.clicked.connect(self.remove_model)
        self.reload_button = QPushButton("Reload")
        self.reload_button.setToolTip(
            "Read the models folders again and use what changed, without restarting (Ctrl+Shift+R)"
        )
        self.reload_button.clicked.connect(self.reload_models)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop adding the model")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setVisible(False)
        # Both cut with "…" where their room ends (whole in their tooltips): the buttons'
        # row never widens the window.
        self.summary = MessageLabel("", wrap=False)
        # Where Add puts a model (and where Reload looks): INFERDECK_MODELS_DIR, else the
        # user's data folder; said, so a user can find the folder from a terminal.
        self.where = MessageLabel("", wrap=False)
        self.where.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        bar = QHBoxLayout()
        for button in (self.add_button, self.remove_button, self.reload_button):
            bar.addWidget(button)
        bar.addWidget(self.summary, 1)
        bar.addWidget(self.where, 1)

        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)  # how long a build takes is unknown: a busy bar
        self.busy_bar.setMaximumWidth(120)
        self.busy_bar.setTextVisible(False)
        self.busy_bar.setVisible(False)
        self.status = MessageLabel("Models load in the background…")
        status_row = QHBoxLayout()
        status_row.addWidget(self.busy_bar)
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.cancel_button)
        # The command's own progress lines (the stderr of `inferdeck models add`), kept
        # after it ends so its steps can be read; shown from the first command on.
        self.progress_log = QPlainTextEdit()
        self.progress_log.setReadOnly(True)
        self.progress_log.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.progress_log.setMaximumBlockCount(500)
        line = self.progress_log.fontMetrics().lineSpacing()
        self.progress_log.setFixedHeight(LOG_LINES * line + 12)
        self.progress_log.setVisible(False)

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(status_row)
        layout.addWidget(self.progress_log)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selected())
        self._enable()

    # -- what it shows ------------------------------------------------------------------------

    def show_registry(self, registry: ModelRegistry) -> None:
        """List `registry`'s models and failed folders, keeping the selection by name."""
        where = default_models_dir()
        self.where.setText(f"user models: {where}")
        self.where.setToolTip(f"Add model… puts a model in {where}")
        chosen = self.selected()
        self.table_model.set_rows(model_rows(registry))
        rows = self.table_model.rows()
        users = sum(1 for r in rows if r.source == "user" and r.ok)
        broken = sum(1 for r in rows if not r.ok)
        words = f"{len(registry.models)} models ({users} the user's)"
        if broken:
            words += f", {broken} with a problem"
        self.summary.setText(words)
        if chosen is not None:
            self.select(chosen.name)
        elif self.table_model.rowCount():
            self.table.selectRow(0)
        self._selected()

    def set_ready(self, registry: ModelRegistry) -> None:
        """The engine's first load is over: its models (and what failed) are shown checked, and
        the actions open."""
        self.ready = True
        self.show_registry(registry)
        if not self.busy:
            self.status.set_message("")
        self._enable()

    def selected(self) -> ModelRow | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table_model.row(rows[0].row()) if rows else None

    def select(self, name: str) -> None:
        row = self.table_model.row_of(name)
        if row >= 0:
            self.table.selectRow(row)

    def _selected(self) -> None:
        row = self.selected()
        self.details.setHtml(details_html(row) if row is not None else "")
        self._enable()

    def _enable(self) -> None:
        free = self.ready and not self.busy
        row = self.selected()
        self.add_button.setEnabled(free)
        self.add_file_action.setEnabled(free)
        self.add_folder_action.setEnabled(free)
        self.reload_button.setEnabled(free)
        self.remove_button.setEnabled(free and row is not None and row.removable)
        if row is not None and row.source == "built-in":
            self.remove_button.setToolTip("A built-in model cannot be removed")
        else:
            self.remove_button.setToolTip("Remove the selected user model (built-ins stay)")

    def say(self, text: str, *, error: bool = False) -> None:
        self.status.set_message(text, error=error)

    def _progress(self, line: str) -> None:
        self.progress_log.appendPlainText(line)
        self.status.set_message(line)

    def _begin(self, text: str, *, command: bool = True) -> None:
        self.busy = True
        self.busy_bar.setVisible(True)
        self.progress_log.clear()
        self.progress_log.appendPlainText(text)
        self.progress_log.setVisible(command)  # a command's steps show as they come
        self.say(text)
        self._enable()

    def _end(self, text: str, *, error: bool = False) -> None:
        self.busy = False
        self.busy_bar.setVisible(False)
        self.cancel_button.setVisible(False)
        self.progress_log.appendPlainText(text)
        # A success is its one-line report; a failure keeps the steps that led to it in view.
        self.progress_log.setVisible(error and not self.progress_log.document().isEmpty())
        self.say(text, error=error)
        self._enable()

    # -- actions ------------------------------------------------------------------------------

    def choose_python_file(self) -> None:
        dialog = self._dialog("Add a model from a Python file")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setNameFilter("Python files (*.py)")
        dialog.open()  # never exec(): it would re-enter the qasync loop

    def choose_folder(self) -> None:
        dialog = self._dialog("Add a model folder (model.json and model.pt2)")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.open()

    def _dialog(self, caption: str) -> QFileDialog:
        dialog = file_dialog(self, caption)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(lambda path: self.add_source(Path(path)))
        self.dialog = dialog
        return dialog

    def add_source(self, source: Path) -> asyncio.Task[None] | None:
        """Add the model `source` makes (a `.py` file or a model folder), then reload."""
        if not self.ready or self.busy:
            self.say("Wait for the current action to end", error=True)
            return None
        self._begin(f"Adding {source.name}…")
        self.cancel_button.setVisible(True)
        return self.tasks.spawn(self._add(source), "models-add")

    async def _add(self, source: Path) -> None:
        command = self.command = ModelsCommand(add_args(source), self._progress)
        try:
            report = add_report(await command.run())
        except CommandFailed as exc:
            # The command names the source itself ("thermo.py: build() raised …"): once is
            # enough.
            why = str(exc).removeprefix(f"{source}: ").removeprefix(f"{source.name}: ")
            self._end(f"Could not add {source.name}: {why}", error=True)
            return
        finally:
            self.command = None
        self.cancel_button.setVisible(False)
        self.say(f"{report.sentence()} — loading it…")
        if await self._swap():
            self.select(report.name)
            self._end(report.sentence())

    def remove_model(self) -> None:
        """Ask, then remove the selected user model's folder and reload."""
        row = self.selected()
        if row is None or not row.removable or not self.ready or self.busy:
            self.say(
                "Choose a user model to remove"
                if row is None or not row.removable
                else "Wait for the current action to end",
                error=True,
            )
            return
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Remove model?")
        box.setText(f"Remove the model {row.name}?")
        box.setInformativeText(f"Its folder is deleted: {row.folder}")
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.button(QMessageBox.StandardButton.Yes).setText("Remove")
        box.button(QMessageBox.StandardButton.No).setText("Keep")

        def answered(result: int) -> None:
            self.confirm = None
            if result == QMessageBox.StandardButton.Yes and self.ready and not self.busy:
                self._begin(f"Removing {row.name}…")
                self.tasks.spawn(self._remove(row), "models-remove")

        box.finished.connect(answered)
        self.confirm = box
        box.open()  # never exec(): it would re-enter the qasync loop

    async def _remove(self, row: ModelRow) -> None:
        # By its folder's name in its own models folder: exact, and it works for a folder
        # whose manifest cannot be read as well (`models remove` looks for that name first).
        command = self.command = ModelsCommand(
            remove_args(row.folder.name, row.folder.parent), self._progress
        )
        try:
            await command.run()
        except CommandFailed as exc:
            self._end(f"Could not remove {row.name}: {exc}", error=True)
            return
        finally:
            self.command = None
        if await self._swap():
            self._end(f"Removed {row.name} ({row.folder})")

    def reload_models(self) -> asyncio.Task[None] | None:
        """Read the models folders again and swap the new set into the running engine."""
        if not self.ready or self.busy:
            self.say("Wait for the current action to end", error=True)
            return None
        self._begin("Reloading the models…", command=False)
        return self.tasks.spawn(self._reload_alone(), "models-reload")

    async def _reload_alone(self) -> None:
        if await self._swap():
            self._end(f"Reloaded: {self.summary.text()}")

    async def _swap(self) -> bool:
        """The reload itself (the engine loads the new set off the loop); False, and the view
        says why in one line, if it failed."""
        try:
            registry = await self._reload()
        except Exception as exc:  # said in one line; the traceback goes to the log only
            log.error("models reload failed: %s", exc, exc_info=True)
            self._end(
                f"Reload failed: {' '.join(str(exc).split()) or type(exc).__name__}", error=True
            )
            return False
        self.show_registry(registry)
        return True

    def cancel(self) -> None:
        if self.command is not None:
            self.command.cancel()

    async def aclose(self) -> None:
        """The app is closing: a command still running is stopped (its child killed)."""
        if self.command is not None:
            await self.command.stop()


__all__ = ["ACTIONS", "COLUMNS", "ModelsView"]
