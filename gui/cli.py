"""The `inferdeck` command: parses arguments and hands each command its composed parts.

Headless commands import no Qt, so they start fast and run without a display. Every failure a
user can cause ends as one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import cast

import platformdirs

from gui.commands import export, load, models, predict, probe, runs, serve, targets
from gui.commands.common import EXIT_CANNOT_START, CommandError, SubParsers
from gui.load_args import add_gui_arguments


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"inferdeck: {message}", file=sys.stderr)
        sys.exit(EXIT_CANNOT_START)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="inferdeck",
        description="A console for model inference: predict, trace, load and monitor.",
    )
    sub = cast(
        SubParsers, parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    )
    gui = sub.add_parser("gui", help="the desktop app (the default)")
    gui.add_argument("--db", help="database file")
    gui.add_argument(
        "--autoquit", type=float, metavar="S", help="quit S seconds after the models are ready"
    )
    add_gui_arguments(gui)
    predict.add_parser(sub)
    runs.add_parser(sub)
    export.add_parser(sub)
    models.add_parser(sub)
    serve.add_parser(sub)
    load.add_parser(sub)
    probe.add_parser(sub)
    targets.add_parser(sub)
    return parser


def _log_crash(exc: BaseException) -> str:
    """Keep the traceback in a log file for a bug report; the user sees one line."""
    folder = platformdirs.user_log_path("inferdeck", appauthor=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "crash.log"
        with path.open("a", encoding="utf-8") as fh:
            fh.write("".join(traceback.format_exception(exc)) + "\n")
        return str(path)
    except OSError:
        return "(could not write a log)"


class _OneLine(logging.Formatter):
    """stderr gets one line per record; the traceback goes to the crash log instead."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info:
            _log_crash(record.exc_info[1] or RuntimeError(record.getMessage()))
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return super().format(record)


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine("inferdeck: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


def main(argv: Sequence[str] | None = None) -> int:
    _configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui"])  # the app with every flag at its default
    if args.command in (None, "gui"):
        from gui.app import run_gui
        from gui.commands.common import db_path

        return run_gui(args, db_path(getattr(args, "db", None)))
    try:
        # `serve` runs its own loop (uvicorn's); the other commands are coroutines.
        code: int = args.run(args) if getattr(args, "sync", False) else asyncio.run(args.run(args))
    except CommandError as exc:
        print(f"inferdeck: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    except BrokenPipeError:
        # The reader went away (`inferdeck export ... | head`): not an error worth a word.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("inferdeck: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        where = _log_crash(exc)
        print(
            f"inferdeck: internal error: {type(exc).__name__}: {exc} (details: {where})",
            file=sys.stderr,
        )
        return EXIT_CANNOT_START
    return code


if __name__ == "__main__":
    sys.exit(main())
