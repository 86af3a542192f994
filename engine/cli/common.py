"""What every command shares: exit codes, the database location, one-line errors, output."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import platformdirs

from storage import Database, open_database

# Each command module adds its own sub-parser to this.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_OK = 0
EXIT_PARTIAL = 1  # some rows rejected or requests failed
EXIT_CANNOT_START = 2  # bad arguments, unreadable input, unreachable target


class CommandError(Exception):
    """A failure to report as one line (`inferdeck: ...`) with exit status 2; `details` are
    lines printed under it (the runs an ambiguous ID prefix matches)."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


# The optional-dependency group (pyproject.toml) that brings each third-party package a command
# may need beyond the core install.
EXTRA_OF_PACKAGE = {
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "httpx": "remote",
    "httpx_aiohttp": "remote",
    "aiohttp": "remote",
    "keyring": "remote",
    "PySide6": "desktop",
    "shiboken6": "desktop",
    "qasync": "desktop",
    "pyqtgraph": "desktop",
}


class MissingExtraError(CommandError):
    """A package of an optional install group is missing: raised by `needs_extras` for the
    launcher and the `serve` and `gui` commands, it names the group to install."""


@contextlib.contextmanager
def needs_extras(what: str, extra: str | None = None) -> Iterator[None]:
    """Within the block, importing a missing package of an install group raises a
    `MissingExtraError` saying that `what` needs it and how to install it (`extra`: the group
    to name instead of the package's own, for a command that needs a larger one). A missing
    package of no group is a bug, not an install to fix: it propagates."""
    try:
        yield
    except ModuleNotFoundError as exc:
        package = (exc.name or "").partition(".")[0]
        if package not in EXTRA_OF_PACKAGE:
            raise
        raise missing_extra(what, package, extra) from exc


def missing_extra(what: str, package: str, extra: str | None = None) -> MissingExtraError:
    """The one line for `what` lacking `package`: the install group that brings it (`extra`,
    or the package's own group)."""
    return MissingExtraError(
        f"{what} needs {package}, which this installation lacks: "
        f"pip install 'inferdeck[{extra or EXTRA_OF_PACKAGE[package]}]'"
    )


# Characters that must not reach a terminal raw from a user's file name, target name, URL or
# an error that echoes one: C0 and C1 controls (ESC starts escape sequences that recolour,
# move the cursor or retitle the window; a newline forges a line of output), and the Unicode
# line separators and bidirectional overrides that reorder what the reader sees. Lone
# surrogates (a file name's undecodable bytes) are escaped too: printed raw, they would raise.
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` safe to print: each control character written as Python writes it in a string
    literal (`\\n`, `\\x1b`, `\\u202e`), everything else (accents, CJK, emoji) kept as is."""
    return _UNPRINTABLE.sub(_escape, text)


def default_db_path() -> Path:
    env = os.environ.get("INFERDECK_DB")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("inferdeck", appauthor=False)) / "inferdeck.db"


def db_path(arg: str | None) -> Path:
    return Path(arg) if arg else default_db_path()


def parse_headers(values: list[str] | None) -> dict[str, str]:
    """`K:V` pairs from repeated `--header` options."""
    headers: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise CommandError(f"--header {item.split(':')[0]!r}: expected NAME:VALUE")
        headers[name.strip()] = value.strip()
    return headers


@contextlib.contextmanager
def on_ctrl_c(
    callback: Callable[[], object], on_term: Callable[[], object] | None = None
) -> Iterator[None]:
    """Within the block, Ctrl+C calls `callback` (ending a run with its summary) instead of
    raising out of the event loop, and so does SIGTERM (`kill`, a service manager, a container
    stopping), or `on_term` when given: a run stopped that way ends as cleanly, with what it
    acknowledged stored. Where the loop cannot take signal handlers (not the main thread, or
    no support), both keep their defaults."""
    loop = asyncio.get_running_loop()
    handlers = {signal.SIGINT: callback, signal.SIGTERM: on_term or callback}
    for signum, handler in handlers.items():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, handler)
    try:
        yield
    finally:
        for signum in handlers:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)


# Every line a command prints goes through `say` or `warn` (and `inferdeck: ...` errors through
# the same escaping in engine/cli/main.py), so no user-controlled text can reach the terminal raw. A
# line never holds an intended control character: multi-line output is one call per line.
def say(text: str) -> None:
    print(printable(text), flush=True)


def warn(text: str) -> None:
    print(printable(text), file=sys.stderr, flush=True)


def emit_json(value: Any) -> None:
    """The `--json` contract: one JSON object as the last line on stdout."""
    print(json.dumps(value, separators=(",", ":")), flush=True)


@contextlib.asynccontextmanager
async def database(path: Path) -> AsyncIterator[Database]:
    """The database for a command that only reads or edits rows (no engine): closed on exit."""
    db = await open_database(path)  # a StorageError is the launcher's one-line message
    try:
        yield db
    finally:
        await db.close()
