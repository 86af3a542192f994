"""A JSON document: one object, an array of objects, or objects one after another.

Parsed incrementally with `raw_decode` over a sliding window, so a large array streams instead of
being loaded whole. A syntax error ends the file (the rows before it still run); a value too long
or nested too deeply to decode is a rejected row, stepped over without decoding it.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import BinaryIO

from engine.ingest.rows import MAX_ROW_BYTES, RawRow, too_long

_CHUNK = 1 << 16
_WS = " \t\r\n"


class _Window:
    """A sliding window of decoded text over a JSON document, for the streaming array reader."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.text = ""
        self.pos = 0
        self.line = 1  # line number at `pos`
        self.eof = False
        self.bad: UnicodeDecodeError | None = None  # raised once the text before it is used up

    def more(self) -> bool:
        if self.eof:
            if self.bad is not None:
                raise self.bad
            return False
        chunk = self._stream.read(_CHUNK)
        if self.pos > _CHUNK:  # drop what has been consumed
            self.text, self.pos = self.text[self.pos :], 0
        try:
            if not chunk:
                self.eof = True
                self.text += self._decoder.decode(b"", final=True)
                return False
            self.text += self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            # Keep the text before the bad byte, so the rows before it still run.
            self.text += bytes(exc.object[: exc.start]).decode("utf-8")
            self.eof, self.bad = True, exc
        return True

    def skip_ws(self) -> str | None:
        """Move past white space; the next character, or None at the end of the file."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WS:
                if self.text[self.pos] == "\n":
                    self.line += 1
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return None

    def advance(self, end: int) -> None:
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end


def read_json(stream: BinaryIO) -> Iterator[RawRow]:
    win = _Window(stream)
    decoder = json.JSONDecoder()
    row = 0  # rows read so far
    try:
        first = win.skip_ws()
        if first is None:
            return
        in_array = first == "["
        if in_array:
            win.advance(win.pos + 1)
        while True:
            nxt = win.skip_ws()
            if in_array and nxt == "]":
                if row:
                    yield RawRow(row + 1, win.line, None, "trailing ',' before ']'")
                return
            if nxt is None:
                if in_array:
                    yield RawRow(row + 1, win.line, None, "file ends before the array is closed")
                return
            start_line = win.line
            try:
                value, end = _decode_one(win, decoder)
            except _Unreadable as exc:
                # Too deep or too long to decode, but its end can still be found: the value is
                # a rejected row and the rows after it run (as a bad line in JSONL).
                row += 1
                yield RawRow(row, start_line, None, str(exc))
                if not _skip_value(win):
                    if in_array:
                        ends = "file ends before the array is closed"
                        yield RawRow(row + 1, win.line, None, ends)
                    return
            except _SyntaxProblem as exc:
                yield RawRow(row + 1, start_line, None, str(exc))
                return
            else:
                row += 1
                win.advance(end)
                if isinstance(value, dict):
                    yield RawRow(row, start_line, value)
                else:
                    yield RawRow(row, start_line, None, f"expected an object, got {_kind(value)}")
            if in_array:
                sep = win.skip_ws()
                if sep == ",":
                    win.advance(win.pos + 1)
                elif sep == "]":
                    return
                else:
                    found = "the end of the file" if sep is None else repr(sep)
                    yield RawRow(row + 1, win.line, None, f"expected ',' or ']' but found {found}")
                    return
    except UnicodeDecodeError as exc:
        # The bad byte comes right after the text decoded so far.
        line = win.line + win.text.count("\n", win.pos)
        byte = exc.object[exc.start] if exc.start < len(exc.object) else None
        what = f"byte 0x{byte:02x}" if byte is not None else exc.reason
        yield RawRow(row + 1, win.line, None, f"not UTF-8 text ({what} at line {line}); stopped")


class _SyntaxProblem(ValueError):
    """The value at the window's position is not valid JSON; the message says why."""


class _Unreadable(ValueError):
    """The value at the window's position is well-formed as far as read, but too long or too
    deeply nested to decode; `_skip_value` can step over it."""


def _decode_one(win: _Window, decoder: json.JSONDecoder) -> tuple[object, int]:
    while True:
        try:
            value, end = decoder.raw_decode(win.text, win.pos)
        except RecursionError:
            # The C decoder recurses once per level: a document nested thousands deep would
            # otherwise end the whole job. No request nests anywhere near that deep.
            raise _Unreadable("nested too deeply to decode; skipped") from None
        except json.JSONDecodeError as exc:
            # An error near the end of the window may only mean the value is not all read yet.
            if len(win.text) - win.pos > MAX_ROW_BYTES:
                raise _Unreadable(too_long("value")) from None
            if win.more():
                continue
            if exc.msg.startswith("Unterminated string") or not win.text[exc.pos :].strip():
                raise _SyntaxProblem("the file ends before this value is complete") from None
            line = win.line + win.text.count("\n", win.pos, exc.pos)
            reason = exc.msg.removesuffix(" at")  # the position is given as the line
            raise _SyntaxProblem(f"not valid JSON at line {line}: {reason}") from None
        # A number at the very end of the window may continue in the next chunk.
        if end == len(win.text) and not win.eof and win.more():
            continue
        if end - win.pos > MAX_ROW_BYTES:
            raise _Unreadable(too_long("value"))
        return value, end


# What ends or nests a value, outside a string and inside one.
_STRUCTURE = re.compile(r'["{}\[\]]')
_IN_STRING = re.compile(r'["\\]')
_SCALAR_END = re.compile(r"[,\]}\s]")


def _skip_value(win: _Window) -> bool:
    """Move past the value at the window's position without decoding or keeping it (the text
    read is dropped as the window slides, so memory stays bounded however long the value is).
    False when the file ends first."""
    if win.text[win.pos] not in '{["':
        # A bare number or word: it ends at the next separator.
        while (end := _SCALAR_END.search(win.text, win.pos)) is None:
            win.advance(len(win.text))
            if not win.more():
                return False
        win.advance(end.start())
        return True
    depth, in_string, escaped = 0, False, False
    while True:
        text, pos = win.text, win.pos
        if escaped and pos < len(text):
            pos, escaped = pos + 1, False  # the character a chunk-final backslash escapes
        while (found := (_IN_STRING if in_string else _STRUCTURE).search(text, pos)) is not None:
            char, pos = found.group(), found.end()
            if in_string:
                if char == "\\":
                    if pos == len(text):
                        escaped = True
                        break
                    pos += 1
                    continue
                in_string = False
                if depth == 0:
                    win.advance(pos)
                    return True
            elif char == '"':
                in_string = True
            elif char in "{[":
                depth += 1
            else:
                depth -= 1
                if depth <= 0:
                    win.advance(pos)
                    return True
        win.advance(len(text))
        if not win.more():
            return False


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return type(value).__name__
