"""The HTTP/1.1 protocol `inferdeck serve` runs: uvicorn's httptools protocol (llhttp, the
parser Node.js uses) with two deadlines, a bound on a request's head, and room kept for new
clients. It replaced uvicorn's pure-Python h11 protocol, which parsed and wrote every request
in Python: measured with wrk, OIP infer at 8 connections went from 1,194 to 1,657 requests/s.

uvicorn bounds only the idle time between requests (`timeout_keep_alive`, and that timer stops
at a request's first byte): a client that sends its headers a byte at a time, or a chunked body
that never ends, holds its socket for as long as it likes, and a few hundred such sockets use up
the process's file descriptors so that ordinary clients wait in the backlog for the whole attack.
This protocol adds what a reverse proxy would (nginx's `client_header_timeout` and
`client_body_timeout`, Apache's `mod_reqtimeout`):

- a header deadline: a request's head must arrive in full within `header_timeout_s` of the
  connection opening (or of the previous response), else 408 and close;
- a body deadline: its body must arrive in full within `body_timeout_s` of its head, else 408
  (if nothing was answered yet) and close; the route reading it sees a disconnect;
- a bound on the head: past `MAX_HEAD_BYTES` of request line and headers, 431 and close (llhttp
  sets no bound of its own; h11 had one);
- room for new clients: past a connection count kept below the file-descriptor limit, each new
  connection closes the connection that has waited longest on its client (an idle keep-alive,
  or a slow head or body), so a socket an attacker holds is given up before an ordinary client
  is kept out. A connection whose request is being served is never closed for room.

The deadlines come from the environment (`inferdeck serve` sets it), since uvicorn builds this
class by name in every worker process.
"""

from __future__ import annotations

import asyncio
import os
import resource
import weakref
from typing import Any, Literal

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from engine.server.state import CLIENT_TIMEOUT

ENV_HEADER_TIMEOUT = "INFERDECK_SERVE_HEADER_TIMEOUT"
ENV_BODY_TIMEOUT = "INFERDECK_SERVE_BODY_TIMEOUT"
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
# Descriptors kept for the process's own files (database, WAL, logs, models, the event loop)
# and for the connections one accept burst brings in before any of them can close another.
MIN_SPARE_FDS = 64

_TIMEOUT_TEXT = b"the request was not sent in time\n"
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_TEXT), _TIMEOUT_TEXT)
)

_HEAD_TEXT = b"the request's head is too large\n"
_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8"
    b"\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_HEAD_TEXT), _HEAD_TEXT)
)
# A request line and headers past this are refused (h11, which uvicorn ran before, allowed 16 KiB
# of head; a browser sends a few).
MAX_HEAD_BYTES = 64 * 1024

Phase = Literal["head", "body", "served"]

# How often deadlines are checked: a deadline is enforced up to this late. One sweep over the
# waiting connections rather than a timer per request: arming and cancelling a loop timer for
# every request cost ~10 % of a prediction's event-loop time.
SWEEP_S = 0.5


class _Waiting:
    """The connections waiting on their clients, with their deadlines, one table per phase.

    A phase's timeout is the same for every connection, so a table's insertion order is its
    deadline order: a sweep stops at the first connection still in time, and the first entry
    of a table is the connection that has waited longest. One per server (per uvicorn
    `ServerState`), since each server runs on its own loop."""

    def __init__(self) -> None:
        self.head: dict[DeadlineProtocol, float] = {}
        self.body: dict[DeadlineProtocol, float] = {}
        self.sweep: asyncio.TimerHandle | None = None

    def add(
        self, conn: DeadlineProtocol, table: dict[DeadlineProtocol, float], until: float
    ) -> None:
        table[conn] = until
        if self.sweep is None:
            self.sweep = conn.loop.call_later(SWEEP_S, self._sweep, conn.loop)

    def discard(self, conn: DeadlineProtocol) -> None:
        self.head.pop(conn, None)
        self.body.pop(conn, None)

    def longest(self, besides: DeadlineProtocol) -> DeadlineProtocol | None:
        """The connection to close first for room (other than `besides`, the newcomer): the
        head awaited longest, then the body awaited longest."""
        for table in (self.head, self.body):
            for conn in table:
                if conn is not besides:
                    return conn
        return None

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sweep = None
        now = loop.time()
        for table in (self.head, self.body):
            while table:
                conn, until = next(iter(table.items()))
                if until > now:
                    break
                conn.give_up()  # leaves the table
        if (self.head or self.body) and not loop.is_closed():
            self.sweep = loop.call_later(SWEEP_S, self._sweep, loop)


