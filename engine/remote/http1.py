"""A lean HTTP/1.1 client for the bulk of a load run against a plain-HTTP target.

Why it exists: on a shared machine the load generator's own CPU becomes the server's latency
(bench/bench_load.py). aiohttp spends ~150 µs of CPU a request here, measured as a bare closed
loop against nginx; a protocol on asyncio's transport, its request head prepared once per URL
and its answers parsed by httptools (llhttp, the parser uvicorn uses), spends ~45 µs. It does
one thing: POST a body on a pool of keep-alive connections and read the answer, bounded like
every read of a target: in bytes (`engine.remote.bodies.CappedBody`, decoded), in time between
bytes (the read timeout), and in all (the caller's deadline). TLS, redirects, proxies and
cookies are not here: an https target's load goes through aiohttp (`engine.remote.client`).

Failures raise what `engine.remote.classify` names: `ConnectionRefusedError`,
`ConnectTimeoutError`, `TimeoutError` (no byte within the read timeout), `ProtocolError` (not
HTTP/1.1, or the connection closed before the answer ended). A body that is too large or does
not decode is no exception: the answer carries its `BodyError` with the status it came with.
A connection is reused only after an answer read whole with keep-alive; any failure, a
cancellation included, closes it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from typing import cast

import aiohappyeyeballs
import httptools

from engine.remote.bodies import CappedBody
from engine.remote.classify import BodyError, ConnectTimeoutError, ProtocolError

_now = time.perf_counter_ns
# An answer's status line and headers, at most (aiohttp allows 8 KB a line and 128 headers):
# a server that streams an endless header is cut off here, not at the deadline.
MAX_HEAD_BYTES = 64 * 1024
# The answer's headers anyone reads (`engine.remote.client.Exchange`); the rest are skipped.
_KEPT = frozenset(
    {
        b"x-request-id",
        b"server-timing",
        b"content-encoding",
        b"content-length",
        b"transfer-encoding",
    }
)


class Answer:
    """One answer as it arrives: filled by the connection's parser callbacks, so a request that
    fails half-way still shows what came (its status, when its headers came in)."""

    __slots__ = ("body", "body_error", "headers", "headers_ns", "keep_alive", "status")

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.headers_ns = 0
        self.body = b""
        self.body_error: BodyError | None = None
        self.keep_alive = False

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as bytes arrive."""

    def __init__(self, pool: Http1Pool) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._answer: Answer | None = None
        self._body: CappedBody | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_byte = 0.0
        self._deadline = 0.0
        self._interim = False  # a 1xx answer: the real one follows on the same connection
        self._head_bytes = 0  # of the answer's head, counted until its headers are complete

    # -- one exchange ------------------------------------------------------------------------

    async def exchange(
        self, request: bytes, answer: Answer, events: dict[str, int] | None, deadline: float
    ) -> None:
        """Send `request` (head and body) and wait for the whole answer into `answer`, until
        `deadline` at the latest (the loop's clock)."""
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            raise ProtocolError("the server closed the connection before the request was sent")
        self._answer = answer
        self._body = None
        self._head_bytes = 0
        waiter = self._waiter = self._loop.create_future()
        if events is not None:
            events["http11.send_request_headers.started"] = _now()
        transport.write(request)
        if events is not None:
            events["http11.send_request_body.complete"] = _now()
        self._last_byte = self._loop.time()
        self._deadline = deadline
        # One timer a request, for both bounds: the read timeout and the deadline.
        due = min(self._last_byte + self._pool.read_timeout_s, deadline)
        self._timer = self._loop.call_at(due, self._idle)
        try:
            await waiter
        finally:
            self._waiter = None
            self._answer = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _idle(self) -> None:
        """The bounds' check: no byte for the read timeout, or the deadline passed, fails the
        exchange (a server that drips a byte at a time meets the deadline)."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        now = self._loop.time()
        if now >= self._deadline:
            self._fail(TimeoutError("no whole answer before the request's deadline"))
            return
        timeout = self._pool.read_timeout_s
        due = self._last_byte + timeout
        if now < due:  # a byte came since: look again then
            self._timer = self._loop.call_at(min(due, self._deadline), self._idle)
            return
        self._fail(TimeoutError(f"no answer byte for {timeout:g} s"))

    def _done(self, error: BaseException | None = None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def _fail(self, error: BaseException) -> None:
        self._done(error)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, whichever loop made it (uvloop's are not asyncio.Transport's).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._answer is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self._last_byte = self._loop.time()
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(ProtocolError(f"not an HTTP/1.1 answer: {exc}"))
            return
        if self._answer is not None and self._answer.headers_ns == 0:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(ProtocolError(f"an answer head over {MAX_HEAD_BYTES:,} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.lost(self)
        waiter, answer = self._waiter, self._answer
        if waiter is None or waiter.done() or answer is None:
            return
        headers = answer.headers
        if (
            exc is None  # closed, not broken: a reset mid-body leaves the body unfinished
            and answer.headers_ns
            and self._body is not None
            and b"content-length" not in headers
            and b"transfer-encoding" not in headers
        ):
            # An answer without a length ends when its connection does (HTTP/1.0's way).
            answer.body = self._body.result()
            self._done()
            return
        if isinstance(exc, OSError):
            self._done(exc)
        else:
            self._done(ProtocolError("the server closed the connection before the answer ended"))

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._answer is None:  # another answer after this request's: not to be trusted
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        answer = self._answer
        # The first of each, as aiohttp's `get` gives it; a chunked body's trailers are not
        # headers (they come once `headers_ns` is set).
        if answer is not None and not answer.headers_ns:
            name = name.lower()
            if name in _KEPT:
                answer.headers.setdefault(name, value)

    def on_headers_complete(self) -> None:
        answer = self._answer
        if answer is None:
            self.close()  # an answer nobody asked for: the connection cannot be trusted
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._interim = True
            self._head_bytes = 0
            answer.headers.clear()
            return
        answer.status = status
        answer.headers_ns = _now()
        limit = self._pool.max_body_bytes
        encoding = answer.headers.get(b"content-encoding")
        length = answer.headers.get(b"content-length")
        try:
            if encoding is None and length is not None and length.isdigit() and int(length) > limit:
                raise BodyError("too_large", f"content-length {length.decode()}")
            self._body = CappedBody(None if encoding is None else encoding.decode("latin-1"), limit)
        except BodyError as exc:
            self._body_failed(answer, exc)

    def on_body(self, chunk: bytes) -> None:
        body, answer = self._body, self._answer
        if body is None or answer is None or answer.body_error is not None:
            return
        try:
            body.feed(chunk)
        except BodyError as exc:
            self._body_failed(answer, exc)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        answer, body = self._answer, self._body
        if answer is None or answer.body_error is not None:
            return
        answer.body = b"" if body is None else body.result()
        answer.keep_alive = self._parser.should_keep_alive()
        self._body = None
        self._answer = None  # whatever follows on this connection is no part of it
        self._done()

    def _body_failed(self, answer: Answer, error: BodyError) -> None:
        """A body not read whole: the answer says why; the rest is not read, the connection
        goes (what is left of the body would otherwise be the next answer's start)."""
        answer.body_error = error
        self._body = None
        self._answer = None
        self._done()
        self.close()


class Http1Pool:
    """Keep-alive connections to one host and port, at most `limit` open at once."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        limit: int,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_body_bytes: int,
    ) -> None:
        self.host, self.port = host, port
        self.limit = max(limit, 1)
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_body_bytes = max_body_bytes
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def post(
        self,
        request: bytes,
        answer: Answer,
        events: dict[str, int] | None,
        deadline_s: float,
    ) -> None:
        """Send `request` (a whole HTTP/1.1 request, head and body) and read its answer into
        `answer`, all within `deadline_s`; raises what the module's note lists. (The deadline
        is kept by the connection's own timer: no `asyncio.timeout` a request.)"""
        deadline = asyncio.get_running_loop().time() + deadline_s
        conn = self._idle_connection()
        if conn is None:
            async with asyncio.timeout_at(deadline):
                conn = await self._acquire(events)
        reusable = False
        try:
            await conn.exchange(request, answer, events, deadline)
            reusable = answer.keep_alive and not conn.closed
        finally:
            self._release(conn, reusable)

    def _idle_connection(self) -> _Connection | None:
        if self._closed:
            return None
        while self._idle:
            conn = self._idle.pop()  # the most recent: the least likely to have timed out
            transport = conn.transport
            # Closed by the server but not yet told (its FIN read in this very pass): skipped.
            if not conn.closed and transport is not None and not transport.is_closing():
                return conn
        return None

    async def _acquire(self, events: dict[str, int] | None) -> _Connection:
        while True:
            if self._closed:
                raise ProtocolError("the client is closed")
            conn = self._idle_connection()
            if conn is not None:
                return conn
            if self._open < self.limit:
                return await self._connect(events)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken and cancelled at once: pass the turn on
                else:
                    self._waiters.remove(waiter)
                raise

    async def _connect(self, events: dict[str, int] | None) -> _Connection:
        self._open += 1
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        if events is not None:
            events["connection.connect_tcp.started"] = _now()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                # Every address the name has, tried as aiohttp tries them (happy eyeballs): a
                # refusal on all of them is one ConnectionRefusedError, not asyncio's plain
                # "Multiple exceptions" OSError.
                infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
                sock = await aiohappyeyeballs.start_connection(infos, loop=loop)
                try:
                    await loop.create_connection(lambda: conn, sock=sock)
                except BaseException:
                    if conn.transport is None:  # no transport took the socket over
                        sock.close()
                    raise
        except TimeoutError:
            if conn.transport is None:
                self._gone()
            else:
                conn.close()
            raise ConnectTimeoutError(
                f"no connection to {self.host}:{self.port} within {self.connect_timeout_s:g} s"
            ) from None
        except BaseException:
            if conn.transport is None:
                self._gone()
            else:  # cancelled once connected: its connection_lost frees the place
                conn.close()
            raise
        if events is not None:
            events["connection.connect_tcp.complete"] = _now()
        return conn

    def _release(self, conn: _Connection, reusable: bool) -> None:
        if reusable and not self._closed:
            self._idle.append(conn)
            self._wake()
            return
        if not conn.closed:
            conn.close()  # its connection_lost (soon, from the loop) frees its place and wakes

    def lost(self, conn: _Connection) -> None:
        """A connection ended (closed by either side): its place is free."""
        if conn in self._idle:
            self._idle.remove(conn)
        self._gone()

    def _gone(self) -> None:
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Close every idle connection; one in use closes when its exchange ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
