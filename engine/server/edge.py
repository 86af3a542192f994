"""The ASGI layer every request crosses first: request ID and trace context in and out, the
body size limit, and one structured JSON log line per request.

Plain ASGI rather than a Starlette `BaseHTTPMiddleware`: no extra task per request, and a
too-large body is refused before any route reads it.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.server.access_log import AccessLog
from engine.server.dataplane import DataPlane
from engine.server.errors import Refusal, answer
from engine.server.oip.infer_route import INFER_PATH, serve_infer
from engine.server.predict_route import serve_predict
from engine.server.state import CLIENT_TIMEOUT
from engine.server.tracing import continue_trace, request_id_from

# The only request headers this layer reads; the rest are left for the routes, undecoded.
_WANTED = frozenset({b"x-request-id", b"traceparent", b"content-length"})
# Probes and scrapes, asked every few seconds by an orchestrator: no trace each.
_UNTRACED = frozenset({"/health", "/ready", "/metrics", "/v2/health/live", "/v2/health/ready"})


class Edge:
    """The ASGI app uvicorn runs (`asgi_app` wraps the FastAPI app in it): IDs, trace context,
    the declared body limit and the access log for every request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, plane: DataPlane | None = None) -> None:
        """`plane` (the app's dataplane) turns on the `POST /predict` fast path."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.plane = plane
        self.access_log = AccessLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, _one_line_failures(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter_ns()
        headers = {k: v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED}
        request_id, chosen = request_id_from(headers.get(b"x-request-id"))
        traceparent, parent_span = continue_trace(headers.get(b"traceparent"))
        tracing = self.plane.tracing if self.plane is not None else None
        if tracing is not None:
            traceparent = tracing.sample(traceparent, parent_span)
        state: dict[str, Any] = scope.setdefault("state", {})
        state.update(
            request_id=request_id, caller_chose_id=chosen, traceparent=traceparent, model=None
        )
        status = 500

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [
                    (b"x-request-id", request_id.encode()),
                    (b"traceparent", traceparent.encode()),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                message = f"the body is {int(length):,} bytes; the limit is {self.max_body_bytes:,}"
                refusal = Refusal("body_too_large", message)
                await answer(scope["path"], refusal, request_id)(scope, receive, send_with_ids)
                return
            plane = self.plane
            if plane is not None and scope["method"] == "POST":
                path = scope["path"]
                if path == "/predict":
                    state["model"] = await serve_predict(
                        plane, scope, receive, send_with_ids, request_id, chosen
                    )
                    return
                infer = INFER_PATH.match(path)
                if infer is not None:
                    await serve_infer(plane, scope, receive, send_with_ids, infer)
                    return
            await self.app(scope, receive, send_with_ids)
        finally:
            if state.get(CLIENT_TIMEOUT):
                status = 408  # the protocol answered (or closed): the body was not sent in time
            ended = time.perf_counter_ns()
            if tracing is not None and scope["path"] not in _UNTRACED:
                route = scope.get("route")
                template = getattr(route, "path", None) or _fast_route(scope["path"])
                tracing.record(
                    traceparent,
                    parent_span,
                    f"{scope['method']} {template}" if template else scope["method"],
                    started,
                    ended,
                    {
                        "http.request.method": scope["method"],
                        "url.path": scope["path"],
                        "http.route": template or "",
                        "inferdeck.request_id": request_id,
                        "inferdeck.model": state.get("model") or "",
                    },
                    status,
                    state.get("works") or [],
                )
            if self.access_log.enabled():
                self.access_log.write(
                    {
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": scope["path"],
                        "status": status,
                        "duration_ms": round((ended - started) / 1e6, 3),
                        "model": state.get("model"),
                        "trace_id": traceparent[3:35],
                    }
                )


def _fast_route(path: str) -> str | None:
    """The route template of a request the edge answered itself (FastAPI's router names the
    others)."""
    if path == "/predict":
        return path
    infer = INFER_PATH.match(path)
    if infer is None:
        return None
    versioned = "/versions/{model_version}" if infer.group(2) is not None else ""
    return "/v2/models/{model_name}" + versioned + "/infer"


def _one_line_failures(send: Send) -> Send:
    """`send` for the lifespan, with a failure's message cut to its last line.

    Starlette reports a start-up that raised with the whole traceback, which uvicorn logs; an
    operator needs the last line (`StorageError: cannot use database ...: file is not a
    database`), not thirty lines of frames."""

    async def one_line(message: Message) -> None:
        if message["type"].endswith(".failed") and message.get("message"):
            lines = [line for line in str(message["message"]).splitlines() if line.strip()]
            last = lines[-1].strip() if lines else ""
            # `package.module.Error: text` reads as `Error: text`.
            name, colon, text = last.partition(": ")
            message = {**message, "message": f"{name.rsplit('.', 1)[-1]}{colon}{text}"}
        await send(message)

    return one_line
