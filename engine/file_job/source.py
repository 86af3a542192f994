"""A file job's input file outside its rows: its SHA-256 and the interrupted job it may resume
(`identify`, done once per file and run), a cheap line estimate for progress bars, and the
count of rows left after a stop. All of it runs in threads and stops on request (Ctrl+C).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.ingest import FileFormat, RawRow, open_source, sniff
from engine.job_records import JobRecords
from storage import queries

_HASH_CHUNK = 1 << 20


class Stopped(Exception):
    """Hashing or counting was stopped from another thread (Ctrl+C)."""


@dataclass(frozen=True, slots=True)
class KnownFile:
    """A file's SHA-256 and its resumable job, looked up once (`identify`): the `predict`
    command does it for every file before the run and hands each to its `FileJob`."""

    digest: str
    resumable: queries.FileJobRow | None


async def identify(records: JobRecords, path: Path, stop: threading.Event) -> KnownFile:
    """Hash `path` in a thread and find the interrupted job over it. Raises `Stopped` when
    `stop` is set (before or during the hash), `SourceError` for a file that cannot be read."""
    digest = await asyncio.to_thread(sha256_of, path, stop)
    if stop.is_set():
        raise Stopped
    return KnownFile(digest, await records.find_resumable(str(path.resolve()), digest))


def estimate_rows(path: Path) -> int:
    """About how many rows the file has, from a cheap pass over its lines: the denominator of
    a progress bar, not a promise (a JSON document's lines are not its rows, and blank lines
    are no rows). A CSV file's header line is no row; an image is one."""
    fmt = sniff(path)
    if fmt is FileFormat.IMAGE:
        return 1
    lines, last = 0, b""
    with open_source(path) as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk
    lines += 1 if last and not last.endswith(b"\n") else 0
    return max(lines - 1, 0) if fmt is FileFormat.CSV else lines


def sha256_of(path: Path, stop: threading.Event | None = None) -> str:
    """The file's SHA-256 (a regular file only: `SourceError` otherwise). Run in a thread;
    setting `stop` ends it within one chunk with `Stopped`, so Ctrl+C is never held up by a
    large file."""
    digest = hashlib.sha256()
    with open_source(path) as fh:
        while chunk := fh.read(_HASH_CHUNK):
            if stop is not None and stop.is_set():
                raise Stopped
            digest.update(chunk)
    return digest.hexdigest()


def count_rows(rows: Iterator[RawRow], deadline: float, stop: threading.Event) -> int | None:
    """How many more rows `rows` yields, or None past the deadline, on `stop`, or on an error."""
    count = 0
    try:
        for _ in rows:
            count += 1
            if count % 1024 == 0 and (stop.is_set() or time.monotonic() > deadline):
                return None
    except Exception:  # a file that ends in a way the reader objects to: total unknown
        return None
    return count
