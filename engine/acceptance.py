"""What acceptance makes of one row: `Work` ready to admit, or a rejection to store; the caller
IDs reserved while their requests are in flight; and the refusals the engine gives (a duplicate
ID, a full queue). `Engine.accept` drives it; the committer releases the IDs.
"""

from __future__ import annotations

import json
import time
from typing import Any

from engine.contracts import ErrorBody
from engine.ids import new_id
from engine.tiers import ClientDirectory
from engine.validation import Validated, error
from engine.work import Origin, Work, compact_json


def us(ns: int) -> int:
    return ns // 1000


class CallerIds(dict[str, object]):
    """Caller-chosen request IDs in flight in this engine, each with what holds it (a `Work`, or
    a token while it is being accepted). `Engine.accept` reserves them; the `Committer` releases
    each once its row's transaction has ended. A plain dict underneath: `in` and `[]` stay as
    cheap as a dict's on the hot path."""

    __slots__ = ()

    def release(self, request_id: str, holder: object) -> None:
        """Free an ID reserved by `holder` (and by nothing that took it since)."""
        if self.get(request_id) is holder:
            del self[request_id]


async def accepted_work(
    clients: ClientDirectory,
    checked: Validated,
    request_id: str,
    origin: Origin,
    t0: int,
    t1: int,
    source_row: int | None,
) -> Work:
    """`Work` for a validated request: its client looked up, its features made."""
    client_id = checked.client_id or origin.client_id
    client = clients.peek(client_id) or await clients.lookup(client_id)
    t2 = time.perf_counter_ns()
    spans: list[tuple[Any, ...]] = [
        ("validate", 0, us(t1 - t0)),
        ("metadata", us(t1 - t0), us(t2 - t1)),
    ]
    model = checked.model
    work = Work(
        request_id=request_id,
        run=origin.run,
        sink=origin.sink,
        source=origin.source,
        client_id=client_id,
        model=model,
        features=model.features(checked.inputs),
        priority=client.priority,
        input_json=checked.inputs.model_dump_json(),
        accepted_ns=t0,
        created_us=time.time_ns() // 1000,
        spans=spans,
        target=origin.target,
        job_id=origin.job_id,
        source_row=source_row,
        metadata_json=compact_json(checked.metadata) if checked.metadata else None,
    )
    if not client.enabled:
        work.status = "rejected"
        work.error = error("client_disabled", f"client {client_id!r} is disabled", "client_id")
    return work


def rejected_work(
    origin: Origin,
    body: ErrorBody,
    t0: int,
    source_row: int | None,
    data: bytes | dict[str, Any] | None,
    input_text: str | None,
    request_id: str | None = None,
    model_name: str | None = None,
) -> Work:
    """`Work` for a row refused at acceptance; stored like any request, under `request_id` or
    an ID of its own."""
    if input_text is None and data is not None:
        # json, not orjson: a rejected NaN or Infinity must stay visible, not become null.
        raw = data if isinstance(data, bytes) else json.dumps(data, default=str).encode()
        input_text = raw[:2048].decode("utf-8", "replace")
    work = Work(
        request_id=request_id or new_id(),
        run=origin.run,
        sink=origin.sink,
        source=origin.source,
        client_id=origin.client_id,
        model=None,
        features=None,
        priority=0,
        input_json=input_text,
        accepted_ns=t0,
        created_us=time.time_ns() // 1000,
        spans=[("validate", 0, us(time.perf_counter_ns() - t0))],
        target=origin.target,
        job_id=origin.job_id,
        source_row=source_row,
        status="rejected",
        error=body,
        named_model=model_name,
    )
    body.request_id = work.request_id
    return work


def overloaded(work: Work) -> None:
    """Turn accepted work the queue had no room for into an `overloaded` rejection."""
    work.status = "rejected"
    work.error = error("overloaded", "the server is at capacity; try again shortly")
    work.error.request_id = work.request_id


def is_overloaded(work: Work) -> bool:
    return work.error is not None and work.error.code == "overloaded"


def duplicate(request_id: str) -> ErrorBody:
    return error(
        "duplicate_request_id",
        f"request_id {request_id!r} is already used by another request",
        "request_id",
    )
