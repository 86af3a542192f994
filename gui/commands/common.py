"""What every command shares: exit codes, the database location, one-line errors, output."""

from __future__ import annotations

import argparse
import json
import os
import sys
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


def say(text: str) -> None:
    print(text, flush=True)


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def emit_json(value: Any) -> None:
    """The `--json` contract: one JSON object as the last line on stdout."""
    print(json.dumps(value, separators=(",", ":")), flush=True)
