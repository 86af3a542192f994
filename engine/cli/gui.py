"""`inferdeck gui` (and plain `inferdeck`): the desktop app's flags, then the app itself.

The app lives in the `gui` package, the only one that imports Qt; it is imported by name when
this command runs, so every other command works on an install without Qt, and this one says in
one line which install group brings the app when Qt is missing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

from engine.cli.common import SubParsers, db_path, missing_extra, needs_extras
from engine.cli.load_args import add_gui_arguments

# The packages of the `desktop` group that the app imports only once it has checked its
# arguments and the display: looked up first, so a missing one is named before anything else.
QT_PACKAGES = ("PySide6", "shiboken6", "qasync", "pyqtgraph")
WHAT = "the desktop app"


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("gui", help="the desktop app (the default)")
    p.add_argument("--db", help="database file")
    p.add_argument(
        "--autoquit", type=float, metavar="S", help="quit S seconds after the models are ready"
    )
    add_gui_arguments(p)
    p.set_defaults(run=run, sync=True)


def run(args: argparse.Namespace) -> int:
    with needs_extras(WHAT, extra="desktop"):
        for package in QT_PACKAGES:
            # find_spec finds a top-level package without importing it (Qt takes a while).
            if importlib.util.find_spec(package) is None:
                raise missing_extra(WHAT, package, extra="desktop")
        app = importlib.import_module("gui.app")
        code: int = app.run_gui(args, db_path(args.db))
    return code
