"""Exporting a run's requests: Chrome trace (Perfetto, chrome://tracing), CSV and JSONL, and
`export_file`, the one way both `inferdeck export --out` and the Runs view write them to a file.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import json
import os
import re
import secrets
import stat
import tempfile
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


CSV_COLUMNS = (
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
)
# Characters that make a spreadsheet read a cell as a formula (OWASP's CSV injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A signed decimal number, the only text starting with + or - that is let through as it is:
# Python's `float()` also takes "-inf", "-1_0" and surrounding blanks, which a spreadsheet
# reads as a formula (a name, an error), not a number.
_SIGNED_NUMBER = re.compile(r"[+-](?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _cell(value: Any) -> Any:
    """A value as one CSV cell: numbers as they are, objects as compact JSON, and text that a
    spreadsheet would run as a formula (a file's `=HYPERLINK(...)`, a review's text typed
    as "=cmd|...") behind a quote mark. Commas, quotes and line breaks in text (a text
    model's input) are the csv module's to quote."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if text.startswith(_FORMULA_START) and not _SIGNED_NUMBER.fullmatch(text):
        return "'" + text  # (a signed number such as "-1.5" is not a formula)
    return text


def _inputs(row: dict[str, Any]) -> dict[str, Any]:
    """A request's input fields: the payload of a full request, else the stored object."""
    data = row.get("input")
    if isinstance(data, dict) and isinstance(data.get("input_payload"), dict):
        data = data["input_payload"]
    return data if isinstance(data, dict) else {}


def _prediction(row: dict[str, Any]) -> dict[str, Any]:
    """A request's answer: a classifier's label and scores or a regressor's values, as the
    local engine's output or inside a remote `inferdeck` target's answer (its `outputs`)."""
    output = row.get("output")
    if not isinstance(output, dict):
        return {}
    inner = output.get("outputs")
    return inner if isinstance(inner, dict) else output


def _scores(row: dict[str, Any]) -> dict[str, Any]:
    scores = _prediction(row).get("scores")
    return scores if isinstance(scores, dict) else {}


def _values(row: dict[str, Any]) -> dict[str, Any]:
    """A regressor's numbers by output name (`{"values": {...}}`); `{}` for other answers."""
    values = _prediction(row).get("values")
    return values if isinstance(values, dict) else {}


def _error(row: dict[str, Any]) -> Any:
    """The error's message: the engine stores an error object, a remote request a line."""
    err = row.get("error")
    return err.get("message") if isinstance(err, dict) else err


async def write_csv(rows: AsyncIterator[dict[str, Any]], out: TextIO, base_us: int = 0) -> int:
    """One line per request: `CSV_COLUMNS`, then one `input.<field>` column per input field,
    one `score.<label>` column per label and one `value.<output>` column per regression output
    seen in the run (empty where a request has none; `label` is empty for a regressor).

    The columns are known only once every row is read, so the rows go to a spool file first
    (memory stays flat however large the run), and the CSV is written from it.
    """
    fields: dict[str, None] = {}
    labels: dict[str, None] = {}
    outputs: dict[str, None] = {}
    count = 0
    with tempfile.SpooledTemporaryFile(max_size=8 << 20, mode="w+", encoding="utf-8") as spool:
        async for raw in rows:
            row = _decoded(raw)
            fields.update(dict.fromkeys(_inputs(row)))
            labels.update(dict.fromkeys(_scores(row)))
            outputs.update(dict.fromkeys(_values(row)))
            spool.write(json.dumps(row, separators=(",", ":")) + "\n")
            count += 1
        spool.seek(0)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            [
                *CSV_COLUMNS,
                *(f"input.{f}" for f in fields),
                *(f"score.{k}" for k in labels),
                *(f"value.{k}" for k in outputs),
            ]
        )
        for line in spool:
            row = json.loads(line)
            stage_us = {s[0]: s[2] for s in row.get("spans") or []}
            latency = row.get("latency_us")
            inputs, scores, values = _inputs(row), _scores(row), _values(row)
            writer.writerow(
                [
                    row["request_id"],
                    row["run_id"],
                    _cell(row["source"]),
                    row.get("source_row") or "",
                    _cell(row.get("model")),
                    _cell(row.get("client_id")),
                    row["status"],
                    row["created_us"],
                    "" if latency is None else f"{latency / 1000:.3f}",
                    _cell(_prediction(row).get("label")),
                    _cell(_error(row)),
                    *(stage_us.get(stage, "") for stage in STAGES),
                    *(_cell(inputs.get(f)) for f in fields),
                    *(_cell(scores.get(k)) for k in labels),
                    *(_cell(values.get(k)) for k in outputs),
                ]
            )
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
