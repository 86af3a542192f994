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
def on_ctrl_c(callback: Callable[[], object]) -> Iterator[None]:
    """Within the block, Ctrl+C calls `callback` (ending a run with its summary) instead of
    raising out of the event loop. Where the loop cannot take signal handlers (not the main
    thread, or no support), Ctrl+C keeps its default."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, callback)
    try:
        yield
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


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
