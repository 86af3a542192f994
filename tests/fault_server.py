"""A misbehaving HTTP/1.1 server on 127.0.0.1, for the remote-target fault tests and the load bench.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) over raw asyncio streams, so a
test can break the protocol on purpose where a real framework would refuse to: reset a connection
mid-body with an RST, advertise 50 MB and stream it, drip one byte every 100 ms, stop listening
and listen again on the same port. Answers are shaped like the protocol asked for: OIP v2
`/v2/models/{m}/infer`, InferDeck `/predict`, the health paths of both, or a fixed JSON object.

Use it from a test (the loop runs in a daemon thread, so the code under test keeps its own loop):

    with FaultServer() as server:
        server.add(Rule("status", first=20, count=20, status=503))   # requests 20..39 get 503
        ... run a load against server.url ...

Rules match by request index (0-based, in arrival order); the first match wins, otherwise the
answer is the fixed JSON after `delay_s`. The server offers no statistics: `/metrics` and the
OIP statistics paths get a 404 at once and are not counted in the index, unless the server is
made with `statistics_faults=True` to play a hostile metrics endpoint. `stall(...)` freezes
every answer for S seconds once a chosen request arrives, the way a GC pause or a blocked
worker freezes a real server.

Run it as a process for the benchmark: `python tests/fault_server.py --port P --delay-ms 20
[--stall-at N --stall-s 1]`; it prints `listening PORT` when ready and its own latency figures
on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import signal
import socket
import ssl
import statistics
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal[
    "ok", "delay", "status", "reset", "garbage", "huge", "drip", "close", "endless", "bomb", "gzip"
]

HUGE_BYTES = 50 * 1024 * 1024
_CHUNK = b"x" * 65536
_SPIN_S = 0.0015  # the last stretch of a delay is waited by yielding, not by a timer


def _bomb_parts() -> tuple[bytes, bytes]:
    """A gzip stream's head and a block that repeats: each block inflates to 1 MiB of zeros
    from ~1 KB. A full flush resets the compressor, so every later block is the same bytes and
    the server sends a bomb of any size (or an endless one) without compressing it."""
    zeros = bytes(1 << 20)
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = gz.compress(zeros) + gz.flush(zlib.Z_FULL_FLUSH)
    block = gz.compress(zeros) + gz.flush(zlib.Z_FULL_FLUSH)
    assert block == gz.compress(zeros) + gz.flush(zlib.Z_FULL_FLUSH)
    return head, block


_BOMB_HEAD, _BOMB_BLOCK = _bomb_parts()


@dataclass(frozen=True)
class Rule:
    """One fault, applied to requests `first <= index < first + count` (count None: forever).

    kind: `ok` fixed JSON; `delay` answer after `delay_s`; `status` an error status with a JSON
    error body; `reset` headers + part of the body, then an RST; `garbage` 200 with a non-JSON
    body; `huge` `HUGE_BYTES` of body (`chunked` streams it without a Content-Length); `drip` the
    body one byte every `drip_s`; `close` close the connection without answering; `endless`
    a chunked body that never ends; `bomb` a gzip body (whatever the client accepts) that
    inflates to `bomb_mib` MiB of zeros, or forever when None; `gzip` the usual answer
    gzip-compressed when the request accepts gzip (`always`: even when it does not). `path`
    narrows a rule to one path (a health probe, say); the index still counts every request.
    """

    kind: Kind
    first: int = 0
    count: int | None = None
    status: int = 503
    delay_s: float = 0.0
    chunked: bool = False
    drip_s: float = 0.1
    path: str | None = None  # only requests for this path (e.g. "/ready"); None: any
    bomb_mib: int | None = None  # `bomb`: how much it inflates to; None: endless
    always: bool = False  # `gzip`: compress even when the request does not accept it

    def matches(self, index: int, path: str) -> bool:
        if self.path is not None and path != self.path:
            return False
        return index >= self.first and (self.count is None or index < self.first + self.count)


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


_NOT_OFFERED = Rule("status", status=404)


def _is_statistics(path: str) -> bool:
    """A server-statistics path (`/metrics`, the OIP statistics extension), which the client
    looks for on its own before a load or probe."""
    bare = path.partition("?")[0]
    return bare == "/metrics" or (bare.startswith("/v2/models") and bare.endswith("/stats"))


def _answer(method: str, path: str, request_id: str) -> dict[str, Any]:
    """A plausible body for the protocol the path belongs to."""
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        model = path.split("/")[3]
        return {
            "model_name": model,
            "id": request_id,
            "outputs": [{"name": "label", "shape": [1], "datatype": "BYTES", "data": ["ok"]}],
        }
    parts = path.split("/")
    if method == "GET" and len(parts) == 4 and parts[1:3] == ["v2", "models"]:
        # OIP model metadata: what a client builds its request tensors from.
        return {
            "name": parts[3],
            "versions": ["1"],
            "platform": "fault-server",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]}],
        }
    if path == "/predict":
        return {"request_id": request_id, "model": "iris", "outputs": {"label": "versicolor"}}
    if method == "GET":  # /health, /ready, /v2/health/*, /v2/models/{m}/ready, ...
        return {"status": "ok", "live": True, "ready": True}
    return {"ok": True, "request_id": request_id}


class FaultServer:
    """`start()`/`stop()` or a `with` block; `url`, `port`; faults switch at any time."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        port: int = 0,
        statistics_faults: bool = False,
    ) -> None:
        self.ssl_context = ssl_context
        self.port = port
        # True: the statistics paths are ordinary requests, counted and faulted by the rules
        # (a hostile metrics endpoint); False: 404 at once, outside the index.
        self.statistics_faults = statistics_faults
        self.delay_s = 0.0  # every answer waits this long (before any rule's own delay)
        self.requests_seen = 0
        self.server_delays_s: list[
            float
        ] = []  # arrival → first response byte, as the server saw it
        self._rules: list[Rule] = []
        self._stall_at: int | None = None
        self._stall_s = 0.0
        self._stalled_until = 0.0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # ---------------------------------------------------------------- control (any thread)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def add(self, rule: Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def inject(self, kind: Kind, count: int | None = 1, *, after: int = 0, **params: Any) -> Rule:
        """Apply `kind` to `count` requests, starting `after` requests from now."""
        with self._lock:
            rule = Rule(kind, first=self.requests_seen + after, count=count, **params)
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._stall_at = None

    def stall(self, seconds: float, *, at_request: int) -> None:
        """Once request `at_request` arrives, no answer leaves for `seconds` (a single stall)."""
        with self._lock:
            self._stall_at, self._stall_s = at_request, seconds

    def start(self) -> FaultServer:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._call(self._close())
        self._call(self._cancel_tasks())
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
        self._thread = self._loop = None

    def go_down(self) -> None:
        """Stop listening and drop every open connection: new connects are refused."""
        self._call(self._close())

    def come_back(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None, "start() the server first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # ---------------------------------------------------------------- the server (its loop)

    async def _listen(self) -> None:
        # reuse_address (asyncio's default on Unix) lets `come_back` rebind the same port.
        self._server = await asyncio.start_server(
            self._connection, "127.0.0.1", self.port, ssl=self.ssl_context, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _cancel_tasks(self) -> None:
        # Drips and huge bodies may still be writing to a dead socket; end them before the loop.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _pick(self, index: int, path: str) -> Rule:
        with self._lock:
            if self._stall_at is not None and index >= self._stall_at:
                self._stalled_until = time.monotonic() + self._stall_s
                self._stall_at = None
            for rule in self._rules:
                if rule.matches(index, path):
                    return rule
        return Rule("ok")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.monotonic()
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                if not self.statistics_faults and _is_statistics(path):
                    # Not offered (as by most JSON APIs), and outside the index the rules count.
                    await self._respond(writer, _NOT_OFFERED, method, path, "-", arrived, "")
                    continue
                with self._lock:
                    index = self.requests_seen
                    self.requests_seen += 1
                rule = self._pick(index, path)
                request_id = headers.get("x-request-id", f"fault-{index}")
                accepts = headers.get("accept-encoding", "")
                keep = await self._respond(writer, rule, method, path, request_id, arrived, accepts)
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            ValueError,
        ):
            pass  # the client went away or sent something we do not parse: drop the connection
        except asyncio.CancelledError:
            # stop() ends hanging answers; asyncio's stream callback would log a cancelled
            # handler as an error, so end it as a normal return.
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _wait(self, arrived: float, rule: Rule) -> None:
        """Sleep to the answer's deadline, measured from arrival, then out of any stall."""
        deadline = arrived + self.delay_s + (rule.delay_s if rule.kind == "delay" else 0.0)
        if deadline > arrived:
            # epoll rounds its timeout up to whole milliseconds, so a plain sleep overshoots by
            # up to 1 ms (5 % of a 20 ms delay). Sleep to just short of it, then yield until due.
            if (left := deadline - time.monotonic() - _SPIN_S) > 0:
                await asyncio.sleep(left)
            while time.monotonic() < deadline:  # noqa: ASYNC110 (a spin on purpose)
                await asyncio.sleep(0)
        # One stall at most, so one check: answers due inside it leave when it ends.
        if (left := self._stalled_until - time.monotonic()) > 0:
            await asyncio.sleep(left)

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        rule: Rule,
        method: str,
        path: str,
        request_id: str,
        arrived: float,
        accepts: str = "",
    ) -> bool:
        """Write one answer; False when the connection must not be reused."""
        await self._wait(arrived, rule)
        self.server_delays_s.append(time.monotonic() - arrived)
        kind = rule.kind
        if kind == "close":
            return False
        status, body = 200, b""
        content_type = "application/json"
        if kind == "status":
            status = rule.status
            error = {"code": "unavailable", "message": "injected", "request_id": request_id}
            body = json.dumps({"error": error}).encode()
        elif kind == "garbage":
            body = b"<html><body>502 Bad Gateway, or maybe not</body></html>\x00\xff"
        elif kind in ("ok", "delay", "reset", "drip", "gzip"):
            body = json.dumps(_answer(method, path, request_id)).encode()
        encoded = kind == "bomb"
        if kind == "gzip" and (rule.always or "gzip" in accepts.lower()):
            body, encoded = gzip.compress(body), True
        if kind == "drip":
            body = body + b" " * 64  # long enough to outlast any test timeout at 10 bytes/s
        head = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}"]
        head += [f"Content-Type: {content_type}", f"X-Request-ID: {request_id}"]
        head.append(f"Server-Timing: app;dur={(time.monotonic() - arrived) * 1000:.3f}")
        if encoded:
            head.append("Content-Encoding: gzip")
        if kind == "endless" or kind == "bomb" or (kind == "huge" and rule.chunked):
            head.append("Transfer-Encoding: chunked")
        elif kind == "huge":
            head.append(f"Content-Length: {HUGE_BYTES}")
        else:
            head.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))

        if kind == "reset":
            writer.write(body[: max(1, len(body) // 3)])
            await writer.drain()
            await asyncio.sleep(0.05)  # let the partial body reach the client before the RST
            sock = writer.get_extra_info("socket")
            # SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if kind == "drip":
            for i in range(len(body)):
                writer.write(body[i : i + 1])
                await writer.drain()
                await asyncio.sleep(rule.drip_s)
            return True
        if kind in ("endless", "bomb"):
            # Chunked, from reused blocks: the server holds a few KB however much it sends.
            first, block = (_CHUNK, _CHUNK) if kind == "endless" else (_BOMB_HEAD, _BOMB_BLOCK)
            blocks = None if kind == "endless" else rule.bomb_mib
            sent = 0
            while blocks is None or sent < blocks:
                data = first if sent == 0 else block
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                sent += 1
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if kind == "huge":
            # One reused chunk: the server itself holds no more than 64 KB however much it sends.
            sent = 0
            while sent < HUGE_BYTES:
                if rule.chunked:
                    writer.write(b"%x\r\n%s\r\n" % (len(_CHUNK), _CHUNK))
                else:
                    writer.write(_CHUNK)
                sent += len(_CHUNK)
                await writer.drain()
            if rule.chunked:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        writer.write(body)
        await writer.drain()
        return True


def tls_contexts() -> tuple[ssl.SSLContext, str]:
    """A server context whose certificate (for 127.0.0.1) is signed by a throwaway CA, and that
    CA as PEM text: clients that do not trust it fail the handshake, clients given it succeed."""
    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    return server_ctx, ca.cert_pem.bytes().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fault server as a process (benchmark).")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--stall-at", type=int, help="request index that starts a single stall")
    parser.add_argument("--stall-s", type=float, default=1.0)
    args = parser.parse_args()
    server = FaultServer(port=args.port)
    server.delay_s = args.delay_ms / 1000
    if args.stall_at is not None:
        server.stall(args.stall_s, at_request=args.stall_at)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with server:
        print(f"listening {server.port}", flush=True)
        done.wait()
    delays = sorted(d * 1000 for d in server.server_delays_s)
    figures: dict[str, float] = {"requests": server.requests_seen}
    if delays:
        figures |= {
            "server_delay_p50_ms": statistics.median(delays),
            "server_delay_max_ms": delays[-1],
        }
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
