"""Exporting a run's requests: Chrome trace (Perfetto, chrome://tracing), CSV and JSONL, and
`export_file`, the one way both `inferdeck export --out` and the Runs view write them to a file.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import json
import os
import secrets
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from storage.database import refuse_live_database

FORMATS = ("chrome-trace", "csv", "jsonl")
STAGES = ("validate", "metadata", "queue_wait", "inference", "write")

Rows = AsyncIterator[dict[str, Any]]


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("input", "metadata", "output", "error", "spans"):
        if out.get(key):
            # Rejected rows keep the raw text that failed to parse.
            with contextlib.suppress(ValueError):
                out[key] = json.loads(out[key])
    return out


async def write_jsonl(rows: AsyncIterator[dict[str, Any]], out: TextIO, base_us: int = 0) -> int:
    count = 0
    async for row in rows:
        out.write(json.dumps(_decoded(row), separators=(",", ":")) + "\n")
        count += 1
    return count


async def write_csv(rows: AsyncIterator[dict[str, Any]], out: TextIO, base_us: int = 0) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "request_id",
            "run_id",
            "source",
            "row",
            "model",
            "client_id",
            "status",
            "created_us",
            "latency_ms",
            "label",
            "error",
            *(f"{stage}_us" for stage in STAGES),
        ]
    )
    count = 0
    async for raw in rows:
        row = _decoded(raw)
        output = row.get("output") if isinstance(row.get("output"), dict) else {}
        err = row.get("error") if isinstance(row.get("error"), dict) else {}
        stage_us = {s[0]: s[2] for s in row.get("spans") or []}
        latency = row.get("latency_us")
        writer.writerow(
            [
                row["request_id"],
                row["run_id"],
                row["source"],
                row.get("source_row") or "",
                row.get("model") or "",
                row.get("client_id") or "",
                row["status"],
                row["created_us"],
                "" if latency is None else f"{latency / 1000:.3f}",
                (output or {}).get("label", ""),
                (err or {}).get("message", ""),
                *(stage_us.get(stage, "") for stage in STAGES),
            ]
        )
        count += 1
    return count


async def write_chrome_trace(
    rows: AsyncIterator[dict[str, Any]], out: TextIO, base_us: int = 0
) -> int:
    """Trace Event Format: one complete ("X") event per request and per span, in µs from
    `base_us` (the run's start). Requests that overlap in time go on different lanes (tids),
    so the viewer stacks them; a request's spans share its lane and nest inside it.
    """
    lanes: list[tuple[int, int]] = []  # (end_us, lane) min-heap of busy lanes
    free: list[int] = []
    next_lane = 0
    out.write('{"displayTimeUnit":"ms","traceEvents":[\n')
    out.write(
        json.dumps({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "InferDeck"}})
    )
    count = 0
    async for raw in rows:
        row = _decoded(raw)
        ts = max(int(row["created_us"]) - base_us, 0)
        spans = row.get("spans") or []
        duration = int(row.get("latency_us") or sum(s[2] for s in spans) or 1)
        while lanes and lanes[0][0] <= ts:
            heapq.heappush(free, heapq.heappop(lanes)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane, next_lane = next_lane, next_lane + 1
        heapq.heappush(lanes, (ts + duration, lane))
        args = {"request_id": row["request_id"], "status": row["status"], "model": row["model"]}
        events = [
            {
                "name": f"request {row['status']}",
                "cat": "request",
                "ph": "X",
                "ts": ts,
                "dur": duration,
                "pid": 1,
                "tid": lane,
                "args": args,
            }
        ]
        events.extend(
            {
                "name": span[0],
                "cat": "stage",
                "ph": "X",
                "ts": ts + int(span[1]),
                "dur": max(int(span[2]), 0),
                "pid": 1,
                "tid": lane,
                "args": {"request_id": row["request_id"], **(span[3] if len(span) > 3 else {})},
            }
            for span in spans
        )
        for event in events:
            out.write(",\n" + json.dumps(event, separators=(",", ":")))
        count += 1
    out.write("\n]}\n")
    return count


WRITERS: dict[str, Callable[[Rows, TextIO, int], Awaitable[int]]] = {
    "chrome-trace": write_chrome_trace,
    "csv": write_csv,
    "jsonl": write_jsonl,
}


def _written_in_place(path: Path) -> bool:
    """Whether `path` names no plain file of its own to replace: a link (`/dev/stdout` stands
    for wherever this process's output goes), a pipe or a device. It is written through, as
    `open` does; a rename would replace the link, or cannot replace the rest."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


async def export_file(path: Path, fmt: str, rows: Rows, base_us: int = 0) -> int:
    """Write `rows` to `path` in `fmt` (one of `FORMATS`) and return how many were written.

    Refuses (`LiveDatabaseError`, before anything is opened) a file of a database this process
    has open: opening it would drop this process's locks, renaming over it would replace it
    under the open connections. The export is written beside `path`, synced and renamed over
    it, so a failed or cancelled export never leaves a half file (or clobbers an earlier good
    one); a link, pipe or device is written through instead. An `OSError` says what the
    filesystem refused.
    """
    refuse_live_database(path, "an export's file")
    write = WRITERS[fmt]
    if _written_in_place(path):
        with path.open("w", encoding="utf-8", newline="") as fh:
            return await write(rows, fh, base_us)
    part = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with part.open("x", encoding="utf-8", newline="") as fh:
            count = await write(rows, fh, base_us)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return count
