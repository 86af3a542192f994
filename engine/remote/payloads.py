"""Where a load run's payloads come from: one form payload, a file cycled, or replayed history.

A `PayloadSource` is a finite list of payloads (each a JSON object) handed out round robin, so
the hot path only indexes a list. A file row or a stored request that is a full request (it has
`input_payload`) contributes its `input_payload`; an OIP body (it has `inputs`) is kept whole
for the `oip` protocol to send as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from engine.ingest import FileFormat, SourceError, open_rows, sniff
from storage.database import Database

# A load test cycles its payloads; more than this many distinct ones adds nothing but memory.
MAX_PAYLOADS = 10_000

Payload = dict[str, Any]
EXAMPLE = "example"


class PayloadError(ValueError):
    """No usable payload: the message says which file or model, and why."""


class PayloadSource:
    """Payloads handed out round robin."""

    def __init__(self, payloads: list[Payload], origin: str) -> None:
        if not payloads:
            raise PayloadError(f"{origin}: no payloads")
        self.payloads = payloads
        self.origin = origin  # for the run's config: "form", a file path, "history:<model>"

    def __len__(self) -> int:
        return len(self.payloads)

    @classmethod
    def single(cls, payload: Payload) -> PayloadSource:
        """One payload from the form (or the command line), sent every time."""
        return cls([_unwrap(payload)], "form")

    @classmethod
    def model_example(cls) -> PayloadSource:
        """A stand-in the load runner replaces with a valid example made from the model's own
        schema or metadata (`engine.remote.examples`), read from the target."""
        return cls([{}], EXAMPLE)

    @classmethod
    def from_file(cls, path: str | Path, limit: int = MAX_PAYLOADS) -> PayloadSource:
        """The rows of a JSON, JSONL or CSV file (read with the ingest readers), cycled."""
        path = Path(path)
        try:
            fmt = sniff(path)
        except SourceError as exc:
            raise PayloadError(str(exc)) from exc
        if fmt is FileFormat.IMAGE:
            raise PayloadError(f"{path}: images cannot be sent to a remote target; use rows")
        payloads: list[Payload] = []
        problems = 0
        first_problem = ""
        try:
            with open_rows(path, fmt) as rows:
                for raw in rows:
                    value = _row_value(raw.data, fmt)
                    if value is None:
                        problems += 1
                        first_problem = first_problem or f"row {raw.row}: {raw.problem}"
                        continue
                    payloads.append(_unwrap(value))
                    if len(payloads) >= limit:
                        break
        except SourceError as exc:
            raise PayloadError(str(exc)) from exc
        if not payloads:
            raise PayloadError(f"{path}: no usable rows ({first_problem or 'empty'})")
        return cls(payloads, str(path))

    @classmethod
    async def from_history(
        cls, db: Database, model: str, limit: int = MAX_PAYLOADS
    ) -> PayloadSource:
        """The inputs of the newest stored requests for `model` that succeeded, oldest first."""
        async with db.reader.execute(
            "SELECT input FROM requests WHERE model = ? AND status = 'ok' AND input IS NOT NULL "
            "ORDER BY created_us DESC LIMIT ?",
            (model, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        payloads = []
        for (text,) in reversed(list(rows)):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict):
                payloads.append(_unwrap(value))
        if not payloads:
            raise PayloadError(f"history: no stored inputs for model {model!r}")
        return cls(payloads, f"history:{model}")


def _row_value(data: bytes | dict[str, Any] | None, fmt: FileFormat) -> Payload | None:
    if data is None:
        return None
    if isinstance(data, dict):
        # CSV cells are text; a remote API (and OIP above all) wants numbers as numbers.
        return {k: _number(v) if fmt is FileFormat.CSV else v for k, v in data.items()}
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _number(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _unwrap(value: Payload) -> Payload:
    """A full request's `input_payload`, or the value itself (fields, or an OIP body)."""
    inner = value.get("input_payload")
    return inner if isinstance(inner, dict) else value
