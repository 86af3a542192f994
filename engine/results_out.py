"""`--out FILE.jsonl`: results streamed as they are committed, one JSON object per line.

Each delivery is one `write()` of whole lines, so a killed process leaves at most a torn last
line, which `ResultFile` cuts off when it reopens the file to resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson


class ResultFile:
    """The `--out` JSONL file a `predict` run streams results to; `FileJob` writes each delivery."""

    def __init__(self, path: Path, *, append: bool) -> None:
        self.path = path
        self.known_ids: set[str] = set()
        if append and path.exists():
            self._trim_torn_tail()
            self.known_ids = _ids_in(path)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        self._fd = os.open(path, flags, 0o644)

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        for record in records:
            self.known_ids.add(record["request_id"])

    def close(self) -> None:
        os.close(self._fd)

    def _trim_torn_tail(self) -> None:
        with self.path.open("rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size == 0:
                return
            back = min(size, 1 << 20)
            fh.seek(size - back)
            tail = fh.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            fh.truncate(size - back + cut + 1 if cut >= 0 else size - back)


def _ids_in(path: Path) -> set[str]:
    ids = set()
    with path.open("rb") as fh:
        for line in fh:
            try:
                ids.add(json.loads(line)["request_id"])
            except (ValueError, KeyError, TypeError):
                continue
    return ids


def out_record(
    request_id: str,
    row: int | None,
    status: str,
    model: str | None,
    output: dict[str, Any] | None,
    error: dict[str, Any] | None,
    latency_us: int,
) -> dict[str, Any]:
    """The one shape of a `--out` line, for live results and for back-filled ones alike."""
    record: dict[str, Any] = {
        "request_id": request_id,
        "row": row,
        "status": status,
        "model": model,
    }
    if output is not None:
        record["output"] = output
    if error is not None:
        record["error"] = error
    record["latency_ms"] = round(latency_us / 1000, 3)
    return record


def record_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The `--out` record for a committed `requests` row (used when resuming a job)."""
    return out_record(
        row["request_id"],
        row["source_row"],
        row["status"],
        row["model"],
        json.loads(row["output"]) if row["output"] else None,
        json.loads(row["error"]) if row["error"] else None,
        row["latency_us"] or 0,
    )
