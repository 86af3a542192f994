"""`inferdeck gui` (and plain `inferdeck`): the desktop app's flags, then the app itself.

The app lives in the `gui` package, the only one that imports Qt; it is imported by name when
this command runs, so every other command works on an install without Qt.
"""

from __future__ import annotations

import argparse
import importlib

from engine.cli.common import SubParsers, db_path
from engine.cli.load_args import add_gui_arguments


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("gui", help="the desktop app (the default)")
    p.add_argument("--db", help="database file")
    p.add_argument(
        "--autoquit", type=float, metavar="S", help="quit S seconds after the models are ready"
    )
    add_gui_arguments(p)
    p.set_defaults(run=run, sync=True)


def run(args: argparse.Namespace) -> int:
    try:
        app = importlib.import_module("gui.app")
    except ModuleNotFoundError as exc:
        from engine.cli.main import EXTRA_OF_PACKAGE, MissingExtraError

        package = (exc.name or "").split(".")[0]
        if package not in EXTRA_OF_PACKAGE:
            raise
        raise MissingExtraError(
            f"the desktop app needs {package}, which this installation lacks: "
            "pip install 'inferdeck[desktop]'"
        ) from exc
    code: int = app.run_gui(args, db_path(args.db))
    return code
