"""The lean HTTP/1.1 client (`engine.remote.http1`) against a raw server that misbehaves.

Each test runs its own event loop with a small asyncio TCP server on 127.0.0.1 that writes the
bytes it likes, and judges what `TargetClient.exchange` makes of them: the connection pool
(reuse, limit, no leaked places), the answer's framing (interim answers, close-delimited bodies,
bytes nobody asked for) and the class of every failure.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from fault_server import closed_port

from engine.remote.client import MAX_BODY_BYTES, Exchange, TargetClient, new_traceparent
from engine.remote.targets import Target

T = TypeVar("T")


@dataclass
class Conn:
    """One accepted connection, as its handler sees it."""

    index: int  # 1 for the server's first connection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: RawServer

    async def request(self) -> dict[bytes, bytes] | None:
        """The next request's path and header fields (names lowered); None at its end."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        self.server.heads.append(head)
        lines = head.split(b"\r\n")
        fields = {b":path": lines[0].split(b" ")[1]}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        await self.reader.readexactly(int(fields.get(b"content-length", b"0")))
        return fields

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def reset(self) -> None:
        """Close with a RST instead of a FIN (SO_LINGER 0)."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


class RawServer:
    """Counts connections (accepted, open now, most open at once) and keeps each request head."""

    def __init__(self, handler: Callable[[Conn], Awaitable[None]]) -> None:
        self.handler = handler
        self.accepted = self.open = self.peak = 0
        self.heads: list[bytes] = []
        self.all_closed = asyncio.Event()  # set whenever no connection is open
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port: int = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        self.all_closed.clear()
        try:
            await self.handler(Conn(self.accepted, reader, writer, self))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.open -= 1
            if not self.open:
                self.all_closed.set()
            self._tasks.discard(task)


def answer(body: bytes, extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"%b 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (version, len(body), extra, body)


async def echo(conn: Conn) -> None:
    """Answers every request with its own X-Request-ID as the body."""
    while (req := await conn.request()) is not None:
        await conn.send(answer(req[b"x-request-id"]))


def go(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(8):
            return await coro

    return asyncio.run(bounded())


@asynccontextmanager
async def serving(
    handler: Callable[[Conn], Awaitable[None]],
    *,
    timeout_s: float = 2.0,
    headers: dict[str, str] | None = None,
    max_connections: int = 100,
    max_body_bytes: int = MAX_BODY_BYTES,
    lean: bool = True,
) -> AsyncIterator[tuple[RawServer, TargetClient]]:
    async with RawServer(handler) as server:
        target = Target(
            name="raw",
            base_url=f"http://127.0.0.1:{server.port}",
            protocol="json",
            timeout_s=timeout_s,
            connect_timeout_s=1.0,
            headers=headers or {},
        )
        client = TargetClient(
            target, max_connections=max_connections, max_body_bytes=max_body_bytes
        )
        assert (client._lean is not None) == lean  # which client is under test
        try:
            yield server, client
        finally:
            await client.aclose()


async def send(
    client: TargetClient, rid: str = "r1", path: str = "/p", traced: bool = False
) -> Exchange:
    url = client.target.base_url + path
    return await client.exchange(url, b'{"x": 1}', rid, new_traceparent(), traced=traced)


def ok(ex: Exchange, rid: str) -> None:
    assert (ex.error, ex.status, ex.body) == (None, 200, rid.encode()), ex.message


# -- the pool --------------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection() -> None:
    async def main() -> None:
        async with serving(echo) as (server, client):
            for i in range(20):
                ok(await send(client, f"r{i}"), f"r{i}")
            assert server.accepted == 1

    go(main())


@pytest.mark.parametrize(
    ("extra", "version"),
    [(b"Connection: close\r\n", b"HTTP/1.1"), (b"", b"HTTP/1.0")],
    ids=["connection-close", "http-1.0"],
)
def test_an_answer_that_ends_keep_alive_is_not_reused(extra: bytes, version: bytes) -> None:
    """The server keeps its end open: the client must go by the answer, not wait for a FIN."""

    async def handler(conn: Conn) -> None:
        if conn.index > 1:
            return await echo(conn)
        req = await conn.request()
        assert req is not None
        await conn.send(answer(req[b"x-request-id"], extra, version))
        while await conn.request() is not None:
            await conn.send(answer(b"wrong-connection"))

    async def main() -> None:
        async with serving(handler) as (server, client):
            for i in range(3):
                ok(await send(client, f"r{i}"), f"r{i}")
            assert server.accepted == 2

    go(main())


def test_pool_limit_holds_under_concurrency() -> None:
    async def slow_echo(conn: Conn) -> None:
        while (req := await conn.request()) is not None:
            await asyncio.sleep(0.2)  # the server's own work, not synchronisation
            await conn.send(answer(req[b"x-request-id"]))

    async def main() -> None:
        async with serving(slow_echo, max_connections=2) as (server, client):
            began = time.monotonic()
            results = await asyncio.gather(*(send(client, f"r{i}") for i in range(6)))
            elapsed = time.monotonic() - began
            for i, ex in enumerate(results):
                ok(ex, f"r{i}")
            assert (server.accepted, server.peak) == (2, 2)
            assert elapsed >= 0.55  # three rounds of two

    go(main())


# -- framing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "two-writes"])
def test_interim_100_continue_is_skipped(split: bool) -> None:
    async def handler(conn: Conn) -> None:
        while (req := await conn.request()) is not None:
            interim = b"HTTP/1.1 100 Continue\r\nX-Request-ID: interim\r\n\r\n"
            final = answer(req[b"x-request-id"], b"X-Request-ID: " + req[b"x-request-id"] + b"\r\n")
            if split:
                await conn.send(interim)
                await conn.send(final)
            else:
                await conn.send(interim + final)

    async def main() -> None:
        async with serving(handler) as (server, client):
            for rid in ("a", "b"):
                ex = await send(client, rid)
                ok(ex, rid)
                assert ex.server_request_id == rid
            assert server.accepted == 1

    go(main())


def test_close_delimited_body_is_read_whole() -> None:
    pieces = [bytes([65 + i]) * 20_000 for i in range(4)]

    async def handler(conn: Conn) -> None:
        if conn.index > 1:
            return await echo(conn)
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nX-Request-ID: r1\r\n\r\n")
        for piece in pieces:
            await conn.send(piece)
        # returning closes the connection: that is the body's end

    async def main() -> None:
        async with serving(handler) as (server, client):
            ex = await send(client, "r1")
            assert (ex.error, ex.status, ex.server_request_id) == (None, 200, "r1"), ex.message
            assert ex.body == b"".join(pieces)
            ok(await send(client, "r2"), "r2")
            assert server.accepted == 2

    go(main())


@pytest.mark.parametrize(
    "extra", [answer(b"stale"), b"garbage\r\n\r\n"], ids=["second-answer", "garbage"]
)
def test_bytes_nobody_asked_for_end_the_connection(extra: bytes) -> None:
    async def handler(conn: Conn) -> None:
        if conn.index > 1:
            return await echo(conn)
        req = await conn.request()
        assert req is not None
        await conn.send(answer(req[b"x-request-id"]) + extra)  # one write: one segment
        while await conn.request() is not None:
            await conn.send(answer(b"wrong-connection"))

    async def main() -> None:
        async with serving(handler) as (server, client):
            ok(await send(client, "r1"), "r1")
            ok(await send(client, "r2"), "r2")
            assert server.accepted == 2

    go(main())


# -- failures ----------------------------------------------------------------------------------

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
HEAD_100 = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"
FAULTS = {
    "garbage-status": (b"SPAM/9 nonsense\r\n\r\n", "hold", 0),
    "close-first": (b"", "close", 0),
    "close-mid-body": (HEAD_100, "close", 200),
    "close-mid-chunk": (CHUNKED + b"5\r\nab", "close", 200),
    "rst-first": (b"", "rst", 0),
    "rst-mid-body": (HEAD_100, "rst", 200),
    # RFC 9112 §8: a close-delimited body cut by a connection error is incomplete.
    "rst-mid-close-delimited-body": (b"HTTP/1.1 200 OK\r\n\r\nabc", "rst", 200),
}


@pytest.mark.parametrize(("data", "action", "status"), FAULTS.values(), ids=FAULTS.keys())
def test_broken_answers_are_reset(data: bytes, action: str, status: int) -> None:
    async def handler(conn: Conn) -> None:
        if conn.index > 1:
            return await echo(conn)
        await conn.request()
        await conn.send(data)
        if action == "rst":
            if data:
                await asyncio.sleep(0.1)  # the client reads the head first (no event to await)
            conn.reset()
        elif action == "hold":
            await conn.reader.read()  # until the client closes

    async def main() -> None:
        async with serving(handler) as (server, client):
            ex = await send(client, "r1")
            assert (ex.error, ex.status) == ("reset", status), (ex.message, ex.body)
            ok(await send(client, "r2"), "r2")
            assert server.accepted == 2

    go(main())


def test_silent_server_times_out_without_leaking_the_connection() -> None:
    async def handler(conn: Conn) -> None:
        if conn.index > 2:
            return await echo(conn)
        await conn.request()
        await conn.reader.read()  # never answers; returns once the client closes

    async def main() -> None:
        async with serving(handler, timeout_s=0.5, max_connections=1) as (server, client):
            for _ in range(2):
                began = time.monotonic()
                ex = await send(client, "silent")
                assert ex.error == "timeout", ex.message
                assert 0.4 <= time.monotonic() - began <= 2.0
                await asyncio.wait_for(server.all_closed.wait(), 1)  # the client closed it
            ok(await send(client, "r3"), "r3")
            assert server.accepted == 3

    go(main())


def test_refused_port() -> None:
    async def main() -> None:
        client = TargetClient(Target(name="raw", base_url=f"http://127.0.0.1:{closed_port()}"))
        try:
            ex = await send(client)
            assert (ex.error, ex.status) == ("connect_refused", 0), ex.message
        finally:
            await client.aclose()

    go(main())


def test_refused_on_every_address_of_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name with two addresses, both refusing (`localhost` as ::1 and 127.0.0.1): asyncio
    raises one plain OSError("Multiple exceptions: ...") for them; it is still a refusal."""
    ports = [closed_port(), closed_port()]
    real = socket.getaddrinfo

    def two_addresses(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "twofold.test":
            return real(host, port, *args, **kwargs)
        tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        return [(*tcp, ("127.0.0.1", p)) for p in ports]

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)

    async def main() -> None:
        client = TargetClient(Target(name="raw", base_url=f"http://twofold.test:{ports[0]}"))
        try:
            assert client._lean is not None
            ex = await send(client)
            assert (ex.error, ex.status) == ("connect_refused", 0), ex.message
        finally:
            await client.aclose()

    go(main())


