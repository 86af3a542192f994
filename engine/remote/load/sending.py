"""Sending a load run's requests: the set-up (client, protocol adapter, every body built once)
and one request out, its outcome judged (`engine.remote.outcome`) and handed to the recorder.

Per request only bytes are joined around the request ID, one exchange is awaited, and the
judged result is recorded: nothing is parsed or built here that the set-up could build once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from engine.ids import new_id
from engine.remote.classify import UNREACHABLE, classify, describe
from engine.remote.client import Exchange, TargetClient, new_traceparent
from engine.remote.credentials import redact_url, scrub
from engine.remote.examples import example_from_oip, example_from_schema, offered_example
from engine.remote.load.recording import CLIENT_ID, Recorder
from engine.remote.load.schedule import origin_ns
from engine.remote.load.state import RunState
from engine.remote.outcome import INPUT_CAP, exchange_spans, judge
from engine.remote.payloads import EXAMPLE, PayloadSource
from engine.remote.plan import LoadPlan
from engine.remote.protocols import (
    Adapter,
    OipAdapter,
    Prepared,
    ProtocolError,
    fetch_oip_inputs,
    make_adapter,
    make_body,
)
from engine.remote.targets import Target

_now = time.perf_counter_ns


class LoadError(RuntimeError):
    """The run cannot start (metadata unreadable, payloads unusable); the message says why."""


@dataclass(slots=True)
class Body:
    """One payload, ready: the body around the request ID, and the text its rows keep."""

    prepared: Prepared
    input_json: str


def make_client(
    target: Target, plan: LoadPlan, token: str | None, trace_every: int | None
) -> TargetClient:
    """The run's client, its pool as large as the requests the plan can have out at once."""
    size = plan.max_in_flight
    if plan.concurrency is not None:
        size = min(size, plan.concurrency)
    kwargs: dict[str, Any] = {"token": token, "max_connections": size}
    if trace_every is not None:
        kwargs["trace_every"] = trace_every
    return TargetClient(target, **kwargs)


async def open_sender(
    client: TargetClient, payloads: PayloadSource, state: RunState, recorder: Recorder
) -> Sender:
    """Read what the protocol needs (OIP metadata) and build every body; `LoadError` says why
    the run cannot start."""
    target = client.target
    try:
        inputs = await fetch_oip_inputs(client) if target.protocol == "oip" else None
        adapter = make_adapter(target, CLIENT_ID, inputs)
        if payloads.origin == EXAMPLE:
            payloads.payloads = [await _example(client, adapter)]
        bodies = [
            Body(adapter.prepare(p), orjson.dumps(p).decode()[:INPUT_CAP])
            for p in payloads.payloads
        ]
    except ProtocolError as exc:
        raise LoadError(str(exc)) from exc
    return Sender(client, adapter, bodies, state, recorder.record)


async def _example(client: TargetClient, adapter: Adapter) -> dict[str, Any]:
    """A payload the model accepts, from what the target says about its inputs."""
    target = client.target
    if isinstance(adapter, OipAdapter):
        return example_from_oip(adapter.inputs)
    if target.protocol == "json" or not target.model:
        return {}  # any JSON API: an empty object (or its body template as it stands)
    path = f"/models/{quote(target.model, safe='')}"
    try:
        status, body = await client.get(path)  # capped in bytes (decoded) and in time
    except Exception as exc:
        kind = classify(exc)
        if kind in UNREACHABLE:
            return {}  # nothing answers: the preflight says so, in its words
        # It answered, but too much, too slowly or garbled: no point in running on.
        text = scrub(f"{kind}: {describe(exc)}", target.secret_values())
        shown = redact_url(target.url(path))  # the terminal never sees credentials
        raise LoadError(f"cannot read the model's schema at {shown}: {text}") from None
    try:
        info = orjson.loads(body) if status == 200 else None
    except orjson.JSONDecodeError:
        info = None  # not this project's service
    # The model's own example first (a real held-out row: a class it predicts with some
    # confidence), as the form starts from; else one made up from its input schema.
    offered = offered_example(info)
    if offered:
        return offered
    schema = info.get("input_schema") if isinstance(info, dict) else None
    if not isinstance(schema, dict):
        return {}  # no schema to go by: the server's answers will say what it wants
    return example_from_schema(schema)


@dataclass(slots=True)
class Sender:
    """Sends a load run's requests (`one`, called by the run's scheduler) and hands each judged
    outcome to the recorder (`record`); made by `open_sender` for `LoadRunner`."""

    client: TargetClient
    adapter: Adapter
    bodies: list[Body]
    state: RunState
    record: Callable[[str, str, str, int, Exchange, list[tuple[Any, ...]]], None]

    async def preflight(self) -> Exchange:
        """One request with the first payload, neither counted nor stored: does anything answer?"""
        request_id = new_id()
        body = make_body(self.bodies[0].prepared, request_id)
        return await self.client.exchange(self.adapter.url, body, request_id, new_traceparent())

    async def one(self, index: int, intended_ns: int) -> None:
        """Send request `index` (meant to leave at `intended_ns`) and record its outcome, its
        latency counted from `schedule.origin_ns`; the caller has counted it sent and in
        flight."""
        client, adapter = self.client, self.adapter
        state = self.state
        body = self.bodies[index % len(self.bodies)]
        request_id = new_id()
        traceparent = new_traceparent()
        try:
            ex = await client.exchange(
                adapter.url,
                make_body(body.prepared, request_id),
                request_id,
                traceparent,
                client.sample_next(),
            )
        except asyncio.CancelledError:
            now = _now()
            kind = state.cut_class
            message = "still out a timeout after the run's end" if kind == "timeout" else "stopped"
            ex = Exchange(0, b"", kind, message, None, None, now, 0, now, None)
            spans = exchange_spans(ex, intended_ns)
            self.record(request_id, traceparent, body.input_json, intended_ns, ex, spans)
            raise
        finally:
            state.in_flight -= 1
            state.slot_free.set()
        judge(ex, adapter)
        origin = origin_ns(intended_ns, ex.start_ns)  # a request sent early counts from its send
        spans = exchange_spans(ex, origin)
        self.record(request_id, traceparent, body.input_json, origin, ex, spans)
