"""CSV with a header row. Empty cells count as missing fields; ragged rows are reported.

Bytes that are not UTF-8 are decoded with `surrogateescape`, so they spoil only the row they are in
(a strict decoder fails a whole 8 KiB chunk at once, taking the rows around it down too).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import BinaryIO

from engine.ingest.rows import MAX_ROW_BYTES, RawRow, SourceError


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
    csv.field_size_limit(MAX_ROW_BYTES)
    reader = csv.reader(text)
    try:
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{name}: cannot read the CSV header: {exc}") from exc
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
        line = reader.line_num + 1
        try:
            cells = next(reader, None)
        except csv.Error as exc:
            yield RawRow(row + 1, line, None, f"malformed CSV: {exc}; stopped reading")
            return
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
