"""JSON Lines: one object per line; blank lines are skipped, line numbers kept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from engine.ingest.rows import MAX_ROW_BYTES, RawRow

_BOM = b"\xef\xbb\xbf"


def read_jsonl(stream: BinaryIO) -> Iterator[RawRow]:
    line_no = 0
    while True:
        line = stream.readline(MAX_ROW_BYTES + 1)
        if not line:
            return
        line_no += 1
        if len(line) > MAX_ROW_BYTES and not line.endswith(b"\n"):
            _skip_rest_of_line(stream)
            limit = MAX_ROW_BYTES >> 20
            yield RawRow(line_no, line_no, None, f"line is longer than {limit} MiB; skipped")
            continue
        if line_no == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        line = line.strip()
        if not line:
            continue
        if not line.isascii():
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RawRow(
                    line_no,
                    line_no,
                    None,
                    f"not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1})",
                )
                continue
        yield RawRow(line_no, line_no, line)


def _skip_rest_of_line(stream: BinaryIO) -> None:
    while True:
        chunk = stream.readline(MAX_ROW_BYTES)
        if not chunk or chunk.endswith(b"\n"):
            return
