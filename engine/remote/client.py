"""One long-lived HTTP client per remote target, and one request's exchange with it.

Transport, chosen by measurement (PLATFORM.md, and the figures in this module's report): httpx's
own pool slows down as connections grow (~1,300 requests/s at 16 connections, ~200/s at 64 on one
core here), while httpx over `httpx_aiohttp.AiohttpTransport` keeps ~5,200-5,700/s. Handing a
built `httpx.Request` straight to that transport skips the client's per-request machinery
(cookies, auth, redirects, event hooks) that a load run never uses: ~8,500-9,200/s. Skipping
httpx too, for the bulk of a load, skips building an `httpx.Request` (its URL parsed and its
headers normalised each time), the transport re-parsing that URL for aiohttp, and wrapping the
answer in an `httpx.Response`: a third of the load process's CPU per request (bench_load.py's
CPU part). So the bulk of a load goes to the aiohttp session directly (`exchange`), and `client`
(an `httpx.AsyncClient` over a transport sharing that session and its pool) serves everything
else: metadata reads, probes. A transport given to the constructor (tests' `MockTransport`)
carries every exchange instead.

The aiohttp transport does not fire httpx's `trace` extension, so it cannot report connect, TLS,
send and wait separately. A sampled fraction of requests (`trace_every`, 1 in 50 by default) goes
through httpx's native transport with `trace`, and those report every phase; every request,
sampled or not, keeps its total time, time to first byte, status, `X-Request-ID` and
`Server-Timing`.

Every read from a target is bounded twice, in bytes and in time, whatever it is for (an answer,
model metadata, a schema): `read_capped` counts the bytes *after* decoding, so neither an endless
body nor a gzip bomb can hold more than the cap in memory, and `asyncio.timeout` around the whole
exchange stops a target that drips. The client asks for `Accept-Encoding: identity` (aiohttp and
httpx would otherwise offer gzip and deflate on their own): a load generator's CPU belongs to
sending and timing requests, not to inflating answers, and what is measured is then the model's
answer, not the server's compressor. A target that compresses anyway is still read: gzip and
deflate are inflated in bounded steps (zlib's `max_length`), anything else is a `bad_body`.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import yarl
from httpx_aiohttp import AiohttpTransport

from engine.remote.bodies import read_capped
from engine.remote.classify import BodyError, classify, describe
from engine.remote.credentials import scrub
from engine.remote.http1 import Answer, Http1Pool
from engine.remote.targets import Target

MAX_BODY_BYTES = 1 << 20  # a bigger answer (after decoding) is aborted, counted as `too_large`
TRACE_EVERY = 50
USER_AGENT = b"inferdeck-load/0.1"

_random = random.Random()
_now = time.perf_counter_ns
_CHUNK = 16_384  # a body of unknown length is read in steps of this (as the transport reads)


def new_traceparent() -> str:
    """A W3C `traceparent` starting a new, sampled trace (unique, not secret: no system call)."""
    return f"00-{_random.getrandbits(128):032x}-{_random.getrandbits(64):016x}-01"


@dataclass(slots=True)
class Exchange:
    """What one request got back. Times are `perf_counter_ns`; 0 when they never happened."""

    status: int  # HTTP status; 0 when no response arrived
    body: bytes
    error: str | None  # a transport-level class (`classify`) or `too_large`; None when read whole
    message: str
    server_request_id: str | None
    server_timing: str | None
    start_ns: int  # handed to the transport
    headers_ns: int  # response headers in
    end_ns: int  # body read (or failure)
    events: dict[str, int] | None  # httpx trace events -> time, for sampled requests


class TargetClient:
    """The long-lived clients of one target. Close with `aclose()`."""

    def __init__(
        self,
        target: Target,
        *,
        token: str | None = None,
        max_connections: int = 100,
        trace_every: int = TRACE_EVERY,
        max_body_bytes: int = MAX_BODY_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.target = target
        self.max_body_bytes = max_body_bytes
        self._secrets = [*target.secret_values(), *([token] if token else [])]
        self.trace_every = max(trace_every, 0)
        self._count = 0
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._max_connections = max_connections
        # One aiohttp session (one pool) for the direct exchanges and the httpx client alike,
        # made on first use: it needs the running loop. None with a given transport.
        self._session: aiohttp.ClientSession | None = None
        self._direct = transport is None
        # verify=False: the transport's own SSL context is only for a session it would make
        # itself (and costs ~35 ms to build); ours brings its TLS choice (`_session`).
        self._transport = transport or AiohttpTransport(
            verify=False, limits=limits, client=self._aiohttp
        )
        headers: dict[str, str] = {
            "user-agent": USER_AGENT.decode(),
            "accept": "application/json",
            # Without it aiohttp and httpx each offer gzip and deflate (see the module's note).
            "accept-encoding": "identity",
            **target.headers,
        }
        if token:
            headers["authorization"] = f"Bearer {token}"
        # A plain-HTTP target's exchanges, sampled ones included (it marks their phases
        # itself), go through the lean client (`engine.remote.http1`); None where it cannot
        # say the same request (TLS, a user in the URL, a header it cannot write as given).
        self._lean: tuple[Http1Pool, dict[str, bytes]] | None = None
        block = _header_block(headers)
        self._lean_fields: bytes | None = None
        self._lean_host: str | None = None
        if block is not None:
            self._lean_fields, self._lean_host = block
        if transport is None and block is not None:
            self._lean = _lean_pool(target, max_connections, max_body_bytes)
        # Elsewhere phase detail needs httpcore's trace events; a handful of connections is
        # plenty for a sample.
        self._traced: httpx.AsyncBaseTransport | None = (
            httpx.AsyncHTTPTransport(
                verify=target.verify_tls and _tls(target),
                limits=httpx.Limits(max_connections=10),
            )
            if self.trace_every and transport is None and self._lean is None
            else None
        )
        self._base_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self._post_headers = [*self._base_headers, (b"content-type", b"application/json")]
        # The direct exchange's: aiohttp takes str pairs, and adds none of its defaults
        # (Accept, Accept-Encoding, User-Agent) over these.
        self._post_dict = {k.lower(): v for k, v in headers.items()}
        self._post_dict["content-type"] = "application/json"
        self._urls: dict[str, yarl.URL] = {}  # each URL parsed once, not per request
        self._aiohttp_timeout = aiohttp.ClientTimeout(
            sock_connect=target.connect_timeout_s, sock_read=target.timeout_s
        )
        self._timeouts = {
            "connect": target.connect_timeout_s,
            "read": target.timeout_s,
            "write": target.timeout_s,
            "pool": None,  # the overall deadline bounds waiting for a connection
        }
        # A read timeout between bytes does not stop a server that drips; this deadline does.
        self.deadline_s = target.timeout_s + target.connect_timeout_s
        self.client = httpx.AsyncClient(
            transport=self._transport,
            headers=headers,
            timeout=httpx.Timeout(target.timeout_s, connect=target.connect_timeout_s),
        )

    def sample_next(self) -> bool:
        """Whether the next request should report its phases (1 in `trace_every`)."""
        if not self.trace_every or (self._traced is None and self._lean is None):
            return False
        self._count += 1
        return self._count % self.trace_every == 1 or self.trace_every == 1

    def _aiohttp(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = _session(self.target, self._max_connections)
        return self._session

    async def exchange(
        self, url: str, body: bytes, request_id: str, traceparent: str, traced: bool = False
    ) -> Exchange:
        """POST `body`; never raises for a network or HTTP failure, it is in the result."""
        if self._lean is not None:
            return await self._exchange_lean(url, body, request_id, traceparent, traced)
        if self._direct and not (traced and self._traced is not None):
            return await self._exchange_direct(url, body, request_id, traceparent)
        headers = [
            *self._post_headers,
            (b"x-request-id", request_id.encode()),
            (b"traceparent", traceparent.encode()),
        ]
        extensions: dict[str, Any] = {"timeout": self._timeouts}
        events: dict[str, int] | None = None
        transport = self._transport
        if traced and self._traced is not None:
            transport = self._traced
            events = {}
            extensions["trace"] = _tracer(events)
        result = Exchange(0, b"", None, "", None, None, _now(), 0, 0, events)
        try:
            async with asyncio.timeout(self.deadline_s):
                request = httpx.Request("POST", url, headers=headers, content=body)
                request.extensions = extensions
                response = await transport.handle_async_request(request)
                result.headers_ns = _now()
                result.status = response.status_code
                rh = response.headers
                result.server_request_id = rh.get("x-request-id")
                result.server_timing = rh.get("server-timing")
                await self._read(response, result)
        except Exception as exc:  # every failure is data for the run, never a crash
            result.error = classify(exc)
            # Stored with the row: an exception that echoes the URL must not carry credentials.
            result.message = scrub(describe(exc), self._secrets)
        result.end_ns = _now()
        return result

    async def _exchange_lean(
        self, url: str, body: bytes, request_id: str, traceparent: str, traced: bool
    ) -> Exchange:
        """`exchange` through the lean HTTP/1.1 client: the same request, answer and bounds."""
        assert self._lean is not None and self._lean_fields is not None
        pool, heads = self._lean
        head = heads.get(url)
        if head is None:
            head = heads[url] = _request_line(url, self._lean_host) + self._lean_fields
        request = b"%bx-request-id: %b\r\ntraceparent: %b\r\ncontent-length: %d\r\n\r\n%b" % (
            head,
            request_id.encode(),
            traceparent.encode(),
            len(body),
            body,
        )
        events: dict[str, int] | None = {} if traced else None
        answer = Answer()
        result = Exchange(0, b"", None, "", None, None, _now(), 0, 0, events)
        try:
            await pool.post(request, answer, events, self.deadline_s)
        except Exception as exc:  # every failure is data for the run, never a crash
            result.error = classify(exc)
            result.message = scrub(describe(exc), self._secrets)
        result.status = answer.status
        result.headers_ns = answer.headers_ns
        if answer.status:
            result.server_request_id = answer.header(b"x-request-id")
            result.server_timing = answer.header(b"server-timing")
        if result.error is None:
            result.body = answer.body
            if answer.body_error is not None:
                result.error, result.message = answer.body_error.kind, str(answer.body_error)
        result.end_ns = _now()
        return result

    async def _exchange_direct(
        self, url: str, body: bytes, request_id: str, traceparent: str
    ) -> Exchange:
        """`exchange` through the aiohttp session itself: the same request, answer and bounds."""
        target_url = self._urls.get(url)
        if target_url is None:
            target_url = self._urls[url] = yarl.URL(url)
        headers = self._post_dict.copy()
        headers["x-request-id"] = request_id
        headers["traceparent"] = traceparent
        session = self._session or self._aiohttp()
        result = Exchange(0, b"", None, "", None, None, _now(), 0, 0, None)
        try:
            async with asyncio.timeout(self.deadline_s):
                response = await session.request(
                    "POST",
                    target_url,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    auto_decompress=False,
                    compress=False,
                    timeout=self._aiohttp_timeout,
                )
                result.headers_ns = _now()
                try:
                    result.status = response.status
                    rh = response.headers
                    result.server_request_id = rh.get("x-request-id")
                    result.server_timing = rh.get("server-timing")
                    await self._read_direct(response, result)
                finally:
                    response.release()
        except Exception as exc:  # every failure is data for the run, never a crash
            result.error = classify(exc)
            result.message = scrub(describe(exc), self._secrets)
        result.end_ns = _now()
        return result

    async def _read_direct(self, response: aiohttp.ClientResponse, result: Exchange) -> None:
        rh = response.headers
        encoding = rh.get("content-encoding")
        length = rh.get("content-length")
        limit = self.max_body_bytes
        if encoding is None and length is not None and length.isdigit():
            if int(length) > limit:
                result.error, result.message = "too_large", f"content-length {length}"
                return
            # Its length is known and within the cap: aiohttp's parser reads no more.
            result.body = await response.read()
            return
        try:
            chunks = response.content.iter_chunked(_CHUNK)
            result.body = await read_capped(chunks, encoding, limit)
        except BodyError as exc:
            result.error, result.message = exc.kind, str(exc)

    async def _read(self, response: httpx.Response, result: Exchange) -> None:
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        try:
            rh = response.headers
            encoding = rh.get("content-encoding")
            length = rh.get("content-length")
            limit = self.max_body_bytes
            if encoding is None and length is not None and length.isdigit() and int(length) > limit:
                result.error, result.message = "too_large", f"content-length {length}"
                return
            try:
                result.body = await read_capped(stream, encoding, limit)
            except BodyError as exc:
                result.error, result.message = exc.kind, str(exc)
        finally:
            await stream.aclose()

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET `path` through the long-lived client (metadata, schemas): its status and body,
        capped like every answer (`max_body_bytes` decoded, `deadline_s` in all). Raises what
        the transport raised, `TimeoutError`, or `BodyError`; `classify` names each."""
        async with (
            asyncio.timeout(self.deadline_s),
            self.client.stream("GET", self.target.url(path)) as response,
        ):
            body = await read_capped(
                response.aiter_raw(), response.headers.get("content-encoding"), self.max_body_bytes
            )
            return response.status_code, body

    async def aclose(self) -> None:
        if self._lean is not None:
            self._lean[0].close()
        await self.client.aclose()  # closes the shared transport too
        if self._session is not None and not self._session.closed:
            await self._session.close()  # made for direct exchanges, never by the transport
        if self._traced is not None:
            await self._traced.aclose()


