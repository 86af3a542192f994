"""CSV with a header row. Empty cells count as missing fields; ragged rows are reported."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import BinaryIO

from engine.ingest.rows import MAX_ROW_BYTES, RawRow, SourceError


def read_csv(stream: BinaryIO, name: str) -> Iterator[RawRow]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    csv.field_size_limit(MAX_ROW_BYTES)
    reader = csv.reader(text)
    try:
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{name}: cannot read the CSV header: {exc}") from exc
    if header is None:
        return
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
        except UnicodeDecodeError as exc:
            yield RawRow(row + 1, line, None, f"not UTF-8 text: {exc.reason}; stopped reading")
            return
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
        yield RawRow(row, line, {k: v for k, v in zip(header, cells, strict=True) if v.strip()})
