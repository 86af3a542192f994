"""CSV with a header row. Empty cells count as missing fields; ragged rows are reported.

Bytes that are not UTF-8 are decoded with `surrogateescape`, so they spoil only the row they are in
(a strict decoder fails a whole 8 KiB chunk at once, taking the rows around it down too).

A row (not only a field) is bounded: the parser is fed physical lines no longer than the limit,
and a record whose lines add up past it is skipped whole and reported. Left to itself, `csv`
builds a row of any length in memory: a 60 MB one-row file of short fields became tens of
millions of strings (1.4 GB).
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from typing import BinaryIO, TextIO

from engine.ingest.rows import MAX_ROW_BYTES, RawRow, SourceError, too_long

_EOL = ("\n", "\r")


class _RowTooLong(Exception):
    """Raised through `csv.reader` by the line source when the record passes the limit."""


class _Lines:
    """The physical lines `csv.reader` parses, each bounded, with the record's size kept.

    `csv.reader` pulls one line per call for a plain record and more for a quoted field that
    spans lines; `start_record` is called before each record so the size and quote count are
    the record's own."""

    def __init__(self, text: TextIO) -> None:
        self._text = text
        self.ended = 0  # lines read to their end (the next record starts on ended + 1)
        self._chars = 0
        self._quotes = 0  # odd: a quoted field is still open at the end of the last line

    def start_record(self) -> None:
        self._chars = self._quotes = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        chunk = self._text.readline(MAX_ROW_BYTES + 1)
        if not chunk:
            raise StopIteration
        self._chars += len(chunk)
        self._quotes += chunk.count('"')
        if self._chars > MAX_ROW_BYTES:
            self._skip_record(chunk)
            raise _RowTooLong
        if chunk.endswith(_EOL):
            self.ended += 1
        return chunk

    def _skip_record(self, chunk: str) -> None:
        """Read past the rest of the record without keeping it: to the end of the line, and
        on to the line that closes a quoted field still open."""
        while True:
            if chunk.endswith(_EOL):
                self.ended += 1
                if self._quotes % 2 == 0:
                    return
            chunk = self._text.readline(MAX_ROW_BYTES)
            if not chunk:
                return
            self._quotes += chunk.count('"')


def _bad_byte(cells: list[str]) -> tuple[int, int] | None:
    """(column index, byte) of the first byte that was not UTF-8, or None."""
    if "".join(cells).isascii():
        return None
    for index, cell in enumerate(cells):
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError as exc:  # only the escaped bytes cannot be encoded
            return index, ord(cell[exc.start]) - 0xDC00
    return None


def read_csv(stream: BinaryIO, name: str) -> Iterator[RawRow]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        yield from _read_csv(text, name)
    finally:
        # The caller owns `stream` and closes it; a wrapper left attached would be collected
        # as an unclosed file (a ResourceWarning, an error under the tests). Already closed
        # (the rows were dropped unfinished after the caller closed it): nothing to detach.
        with contextlib.suppress(ValueError):
            text.detach()


def _read_csv(text: TextIO, name: str) -> Iterator[RawRow]:
    csv.field_size_limit(MAX_ROW_BYTES)
    lines = _Lines(text)
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{name}: cannot read the CSV header: {exc}") from exc
    except _RowTooLong:
        raise SourceError(f"{name}: {too_long('the header')}") from None
    if header is None:
        return
    bad = _bad_byte(header)
    if bad is not None:
        raise SourceError(f"{name}: the header is not UTF-8 text (byte 0x{bad[1]:02x})")
    header = [h.strip() for h in header]
    if not any(header):
        raise SourceError(f"{name}: the first line must be a header naming the columns")
    duplicates = {h for h in header if header.count(h) > 1}
    if duplicates:
        raise SourceError(f"{name}: header repeats column(s) {', '.join(sorted(duplicates))}")
    row = 0
    while True:
        line = lines.ended + 1
        lines.start_record()
        try:
            cells = next(reader, None)
        except csv.Error as exc:
            yield RawRow(row + 1, line, None, f"malformed CSV: {exc}; stopped reading")
            return
        except _RowTooLong:
            row += 1
            yield RawRow(row, line, None, too_long("row"))
            continue
        if cells is None:
            return
        if not cells or all(not c.strip() for c in cells):
            continue
        row += 1
        if len(cells) != len(header):
            yield RawRow(
                row, line, None, f"row has {len(cells)} fields but the header has {len(header)}"
            )
            continue
        bad = _bad_byte(cells)
        if bad is not None:
            column, byte = bad
            where = f"column '{header[column]}'" if header[column] else f"column {column + 1}"
            yield RawRow(row, line, None, f"not UTF-8 text (byte 0x{byte:02x} in {where})")
            continue
        yield RawRow(row, line, {k: v for k, v in zip(header, cells, strict=True) if v.strip()})