def _session(target: Target, max_connections: int) -> aiohttp.ClientSession:
    """The aiohttp session behind the transport: our own TLS choice, a pool as large as the
    run's in-flight cap, and no cookie jar (a load run must not carry state between requests)."""
    ssl_arg: Any = False
    if target.verify_tls:
        # A verifying context costs ~35 ms of CPU to load the CA store: a plain-HTTP target,
        # which never uses it, takes aiohttp's default (already built when it was imported).
        ssl_arg = httpx.create_ssl_context(verify=True) if _tls(target) else True
    connector = aiohttp.TCPConnector(limit=max_connections, ssl=ssl_arg, keepalive_timeout=30)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def _lean_pool(
    target: Target, max_connections: int, max_body_bytes: int
) -> tuple[Http1Pool, dict[str, bytes]] | None:
    """The lean client's pool for a plain-HTTP target without a user in its URL, and its
    request heads by URL (filled as URLs are first used); None for any other target."""
    url = yarl.URL(target.base_url)
    if url.scheme != "http" or url.user is not None or url.password is not None:
        return None
    if url.host is None or url.port is None:
        return None
    pool = Http1Pool(
        url.host,
        url.port,
        limit=max_connections,
        connect_timeout_s=target.connect_timeout_s,
        read_timeout_s=target.timeout_s,
        max_body_bytes=max_body_bytes,
    )
    return pool, {}


