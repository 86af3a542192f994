"""Which reader a file gets, decided by its suffix and confirmed by its first bytes."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.ingest.csv_rows import read_csv
from engine.ingest.json_doc import read_json
from engine.ingest.jsonl import read_jsonl
from engine.ingest.rows import RawRow, SourceError, not_regular, open_source
from engine.ingest.suffixes import IMAGE_SUFFIXES
from storage.database import file_identity


class FileFormat(enum.StrEnum):
    """The input formats `predict` and the drop panel read, as `sniff` tells them apart."""

    JSONL = "jsonl"
    JSON = "json"
    CSV = "csv"
    IMAGE = "image"


_BY_SUFFIX = {
    ".jsonl": FileFormat.JSONL,
    ".ndjson": FileFormat.JSONL,
    ".json": FileFormat.JSON,
    ".csv": FileFormat.CSV,
    **{suffix: FileFormat.IMAGE for suffix in IMAGE_SUFFIXES},
}
SUPPORTED_SUFFIXES = frozenset(_BY_SUFFIX)

_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"BM", b"GIF8", b"RIFF", b"II*\x00", b"MM\x00*")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def expand_inputs(paths: list[str], protected: Iterable[Path] = ()) -> list[Path]:
    """Check every path exists; a folder stands for the supported files directly inside it.

    Only regular files are inputs (a FIFO or a device is refused here, by `stat`, which opens
    nothing). `protected` files (the database and its WAL/SHM) are refused too: reading them
    opens and closes a descriptor on the live database, which drops the process's SQLite locks.
    They are compared by device and inode, so another spelling of the path is caught as well."""
    guarded = _identities(protected)
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        try:
            info = path.stat()
        except FileNotFoundError:
            raise SourceError(f"{raw}: no such file or folder") from None
        except OSError as exc:
            raise SourceError(f"{raw}: cannot read ({exc.strerror or exc})") from exc
        if path.is_dir():
            inside = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _BY_SUFFIX
            )
            inside = [p for p in inside if file_identity(p) not in guarded]
            if not inside:
                kinds = "JSON, JSONL, CSV or image"
                raise SourceError(f"{raw}: folder holds no {kinds} files")
            found.extend(inside)
            continue
        problem = not_regular(info.st_mode)
        if problem is not None:
            raise SourceError(f"{raw}: {problem}")
        if (info.st_dev, info.st_ino) in guarded:
            raise SourceError(f"{raw}: this is InferDeck's own database, not an input file")
        found.append(path)
    return found


def _identities(paths: Iterable[Path]) -> set[tuple[int, int]]:
    return {ident for p in paths if (ident := file_identity(p)) is not None}


def sniff(path: Path) -> FileFormat:
    """The file's format, or `SourceError` saying why it cannot be read."""
    try:
        with open_source(path) as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not head:
        raise SourceError(f"{path}: file is empty")
    fmt = _BY_SUFFIX.get(path.suffix.lower())
    looks_image = head.startswith(_IMAGE_MAGIC)
    if fmt is FileFormat.IMAGE or (fmt is None and looks_image):
        return FileFormat.IMAGE
    if head.startswith(_UTF16_BOMS):
        raise SourceError(f"{path}: file is UTF-16 text; save it as UTF-8")
    if b"\x00" in head or looks_image:
        raise SourceError(f"{path}: binary data, not JSON, JSONL or CSV text")
    if fmt is not None:
        return fmt
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"[":
        return FileFormat.JSON
    if start == b"{":
        return FileFormat.JSONL
    raise SourceError(
        f"{path}: unsupported file type {path.suffix or '(no suffix)'}: "
        "use .json, .jsonl, .csv or an image"
    )


@contextmanager
def open_rows(path: Path, fmt: FileFormat) -> Iterator[Iterator[RawRow]]:
    """The rows of a text file (images are read whole by the file job)."""
    if fmt is FileFormat.IMAGE:
        raise ValueError("images are not read row by row")
    with open_source(path) as stream:
        if fmt is FileFormat.JSONL:
            rows = read_jsonl(stream)
        elif fmt is FileFormat.JSON:
            rows = read_json(stream)
        else:
            rows = read_csv(stream, str(path))
        yield _at_least_one(rows, path, fmt)


_NOTHING_IN = {
    FileFormat.JSONL: "only blank lines",
    FileFormat.JSON: "no objects (only white space or an empty array)",
    FileFormat.CSV: "a header but no rows",
}


def _at_least_one(rows: Iterator[RawRow], path: Path, fmt: FileFormat) -> Iterator[RawRow]:
    """A file with nothing to run is a file-level error, so the user is told why nothing ran."""
    empty = True
    for row in rows:
        empty = False
        yield row
    if empty:
        raise SourceError(f"{path}: nothing to run: the file holds {_NOTHING_IN[fmt]}")
