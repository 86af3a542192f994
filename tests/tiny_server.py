"""A tiny HTTP server in a thread that answers what a test tells it, and a target for it."""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys
import textwrap
import time
from typing import Any

import httpx
from live_server import free_port

from engine.remote.targets import Target


class _Serve:
    """The server's own code: stdlib only, run in a child process (`TinyServer`) so the client
    under test never shares a GIL with it (a shared GIL adds milliseconds of handoff waits)."""

    def __init__(self, port: int, delay_s: float, stall_at: int | None, stall_s: float):
        self.port, self.delay_s, self.stall_at, self.stall_s = port, delay_s, stall_at, stall_s
        self.stall_until = 0.0
        self.count = 0
        self.last_headers: dict[str, str] = {}

    async def serve(self) -> None:
        server = await asyncio.start_server(self.conn, "127.0.0.1", self.port, backlog=512)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    async def conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                await reader.readexactly(int(headers.get("content-length", "0")))
                if path == "/_stats":
                    status, body = 200, json.dumps([self.count, self.last_headers]).encode()
                else:
                    index, self.count = self.count, self.count + 1
                    self.last_headers = headers
                    await self.pace(index, path)
                    status, body = self.answer(path)
                rid = headers.get("x-request-id", "none")
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nX-Request-ID: {rid}\r\n"
                    "Server-Timing: parse;dur=0.5, infer;dur=1.25\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def pace(self, index: int, path: str) -> None:
        now = time.monotonic()
        if index == self.stall_at:
            self.stall_until = now + self.stall_s
        wait = max(self.stall_until - now, 0.0)
        if path == "/slow":
            wait = 5.0
        # The delay starts when the request arrives (or the stall ends). The loop's timer wakes
        # up to 1 ms late, so sleep to just short of the moment and turn the loop until it.
        if wait or self.delay_s:
            until = now + wait + self.delay_s
            await asyncio.sleep(max(until - time.monotonic() - 0.0015, 0))
            while time.monotonic() < until:  # noqa: ASYNC110 - a deadline, not an event
                await asyncio.sleep(0)

    def answer(self, path: str) -> tuple[int, bytes]:
        if path == "/missing":
            return 404, b'{"error":"no"}'
        if path == "/garbage":
            return 200, b"<html>not json"
        if path == "/huge":
            return 200, b"[" + b"1," * (1 << 20) + b"1]"
        if path == "/unavailable":
            return 503, b'{"error":"busy"}'
        return 200, b'{"outputs":{"label":"a"}}'


class TinyServer:
    """Answers every POST after `delay_s`. Paths: `/missing` 404, `/garbage` a non-JSON 200,
    `/huge` 2 MiB, `/slow` 5 s, `/unavailable` 503. `stall_at=k` freezes every answer for
    `stall_s` once request k arrives, as a GC pause or a blocked worker would."""

    def __init__(self, delay_s: float = 0.0, stall_at: int | None = None, stall_s: float = 1.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._args = json.dumps([self.port, delay_s, stall_at, stall_s])
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> TinyServer:
        code = (
            "import asyncio, json, sys, time\n"
            + textwrap.dedent(inspect.getsource(_Serve))
            + "\nasyncio.run(_Serve(*json.loads(sys.argv[1])).serve())\n"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, self._args], stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        assert self._proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait(10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def stats(self) -> tuple[int, dict[str, str]]:
        count, headers = httpx.post(f"{self.url}/_stats", timeout=5).json()
        return count, headers

    @property
    def count(self) -> int:
        return self.stats()[0]


def target(url: str, **kw: Any) -> Target:
    return Target(name="t", base_url=url, protocol=kw.pop("protocol", "json"), **kw)
