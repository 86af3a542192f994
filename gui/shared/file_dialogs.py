"""File dialogs that list a folder without opening the files in it.

Qt's own dialog asks its icon provider for each entry's type, and the default provider finds it
with `QMimeDatabase`, which reads the first bytes of any file its name does not settle (a `.db`
among them). Opening and closing the live database file drops every SQLite lock this process
holds on it (POSIX locks are per process), and another InferDeck process may then delete the
app's write-ahead log under it. So every dialog in the app comes from here: Qt's dialog, never
the platform's (a GTK dialog in-process sniffs content too), with an icon provider that looks
only at names and `stat` data. What the user then chooses is still checked with
`storage.database.is_live_database` before it is opened.
"""

from __future__ import annotations

from PySide6.QtCore import QFileInfo
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QFileDialog, QFileIconProvider, QWidget


class NameOnlyIconProvider(QFileIconProvider):
    """Icons from an entry's kind and suffix, never its contents; `file_dialog` installs it."""

    def icon(self, what: QFileIconProvider.IconType | QFileInfo) -> QIcon:
        if isinstance(what, QFileInfo):
            kind = (
                QFileIconProvider.IconType.Folder
                if what.isDir()
                else QFileIconProvider.IconType.File
            )
            return super().icon(kind)
        return super().icon(what)

    def type(self, info: QFileInfo) -> str:
        if info.isDir():
            return "Folder"
        suffix = info.suffix()
        return f"{suffix.upper()} file" if suffix else "File"


def file_dialog(parent: QWidget | None, caption: str) -> QFileDialog:
    """A non-native `QFileDialog` whose listing never opens a file (open it with `open()`)."""
    dialog = QFileDialog(parent, caption)
    dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
    provider = NameOnlyIconProvider()
    dialog.setIconProvider(provider)
    # The dialog does not own its provider: keep it alive exactly as long as the dialog.
    dialog._name_only_icons = provider  # type: ignore[attr-defined]
    return dialog
