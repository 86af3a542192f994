"""What every command shares: exit codes, the database location, one-line errors, output."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import platformdirs

# Each command module adds its own sub-parser to this.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_OK = 0
EXIT_PARTIAL = 1  # some rows rejected or requests failed
EXIT_CANNOT_START = 2  # bad arguments, unreadable input, unreachable target


class CommandError(Exception):
    """A failure to report as one line (`inferdeck: ...`) with exit status 2."""


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


def say(text: str) -> None:
    print(text, flush=True)


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def emit_json(value: Any) -> None:
    """The `--json` contract: one JSON object as the last line on stdout."""
    print(json.dumps(value, separators=(",", ":")), flush=True)