def test_cancelled_exchanges_free_their_place() -> None:
    slow_in = asyncio.Event()

    async def handler(conn: Conn) -> None:
        while (req := await conn.request()) is not None:
            if req[b":path"] == b"/slow":
                slow_in.set()
                await conn.reader.read()  # holds the request until the client gives up
                return
            await conn.send(answer(req[b"x-request-id"]))

    async def main() -> None:
        async with serving(handler, max_connections=1) as (server, client):
            for i in range(3):
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(send(client, "slow", "/slow"), 0.1)
                began = time.monotonic()
                ok(await send(client, f"r{i}"), f"r{i}")
                assert time.monotonic() - began < 1.0
            # One waiting for the only place, cancelled while it waits; then the holder too.
            slow_in.clear()
            holder = asyncio.create_task(send(client, "slow", "/slow"))
            await slow_in.wait()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(send(client, "queued"), 0.1)
            holder.cancel()
            with pytest.raises(asyncio.CancelledError):
                await holder
            ok(await send(client, "last"), "last")
            # Each cancelled exchange's connection dropped (each slow one reused an echo's).
            assert server.accepted == 5

    go(main())


# -- bodies ------------------------------------------------------------------------------------


def test_content_length_over_the_cap_keeps_status() -> None:
    async def handler(conn: Conn) -> None:
        while (req := await conn.request()) is not None:
            await conn.send(answer(b"x" * 5000, b"X-Request-ID: " + req[b"x-request-id"] + b"\r\n"))

    async def main() -> None:
        async with serving(handler, max_body_bytes=1000) as (_, client):
            ex = await send(client, "big")
            assert (ex.error, ex.status, ex.server_request_id) == ("too_large", 200, "big")

    go(main())


