"""What one remote request came to: its failure class, its spans and its stored row.

One home for judging and storing a request sent to a target, used alike by the load runner
(`engine.remote.load`, every request of a run) and by a prediction sent from the desktop form
(`engine.remote.oip_form.send_prediction`):

- `judge`: the request's failure class. A transport failure was already named by the client
  (`engine.remote.classify`, kept in `Exchange.error`); an answer with an HTTP status of 400 or
  more is `http_<code>`, one whose body the protocol rejects (`Adapter.check`) is `bad_body`.
- `exchange_spans`: the client's spans (queue, connect, tls, send, wait, receive) and the
  server's (`Server-Timing`), in µs from the request's origin (its intended send time).
- `client_row`: the request's row for `storage.queries.UPSERT_REQUEST`.

All three run once per request of a load run: they judge in place and build each row in one
go, so no step allocates more than the row itself needs.
"""

from __future__ import annotations

from typing import Any

import orjson

from engine.remote.classify import http_class
from engine.remote.client import Exchange
from engine.remote.protocols import Adapter
from engine.remote.server_timing import parse_server_timing, place_server_spans

# The client's row of a request is stored under the ID it sent plus this suffix. Our own
# server stores its row under the sent ID; when both share a database (`inferdeck serve` and
# `inferdeck load` on the default one) each keeps its own row, and a request-ID search finds
# both sides of the request.
CLIENT_ROW_SUFFIX = ".client"
INPUT_CAP = 16_384  # characters of a payload kept in its row
OUTPUT_CAP = 4_096  # characters of an answer kept in its row
MESSAGE_CAP = 200

_UNSAMPLED: dict[str, Any] = {"phases": "not sampled"}  # wait includes connect and send


def judge(ex: Exchange, adapter: Adapter) -> None:
    """Name an answer that came back but failed: `ex.error` becomes `http_<code>` (the start of
    the body its message) or `bad_body` (the protocol's reason). A transport failure, already in
    `ex.error`, stays as it is; a good answer leaves `ex.error` None."""
    if ex.error is None:
        if ex.status >= 400:
            ex.error = http_class(ex.status)
            ex.message = ex.body[:MESSAGE_CAP].decode("utf-8", "replace")
        elif (problem := adapter.check(ex.body)) is not None:
            ex.error, ex.message = "bad_body", problem


def failure_text(ex: Exchange) -> str | None:
    """A judged request's failure as its row keeps it (`class: message`), None when ok
    (`client_row` writes the same inline: it runs for every request of a load run)."""
    return None if ex.error is None else f"{ex.error}: {ex.message}"[:MESSAGE_CAP]


def client_row(
    request_id: str,
    run_id: str | None,
    source: str,
    target_name: str,
    model: str | None,
    client_id: str,
    status: str,
    started_us: int,
    ended_us: int,
    latency_us: int,
    input_json: str,
    traceparent: str,
    ex: Exchange,
    spans: list[tuple[Any, ...]],
    *,
    metadata: dict[str, Any] | None = None,
) -> tuple[Any, ...]:
    """The stored row of a judged request (`status` "ok" or "failed", as `ex.error` says),
    under `request_id` (the sent ID plus `CLIENT_ROW_SUFFIX`); `metadata`: more to store with
    it (a run again's `rerun_of`)."""
    meta: dict[str, Any] = {
        **(metadata or {}),
        "http_status": ex.status,
        "traceparent": traceparent,
    }
    if ex.server_request_id is not None:
        meta["server_request_id"] = ex.server_request_id
    error = ex.error
    return (
        request_id,
        run_id,
        None,
        None,
        source,
        target_name,
        model,
        client_id,
        status,
        started_us,
        ended_us,
        latency_us,
        input_json,
        orjson.dumps(meta).decode(),
        ex.body[:OUTPUT_CAP].decode("utf-8", "replace") if ex.body else None,
        None if error is None else f"{error}: {ex.message}"[:MESSAGE_CAP],
        orjson.dumps(spans).decode(),
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