_registries: weakref.WeakKeyDictionary[ServerState, _Waiting] = weakref.WeakKeyDictionary()


def _waiting_for(server_state: ServerState) -> _Waiting:
    found = _registries.get(server_state)
    if found is None:
        found = _registries[server_state] = _Waiting()
    return found


def connection_limit() -> int | None:
    """How many connections to keep at most: below the soft file-descriptor limit, leaving
    room for the process's own files. None when the limit is unbounded."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(16, soft - max(MIN_SPARE_FDS, soft // 8))


def _seconds(name: str, default: float) -> float:
    value = float(os.environ.get(name, default))
    return value if value > 0 else default


class DeadlineProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with a header deadline, a body deadline, a bounded head and room
    for new clients."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout_s = _seconds(ENV_HEADER_TIMEOUT, HEADER_TIMEOUT_S)
        self.body_timeout_s = _seconds(ENV_BODY_TIMEOUT, BODY_TIMEOUT_S)
        self.limit = connection_limit()
        self.phase: Phase = "served"
        self.waiting = _waiting_for(server_state)
        self.head_bytes = 0  # of the awaited head, so far
        # Requests on this connection whose head began, whose head ended, whose body ended, and
        # that were answered: where the client is (see `_follow`).
        self.begun = self.headed = self.received = self.answered = 0

    # -- the connection's life -------------------------------------------------------------------

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        self._follow()
        self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter("served")
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heading = self.phase == "head"
        super().data_received(data)
        if self.transport.is_closing():
            return
        self._follow()
        if heading and self.phase == "head":
            # Still no end of the head: count it (bytes after a head's end are its body's, or
            # the next request's, and one read is at most the transport's buffer).
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._enter("served")
                self.transport.write(_HEAD_TOO_LARGE)
                self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.begun += 1

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.headed += 1

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.received += 1

    def on_response_complete(self) -> None:
        self.answered += 1
        super().on_response_complete()
        if not self.transport.is_closing():
            self._follow()  # the next request's head is awaited from now

    # -- phases and deadlines --------------------------------------------------------------------

    def _follow(self) -> None:
        """Move to the phase the client is in: sending a head, a body, or waiting for us."""
        if self.received > self.answered:
            self._enter("served")  # a request we owe an answer (a pipelined one waits behind it)
        elif self.headed > self.received:
            self._enter("body")
        else:
            self._enter("head")  # a head begun, or none yet (an idle keep-alive)

    def _enter(self, phase: Phase) -> None:
        if phase == self.phase:
            return
        self.phase = phase
        self.waiting.discard(self)
        if phase == "head":
            self.head_bytes = 0
            self.waiting.add(self, self.waiting.head, self.loop.time() + self.header_timeout_s)
        elif phase == "body":
            self.waiting.add(self, self.waiting.body, self.loop.time() + self.body_timeout_s)

    def give_up(self) -> None:
        """Close a connection whose client is too slow (or whose socket is wanted for room)."""
        if self.phase == "head":
            # A client that has begun a request hears why it is cut off; a silent one (an
            # idle keep-alive) is simply closed, as uvicorn closes idle connections.
            self._close(answer=self.head_bytes > 0)
            return
        cycle = self.cycle
        if self.phase == "body" and cycle is not None and not cycle.response_complete:
            # The route waiting for the body sees a disconnect; the access log says why.
            self.scope["state"][CLIENT_TIMEOUT] = True
            answer = not cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
            self._close(answer=answer)
            return
        self._close(answer=False)

    def _close(self, *, answer: bool) -> None:
        self._enter("served")
        if self.transport.is_closing():
            return
        if answer:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()

    def _make_room(self) -> None:
        """Over the limit, close the connections that have waited longest on their clients."""
        if self.limit is None:
            return
        while len(self.connections) > self.limit:
            oldest = self.waiting.longest(besides=self)
            if oldest is None:
                return
            oldest.give_up()
            # Closed transports leave `connections` only when the loop reports them lost.
            self.connections.discard(oldest)