def test_endless_chunked_body_is_cut_with_bounded_memory() -> None:
    sent = [0]

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(CHUNKED)
        chunk = b"10000\r\n" + b"z" * 0x10000 + b"\r\n"
        while True:
            await conn.send(chunk)
            sent[0] += len(chunk)

    async def main() -> None:
        async with serving(handler, max_body_bytes=100_000) as (server, client):
            ex = await send(client, "endless")
            assert (ex.error, ex.status) == ("too_large", 200), ex.message
            await asyncio.wait_for(server.all_closed.wait(), 1)  # the client hung up
            assert sent[0] < 8 << 20

    tracemalloc.start()
    try:
        go(main())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_unasked_content_encoding_is_bad_body() -> None:
    async def handler(conn: Conn) -> None:
        while await conn.request() is not None:
            await conn.send(answer(b"\x8b\x02\x80hello\x03", b"Content-Encoding: br\r\n"))

    async def main() -> None:
        async with serving(handler) as (_, client):
            ex = await send(client, "br")
            assert (ex.error, ex.status) == ("bad_body", 200), ex.message

    go(main())


# -- the request -------------------------------------------------------------------------------


def test_no_header_injection() -> None:
    async def main() -> None:
        headers = {"X-Note": "a\r\nInjected: yes"}
        async with serving(echo, headers=headers, lean=False) as (server, client):
            ex = await send(client, "r1")  # aiohttp refuses it; if sent, it must be one line
            assert ex.error is not None or server.heads
        async with serving(echo) as (server2, client2):
            ok(await send(client2, "r2", "/p\r\nInjected: yes"), "r2")  # the URL: quoted
            assert len(server2.heads) == 1
        for head in server.heads + server2.heads:
            assert not any(line.lower().startswith(b"injected") for line in head.split(b"\r\n"))

    go(main())


