"""Light and dark palettes that follow the system's colour scheme (or the user's choice).

Qt reports the desktop's scheme through `QStyleHints.colorScheme()` and announces changes;
the Fusion style draws both palettes the same way on every platform. pyqtgraph draws its own
backgrounds, so plots are told to follow (`sigThemeChanged`). A widget with its own style sheet
(a heading's font, say) keeps the palette it was polished with: each is polished again.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QSettings, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget

CHOICES = ("system", "light", "dark")

_DARK = {
    QPalette.ColorRole.Window: "#2b2d30",
    QPalette.ColorRole.WindowText: "#dfe1e5",
    QPalette.ColorRole.Base: "#1e1f22",
    QPalette.ColorRole.AlternateBase: "#26282b",
    QPalette.ColorRole.ToolTipBase: "#3c3f41",
    QPalette.ColorRole.ToolTipText: "#dfe1e5",
    QPalette.ColorRole.PlaceholderText: "#868a91",
    QPalette.ColorRole.Text: "#dfe1e5",
    QPalette.ColorRole.Button: "#393b40",
    QPalette.ColorRole.ButtonText: "#dfe1e5",
    QPalette.ColorRole.BrightText: "#ff6b68",
    QPalette.ColorRole.Highlight: "#3574f0",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#589df6",
}


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, color in _DARK.items():
        palette.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6f737a"))
    return palette


class Theme(QObject):
    """The light or dark palette, applied as the system or the user chooses; `gui.app` makes it."""

    sigThemeChanged = Signal(bool)  # dark?

    def __init__(self, app: QApplication, settings: QSettings) -> None:
        super().__init__(app)
        self._app = app
        self._settings = settings
        self._light = QPalette(app.palette())
        app.setStyle("Fusion")
        app.styleHints().colorSchemeChanged.connect(lambda _scheme: self.apply())
        self.dark = False

    @property
    def choice(self) -> str:
        value = self._settings.value("appearance/theme", "system")
        return value if value in CHOICES else "system"

    def choose(self, choice: str) -> None:
        self._settings.setValue("appearance/theme", choice)
        self.apply()

    def apply(self) -> None:
        choice = self.choice
        if choice == "system":
            scheme = QGuiApplication.styleHints().colorScheme()
            dark = scheme == Qt.ColorScheme.Dark
        else:
            dark = choice == "dark"
        self._app.setPalette(dark_palette() if dark else self._light)
        self._repolish_styled()
        self.dark = dark
        self.sigThemeChanged.emit(dark)

    def _repolish_styled(self) -> None:
        """Widgets under a style sheet keep the palette they were polished with (measured:
        a heading stayed black on the dark window); polishing them again takes the new one."""
        for widget in self._app.allWidgets():
            if widget.styleSheet():
                for each in (widget, *widget.findChildren(QWidget)):
                    each.style().unpolish(each)  # its own (style-sheet) style
                    each.style().polish(each)
