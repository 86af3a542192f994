"""The `inferdeck` launcher: finds the command in the arguments, imports only that command's
module, and turns every failure a user can cause into one line on stderr and exit status 2.

Importing only the chosen command keeps each one as light as it can be (`serve` never loads
the HTTP client, `predict` never loads the server) and lets a server install without Qt run
every command but `gui`: the desktop app is reached by name (`gui.app`), never imported here.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import cast

from engine import logs
from engine.cli.common import (
    EXIT_CANNOT_START,
    CommandError,
    MissingExtraError,
    SubParsers,
    needs_extras,
    printable,
)
from storage.database import StorageError

# Each command: its one-line help and the module that adds its parser and runs it.
COMMANDS: dict[str, tuple[str, str]] = {
    "gui": ("the desktop app (the default)", "engine.cli.gui"),
    "predict": ("run files through a local model", "engine.cli.predict"),
    "runs": ("list or show past runs", "engine.cli.runs"),
    "export": ("export a run's requests and traces", "engine.cli.export"),
    "models": ("list, add, check or remove models", "engine.cli.models"),
    "serve": ("the model-serving HTTP service", "engine.cli.serve"),
    "load": ("send load to a remote target and measure it", "engine.cli.load"),
    "probe": ("probe a target's health (live, ready, model ready)", "engine.cli.probe"),
    "targets": ("add, edit, list, show or remove remote targets", "engine.cli.targets"),
}

__all__ = ["COMMANDS", "MissingExtraError", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """The launcher's and each command's parser: a usage error is the usage line, one
    `inferdeck: ...` line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(printable(f"inferdeck: {message}"), file=sys.stderr)  # it may echo an argument
        sys.exit(EXIT_CANNOT_START)


def import_command(name: str) -> ModuleType:
    """The command's module, or a `MissingExtraError` naming the install group it needs."""
    with needs_extras(f"`inferdeck {name}`"):
        return importlib.import_module(COMMANDS[name][1])


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command named in `argv` (the first word; the launcher itself takes only -h)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `inferdeck` parser. With `only`, that command's module is imported and builds its
    parser; every other command is listed by name and help alone. Without `only` (`--help`,
    no command, an unknown one) nothing is imported: the list of commands is all argparse needs,
    and a command whose install group is missing must not break the launcher's own help."""
    parser = _Parser(
        prog="inferdeck",
        description="A console for model inference: predict, trace, load and monitor.",
    )
    sub = cast(
        SubParsers, parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    )
    for name, (help_text, _module) in COMMANDS.items():
        if name == only:
            import_command(name).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Once, before any command (the app, serve and its workers included) can log anything.
    logs.configure()
    words = list(sys.argv[1:] if argv is None else argv)
    command = chosen_command(words)
    if not words:
        words, command = ["gui"], "gui"  # the app with every flag at its default
    try:
        args = build_parser(only=command).parse_args(words)
        # `serve` and `gui` run their own loops (uvicorn's, qasync's); the others are coroutines.
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
