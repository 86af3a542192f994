"""The load runner: open or closed model traffic against one target, every request measured and
stored.

Open model (`rate`): request i is *meant* to leave at t0 + i/rate (ramped), and its latency counts
from that intended moment, so a server that stalls shows up as the long waits its callers would
really see instead of being hidden by a client that politely waits (coordinated omission). If
`max_in_flight` requests are out, the next one waits for a slot; that wait is its client `queue`
span and still counts. Closed model (`concurrency`): N users, each sending its next request when
the last one is answered; latency counts from the actual send.

A run bounded by a duration ends at its duration plus at most one `--timeout`, however the target
behaves: once the duration is over, a request still waiting for its send (every slot held by a
stalled target, or a starved client) is counted as `not_sent`, never sent late, and a request
still out a timeout after sending stopped is cut off and counted as a `timeout`. The one
allowance is for the client's own timer: a request due just before the end may still leave up
to `LATE_SEND_S` after its moment, as it would have at any other point of the run.

Per request the work is kept small (tuples, orjson, one list append); rows go to the database's
group-commit writer in chunks, never one transaction or await per row.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
from hdrh.histogram import HdrHistogram

from engine.ids import new_id
from engine.remote.classify import classify, describe
from engine.remote.client import Exchange, TargetClient, new_traceparent
from engine.remote.credentials import redact_url, scrub
from engine.remote.examples import example_from_oip, example_from_schema
from engine.remote.payloads import EXAMPLE, PayloadSource
from engine.remote.plan import LoadPlan
from engine.remote.protocols import (
    Adapter,
    InferDeckAdapter,
    OipAdapter,
    Prepared,
    ProtocolError,
    fetch_oip_inputs,
    make_body,
)
from engine.remote.server_timing import parse_server_timing, place_server_spans
from engine.remote.targets import Target
from engine.runs import begin_run, end_run
from engine.stats import LiveStats, RunRecorder
from storage import queries
from storage.database import Database

CLIENT_ID = "load"
SOURCE = "load"
# The client's row of a request is stored under the ID it sent plus this suffix. Our own
# server stores its row under the sent ID; when both share a database (`inferdeck serve` and
# `inferdeck load` on the default one) each keeps its own row, and a request-ID search finds
# both sides of the request.
CLIENT_ROW_SUFFIX = ".client"
INPUT_CAP = 16_384  # characters of a payload kept in its row
OUTPUT_CAP = 4_096  # characters of an answer kept in its row
MESSAGE_CAP = 200
FLUSH_ROWS = 500  # rows handed to the writer at once (a timer hands over the rest)
FLUSH_EVERY_S = 0.05
STOP_GRACE_S = 1.0  # after stop(), how long requests in flight may still finish
LATE_SEND_S = 0.25  # past a timed run's end, a due request may still leave this late, no later
# Transport classes that mean "nothing answered" (the preflight's test for "unreachable").
UNREACHABLE = frozenset({"connect_refused", "connect_timeout", "tls", "other"})

_now = time.perf_counter_ns
_SPIN_NS = 1_100_000
_LATE_SEND_NS = int(LATE_SEND_S * 1e9)
_UNSAMPLED: dict[str, Any] = {"phases": "not sampled"}  # wait includes connect and send


class LoadError(RuntimeError):
    """The run cannot start (metadata unreadable, payloads unusable); the message says why."""


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """What a view draws; cheap to make, plain Python."""

    elapsed_s: float
    sent: int
    in_flight: int
    completed: int
    ok: int
    failed: int
    errors: dict[str, int]
    throughput_per_s: float  # ok answers per second over the recent window
    errors_per_s: float
    p50_ms: float  # over the recent window
    p99_ms: float
    stage_ms: dict[str, float]
    done: bool


@dataclass(frozen=True)
class LoadResult:
    run_id: str
    summary: dict[str, Any]
    histogram: HdrHistogram


@dataclass(slots=True)
class _Body:
    """One payload, ready: the body around the request ID, and the text its rows keep."""

    prepared: Prepared
    input_json: str


@dataclass
class _Counters:
    sent: int = 0
    in_flight: int = 0
    completed: int = 0
    not_sent: int = 0  # due before the run ended, never sent (every slot held until the end)
    errors: Counter[str] = field(default_factory=Counter)


class LoadRunner:
    def __init__(
        self,
        target: Target,
        plan: LoadPlan,
        payloads: PayloadSource,
        *,
        db: Database | None,
        token: str | None = None,
        trace_every: int | None = None,
        client: TargetClient | None = None,
        summary_extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.target = target
        self.plan = plan
        self.payloads = payloads
        self.db = db
        self._token = token
        self._trace_every = trace_every
        self._client = client
        # Called once as the run ends; what it returns joins the stored summary (the desktop
        # app's `ui_loop_lag_ms` for the run's own window).
        self._summary_extra = summary_extra
        self._adapter: Adapter | None = None
        self._bodies: list[_Body] = []
        self._count = _Counters()
        self._live = LiveStats(window_s=5)
        self._run: RunRecorder | None = None
        self._rows: list[tuple[Any, ...]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._stopping = False
        self._cut_class = "cancelled"  # what a request cut off in flight is counted as
        self._done = False
        self._started_ns = 0
        self._epoch_us = 0  # wall clock at _started_ns

    # -- set-up -------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Open the client, read what the protocol needs (OIP metadata), build every body.
        Raises `LoadError` when the run cannot start. `run()` calls it if nobody did."""
        if self._adapter is not None:
            return
        if self._client is None:
            size = self.plan.max_in_flight
            if self.plan.concurrency is not None:
                size = min(size, self.plan.concurrency)
            kwargs: dict[str, Any] = {"token": self._token, "max_connections": size}
            if self._trace_every is not None:
                kwargs["trace_every"] = self._trace_every
            self._client = TargetClient(self.target, **kwargs)
        try:
            adapter = await self._make_adapter(self._client)
            if self.payloads.origin == EXAMPLE:
                self.payloads.payloads = [await self._example(self._client, adapter)]
            self._bodies = [
                _Body(adapter.prepare(p), orjson.dumps(p).decode()[:INPUT_CAP])
                for p in self.payloads.payloads
            ]
        except ProtocolError as exc:
            raise LoadError(str(exc)) from exc
        self._adapter = adapter

    async def _make_adapter(self, client: TargetClient) -> Adapter:
        protocol = self.target.protocol
        if protocol == "inferdeck":
            return InferDeckAdapter(self.target, CLIENT_ID)
        if protocol == "oip":
            return OipAdapter(self.target, await fetch_oip_inputs(client))
        return Adapter(self.target)

    async def _example(self, client: TargetClient, adapter: Adapter) -> dict[str, Any]:
        """A payload the model accepts, from what the target says about its inputs."""
        if isinstance(adapter, OipAdapter):
            return example_from_oip(adapter.inputs)
        if self.target.protocol == "json" or not self.target.model:
            return {}  # any JSON API: an empty object (or its body template as it stands)
        path = f"/models/{quote(self.target.model, safe='')}"
        try:
            status, body = await client.get(path)  # capped in bytes (decoded) and in time
        except Exception as exc:
            kind = classify(exc)
            if kind in UNREACHABLE:
                return {}  # nothing answers: the preflight says so, in its words
            # It answered, but too much, too slowly or garbled: no point in running on.
            text = scrub(f"{kind}: {describe(exc)}", self.target.secret_values())
            shown = redact_url(self.target.url(path))  # the terminal never sees credentials
            raise LoadError(f"cannot read the model's schema at {shown}: {text}") from None
        try:
            schema = orjson.loads(body)["input_schema"] if status == 200 else None
        except (orjson.JSONDecodeError, KeyError, TypeError):
            schema = None  # not this project's service
        if not isinstance(schema, dict):
            return {}  # no schema to go by: the server's answers will say what it wants
        return example_from_schema(schema)

    async def preflight(self) -> Exchange:
        """One request with the first payload, neither counted nor stored: does anything answer?"""
        await self.prepare()
        assert self._client is not None and self._adapter is not None
        request_id = new_id()
        body = make_body(self._bodies[0].prepared, request_id)
        return await self._client.exchange(self._adapter.url, body, request_id, new_traceparent())

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> LoadResult:
        """Send the plan's traffic; store the run (kind "load") and every request."""
        try:
            await self.prepare()
        except BaseException:
            await self._close_client()
            raise
        config = self._config()
        if self.db is not None:
            self._run = await begin_run(self.db, "load", config)
        else:
            self._run = RunRecorder(new_id(), "load")
        self._run.started_ns = self._started_ns = _now()
        self._epoch_us = time.time_ns() // 1000
        flusher = asyncio.get_running_loop().create_task(self._flush_often(), name="load-flush")
        status = "done"
        try:
            if self.plan.rate is not None:
                await self._open_model(self.plan.rate)
            else:
                await self._closed_model(self.plan.concurrency or 1)
            # A timed run's hard end: one timeout after sending stopped, for what is still out.
            cut_ns = None
            if self.plan.duration_s is not None:
                cut_ns = _now() + int(self.target.timeout_s * 1e9)
            await self._drain(cut_ns)
        except asyncio.CancelledError:
            status = "cancelled"
            await self._cancel_in_flight()
            raise
        finally:
            self._done = True
            flusher.cancel()
            self._flush()
            await self._close_client()
            summary_extra = {
                "errors": dict(self._count.errors),
                "sent": self._count.sent,
                "not_sent": self._count.not_sent,
            }
            if self._summary_extra is not None:
                summary_extra |= self._summary_extra()
            if self.db is not None:
                await asyncio.shield(end_run(self.db, self._run, status, summary_extra))
            else:
                self._run.finish()
        summary = self._run.summary().model_dump() | summary_extra
        return LoadResult(self._run.run_id, summary, self._run.histogram)

    def stop(self) -> None:
        """End the run early: nothing new is sent; requests in flight get `STOP_GRACE_S`."""
        self._stopping = True
        self._slot_free.set()

    def _config(self) -> dict[str, Any]:
        t = self.target
        return {
            "target": t.name,
            "base_url": t.redacted_url(),
            "protocol": t.protocol,
            "model": t.model,
            "headers": t.redacted_headers(),
            "plan": asdict(self.plan),
            "payloads": self.payloads.origin,
            "payload_count": len(self.payloads),
        }

    def _intended_s(self, i: int, rate: float) -> float:
        """When request i is meant to leave, in seconds from the start, with a linear ramp
        from 0 to `rate` over `ramp_s` (the arrivals under the ramp are rate·t²/2·ramp)."""
        ramp = self.plan.ramp_s
        if ramp <= 0:
            return i / rate
        in_ramp = rate * ramp / 2
        if i < in_ramp:
            return math.sqrt(2 * i * ramp / rate)
        return ramp + (i - in_ramp) / rate

    async def _open_model(self, rate: float) -> None:
        plan = self.plan
        limit = plan.requests
        end_s = plan.duration_s
        cap = plan.max_in_flight
        loop = asyncio.get_running_loop()
        t0 = self._started_ns
        end_ns = None if end_s is None else t0 + int(end_s * 1e9)
        i = 0
        while not self._stopping and (limit is None or i < limit):
            offset = self._intended_s(i, rate)
            if end_s is not None and offset >= end_s:
                break
            due = t0 + int(offset * 1e9)
            # Past the end, request i may leave only while it is less than LATE_SEND_S late.
            send_by = None if end_ns is None else max(end_ns, due + _LATE_SEND_NS)
            if end_s is not None and send_by is not None and _now() >= send_by:
                # Behind schedule at the end (a target that held every slot, or a starved
                # loop): what was due and not sent is counted, never sent late.
                self._count.not_sent += self._due_before(end_s, rate, limit) - i
                break
            delay = due - _now()
            if delay > _SPIN_NS:
                # The loop's timer wakes up to 1 ms late (epoll rounds up to whole ms), and a
                # late send is latency the client made: sleep to just short of the moment ...
                # (in short sleeps, so that stop() is heard within 50 ms even at a low rate).
                await asyncio.sleep(min((delay - _SPIN_NS) / 1e9, 0.05))
                continue
            if delay > 0:
                await asyncio.sleep(0)  # ... then turn the loop (reading answers) until it comes
                continue
            if i % 32 == 31:
                await asyncio.sleep(0)  # behind schedule: still let answers be read
            if not await self._wait_for_slot(cap, send_by):
                continue  # the end came while waiting: the check above counts the rest
            if self._stopping:
                break
            # Counted in flight now, not when the task first runs: the cap must see it.
            self._count.sent += 1
            self._count.in_flight += 1
            task = loop.create_task(self._one(i, due))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            i += 1

    async def _wait_for_slot(self, cap: int, send_by: int | None) -> bool:
        """Wait until fewer than `cap` requests are out; False when `send_by` came first."""
        while self._count.in_flight >= cap and not self._stopping:
            self._slot_free.clear()
            if send_by is None:
                await self._slot_free.wait()
                continue
            left_s = (send_by - _now()) / 1e9
            if left_s <= 0:
                return False
            try:
                async with asyncio.timeout(left_s):
                    await self._slot_free.wait()
            except TimeoutError:
                return False
        return True

    def _due_before(self, end_s: float, rate: float, limit: int | None) -> int:
        """How many requests the open model means to send before `end_s` (at most `limit`)."""
        ramp = self.plan.ramp_s
        if ramp > 0 and end_s <= ramp:
            guess = rate * end_s * end_s / (2 * ramp)
        elif ramp > 0:
            guess = rate * ramp / 2 + (end_s - ramp) * rate
        else:
            guess = end_s * rate
        n = max(math.ceil(guess), 0)
        # The float guess can be one off either way: settle it on the schedule itself.
        while n > 0 and self._intended_s(n - 1, rate) >= end_s:
            n -= 1
        while self._intended_s(n, rate) < end_s:
            n += 1
        return n if limit is None else min(n, limit)

    async def _closed_model(self, users: int) -> None:
        plan = self.plan
        t0 = self._started_ns
        end_ns = t0 + int(plan.duration_s * 1e9) if plan.duration_s is not None else None
        limit = plan.requests

        async def user(k: int) -> None:
            if plan.ramp_s > 0 and k:
                await asyncio.sleep(plan.ramp_s * k / users)
            while not self._stopping:
                i = self._count.sent
                if limit is not None and i >= limit:
                    return
                now = _now()
                if end_ns is not None and now >= end_ns:
                    return
                self._count.sent += 1
                self._count.in_flight += 1
                await self._one(i, now)

        tasks = [asyncio.create_task(user(k)) for k in range(users)]
        self._tasks.update(tasks)
        try:
            # A user's last request can start just before the end: the run's cut bounds it.
            cut_s = None
            if end_ns is not None:
                cut_s = max((end_ns - _now()) / 1e9 + self.target.timeout_s, 0.0)
            _, late = await asyncio.wait(tasks, timeout=cut_s)
            if late:
                self._cut_class = "timeout"
                await self._cancel_in_flight()
        finally:
            self._tasks.difference_update(tasks)

    async def _drain(self, cut_ns: int | None) -> None:
        """Let requests in flight finish (they carry their own deadline), until the run's cut
        (`cut_ns`, a timed run's last send plus one timeout: what is still out then is a
        `timeout`); after stop(), only for `STOP_GRACE_S`."""
        while self._tasks:
            pending = list(self._tasks)
            if self._stopping:
                _, late = await asyncio.wait(pending, timeout=STOP_GRACE_S)
                if late:
                    await self._cancel_in_flight()
                return
            cut_s = None if cut_ns is None else max((cut_ns - _now()) / 1e9, 0.0)
            _, late = await asyncio.wait(pending, timeout=cut_s)
            if late:
                self._cut_class = "timeout"
                await self._cancel_in_flight()
                return

    async def _cancel_in_flight(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, index: int, intended_ns: int) -> None:
        client, adapter = self._client, self._adapter
        assert client is not None and adapter is not None
        count = self._count  # the caller has counted this request sent and in flight
        body = self._bodies[index % len(self._bodies)]
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
            kind = self._cut_class
            message = "still out a timeout after the run's end" if kind == "timeout" else "stopped"
            ex = Exchange(0, b"", kind, message, None, None, now, 0, now, None)
            self._record(request_id, traceparent, body, intended_ns, ex)
            raise
        finally:
            count.in_flight -= 1
            self._slot_free.set()
        self._record(request_id, traceparent, body, intended_ns, ex)

    # -- per request bookkeeping ---------------------------------------------------------------

    def _record(
        self, request_id: str, traceparent: str, body: _Body, intended_ns: int, ex: Exchange
    ) -> None:
        run, adapter = self._run, self._adapter
        assert run is not None and adapter is not None
        error = ex.error
        message = ex.message
        if error is None:
            if ex.status >= 400:
                error = f"http_{ex.status}"
                message = ex.body[:MESSAGE_CAP].decode("utf-8", "replace")
            elif (problem := adapter.check(ex.body)) is not None:
                error, message = "bad_body", problem
        status = "ok" if error is None else "failed"
        latency_us = (ex.end_ns - intended_ns) // 1000
        count = self._count
        count.completed += 1
        run.accepted += 1
        run.record(status, latency_us)
        if error is not None:
            count.errors[error] += 1
        spans = exchange_spans(ex, intended_ns)
        self._live.record(status, latency_us, spans)
        if self.db is None:
            return
        base_us = self._epoch_us - self._started_ns // 1000
        meta = {"http_status": ex.status, "traceparent": traceparent}
        if ex.server_request_id is not None:
            meta["server_request_id"] = ex.server_request_id
        self._rows.append(
            (
                request_id + CLIENT_ROW_SUFFIX,
                run.run_id,
                None,
                None,
                SOURCE,
                self.target.name,
                self.target.model,
                CLIENT_ID,
                status,
                base_us + intended_ns // 1000,
                base_us + ex.end_ns // 1000,
                latency_us,
                body.input_json,
                orjson.dumps(meta).decode(),
                ex.body[:OUTPUT_CAP].decode("utf-8", "replace") if ex.body else None,
                None if error is None else f"{error}: {message}"[:MESSAGE_CAP],
                orjson.dumps(spans).decode(),
            )
        )
        if len(self._rows) >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._rows and self.db is not None:
            rows, self._rows = self._rows, []
            self.db.writer.add(queries.UPSERT_REQUEST, rows)

    async def _flush_often(self) -> None:
        """Hands over a partial chunk now and then, so views see rows while a slow run goes."""
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            self._flush()

    async def _close_client(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def aclose(self) -> None:
        """Close the client of a runner that was prepared but will not run."""
        await self._close_client()

    # -- the view's side ------------------------------------------------------------------------

    def snapshot(self) -> LoadSnapshot:
        count = self._count
        live = self._live.snapshot(queue_depth=0, in_flight=count.in_flight)
        run = self._run
        started = self._started_ns
        return LoadSnapshot(
            elapsed_s=(_now() - started) / 1e9 if started else 0.0,
            sent=count.sent,
            in_flight=count.in_flight,
            completed=count.completed,
            ok=run.ok if run is not None else 0,
            failed=run.failed if run is not None else 0,
            errors=dict(count.errors),
            throughput_per_s=live.throughput_per_s,
            errors_per_s=live.errors_per_s,
            p50_ms=live.p50_ms,
            p99_ms=live.p99_ms,
            stage_ms=live.stage_ms,
            done=self._done,
        )


def exchange_spans(ex: Exchange, origin_ns: int) -> list[tuple[Any, ...]]:
    """Client spans (µs from the intended send) and the server's, placed inside the wait."""
    spans: list[tuple[Any, ...]] = []
    start = ex.start_ns
    queue_us = (start - origin_ns) // 1000
    if queue_us > 0:
        spans.append(("queue", 0, queue_us))
    headers = ex.headers_ns
    if not headers:  # no answer at all: one span for the attempt
        spans.append(("request", queue_us, (ex.end_ns - start) // 1000))
        return spans
    timing = parse_server_timing(ex.server_timing)
    events = ex.events
    if events is None:
        wait_start = queue_us
        wait_us = (headers - start) // 1000
        spans.append(("wait", wait_start, wait_us, _UNSAMPLED))
    else:
        _phase(spans, events, origin_ns, "connect", "connection.connect_tcp")
        _phase(spans, events, origin_ns, "tls", "connection.start_tls")
        sent = events.get("http11.send_request_body.complete", start)
        send_from = events.get("http11.send_request_headers.started", start)
        if timing:
            # Each mark is read from the clock after the event, never before: "send started"
            # and "headers in" bracket the exchange, but "send complete" can be read long after
            # the last byte left (the write wakes the server, which may take this core first).
            # The server's stages all ran after it had the whole body, so the send was done no
            # later than their total before the headers came in: that bound moves the mark.
            server_ns = sum(dur for _, dur in timing) * 1000
            sent = max(send_from, min(sent, headers - server_ns))
        spans.append(("send", (send_from - origin_ns) // 1000, (sent - send_from) // 1000))
        wait_start = (sent - origin_ns) // 1000
        wait_us = (headers - sent) // 1000
        spans.append(("wait", wait_start, wait_us))
    spans.append(("receive", (headers - origin_ns) // 1000, (ex.end_ns - headers) // 1000))
    if timing:
        spans.extend(place_server_spans(timing, wait_start, wait_us))
    return spans


def _phase(
    spans: list[tuple[Any, ...]], events: dict[str, int], origin_ns: int, name: str, event: str
) -> None:
    began = events.get(event + ".started")
    ended = events.get(event + ".complete")
    if began is not None and ended is not None:
        spans.append((name, (began - origin_ns) // 1000, (ended - began) // 1000))