def test_traced_exchange_marks_connect_and_send_in_order() -> None:
    async def main() -> None:
        async with serving(echo) as (_, client):
            first = await send(client, "r1", traced=True)
            second = await send(client, "r2", traced=True)
        ok(first, "r1")
        ok(second, "r2")
        assert first.events is not None and second.events is not None
        connect = ["connection.connect_tcp.started", "connection.connect_tcp.complete"]
        sending = ["http11.send_request_headers.started", "http11.send_request_body.complete"]
        marks = [first.start_ns, *(first.events[k] for k in connect + sending), first.headers_ns]
        assert marks == sorted(marks)
        assert list(first.events) == connect + sending
        assert list(second.events) == sending  # a reused connection: no connect
        assert second.start_ns <= second.events[sending[0]] <= second.headers_ns

    go(main())


def test_headers_the_user_sets_replace_the_clients_own_once() -> None:
    """A target's Host (a virtual host behind a gateway), User-Agent or Content-Type goes on
    the wire once, as aiohttp sends it: two Host headers are a 400 at any HTTP/1.1 server."""

    async def main() -> None:
        headers = {"Host": "svc.example.com", "User-Agent": "mine", "Content-Type": "text/plain"}
        async with serving(echo, headers=headers) as (server, client):
            ok(await send(client, "r1"), "r1")
        lines = [line.lower() for line in server.heads[0].split(b"\r\n")[1:] if line]
        names = [line.partition(b":")[0] for line in lines]
        assert len(names) == len(set(names)), lines
        assert b"host: svc.example.com" in lines and b"user-agent: mine" in lines
        assert b"content-type: application/json" in lines

    go(main())


def test_an_endless_answer_head_is_cut_off_early() -> None:
    """A server streaming one header forever costs bounded memory and ends well before the
    deadline (the read timeout never fires: bytes keep coming)."""

    async def endless(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nX-Long: ")
        while True:
            await conn.send(b"a" * 16384)

    async def main() -> None:
        async with serving(endless, timeout_s=5.0) as (_server, client):
            started = time.monotonic()
            ex = await send(client)
            assert time.monotonic() - started < 3.0
            assert ex.error == "reset" and "head over" in ex.message, ex.message

    go(main())


def test_a_chunked_bodys_trailer_does_not_replace_a_header() -> None:
    async def trailer(conn: Conn) -> None:
        await conn.request()
        await conn.send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Request-ID: real\r\n\r\n"
            b"2\r\nr1\r\n0\r\nX-Request-ID: trailer\r\n\r\n"
        )

    async def main() -> None:
        async with serving(trailer) as (_server, client):
            ex = await send(client, "r1")
            ok(ex, "r1")
            assert ex.server_request_id == "real"

    go(main())