def _header_block(headers: dict[str, str]) -> tuple[bytes, str | None] | None:
    """The request's fixed header lines and the Host the user gave, if any: names merged
    case-insensitively, the last value winning and content-type forced, as the aiohttp path
    sends them (`_post_dict`); None when a name or value cannot go on the wire as given (a line
    break, a character outside Latin-1)."""
    merged = {name.lower(): value for name, value in headers.items()}
    merged["content-type"] = "application/json"
    host = merged.pop("host", None)
    lines = []
    for name, value in merged.items():
        if any(c in name + value for c in "\r\n\0") or not name.isascii():
            return None
        try:
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        except UnicodeEncodeError:
            return None
    if host is not None and (any(c in host for c in "\r\n\0") or not host.isascii()):
        return None
    return b"".join(lines), host


def _request_line(url: str, host: str | None = None) -> bytes:
    """`POST /path?query HTTP/1.1` and the Host header for `url` (or the one the user gave),
    as aiohttp would write them."""
    parsed = yarl.URL(url)
    return b"POST %b HTTP/1.1\r\nhost: %b\r\n" % (
        (parsed.raw_path_qs or "/").encode("ascii"),
        (host if host is not None else parsed.host_port_subcomponent or "").encode("ascii"),
    )


def _tls(target: Target) -> bool:
    """Whether the target speaks TLS (otherwise no certificate store need be loaded for it)."""
    return not target.base_url.lower().startswith("http://")


def _tracer(events: dict[str, int]) -> Any:
    async def trace(name: str, _info: dict[str, Any]) -> None:
        events[name] = _now()

    return trace
