"""The unit a reader yields, and the file-level error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A row longer than this is reported and skipped (it would only be a mistake or an attack).
MAX_ROW_BYTES = 1 << 20


class SourceError(Exception):
    """The file as a whole cannot be read; the message names the file and says why."""


@dataclass(slots=True)
class RawRow:
    row: int  # 1-based: JSONL/CSV line number, JSON array element, 1 for an image
    line: int | None  # where it starts in the file, when the format has lines
    data: bytes | dict[str, Any] | None  # None when `problem` says why it could not be read
    problem: str | None = None
