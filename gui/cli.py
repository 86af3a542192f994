"""The `inferdeck` command: parses arguments and hands each command its composed parts.

Headless commands import no Qt, so they start fast and run without a display. Every failure a
user can cause ends as one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import cast

from gui import logs
from gui.commands import export, load, models, predict, probe, runs, serve, targets
from gui.commands.common import EXIT_CANNOT_START, CommandError, SubParsers, printable
from gui.load_args import add_gui_arguments
from storage.database import StorageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(printable(f"inferdeck: {message}"), file=sys.stderr)  # it may echo an argument
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


def main(argv: Sequence[str] | None = None) -> int:
    # Once, before any command (the app, serve and its workers included) can log anything.
    logs.configure()
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
        print(printable(f"inferdeck: {exc}"), file=sys.stderr)
        for line in exc.details:
            print(printable(f"  {line}"), file=sys.stderr)
        return EXIT_CANNOT_START
    except StorageError as exc:
        # E.g. the database stopped taking writes mid-command (its files were changed under
        # it): one line that says so, not an "internal error".
        print(printable(f"inferdeck: {exc}"), file=sys.stderr)
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
        where = logs.log_crash(exc)
        print(
            printable(f"inferdeck: internal error: {type(exc).__name__}: {exc} (details: {where})"),
            file=sys.stderr,
        )
        return EXIT_CANNOT_START
    return code


if __name__ == "__main__":
    sys.exit(main())
