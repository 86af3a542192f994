"""The unit a reader yields, the file-level error, and how an input file is opened."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

# A row longer than this is reported and skipped (it would only be a mistake or an attack).
MAX_ROW_BYTES = 1 << 20


class SourceError(Exception):
    """The file as a whole cannot be read; the message names the file and says why."""


@dataclass(slots=True)
class RawRow:
    """One row read from an input file, before validation; the readers yield them to `FileJob`."""

    row: int  # 1-based: JSONL/CSV line number, JSON array element, 1 for an image
    line: int | None  # where it starts in the file, when the format has lines
    data: bytes | dict[str, Any] | None  # None when `problem` says why it could not be read
    problem: str | None = None


def too_long(what: str) -> str:
    """The message of a row past `MAX_ROW_BYTES` (one wording in every format)."""
    return f"{what} is longer than {MAX_ROW_BYTES >> 20} MiB; skipped"


_KINDS = (
    (stat.S_ISFIFO, "a pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def not_regular(mode: int) -> str | None:
    """Why a file of this mode cannot be an input, or None for a regular file.

    A pipe has no end a job can hash or resume from (and opening one blocks until a writer
    comes), and a device such as /dev/zero never ends: only regular files are read."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"{kind}, not a regular file; save its content to a file and run that"


def open_source(path: Path) -> BinaryIO:
    """Open an input file for reading, refusing anything but a regular file.

    Opened non-blocking so a FIFO cannot hang the open itself (it would wait for a writer), and
    checked with `fstat` on the descriptor that is read, so a path swapped after an earlier
    check cannot slip a device in."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        problem = not_regular(os.fstat(fd).st_mode)
        if problem is not None:
            raise SourceError(f"{path}: {problem}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
