"""`POST /predict`'s answer, shared by the FastAPI route and the edge layer's ASGI fast path.

The service's hot path skips FastAPI's middleware stack, router and request objects (that
machinery cost about a fifth of a prediction's event-loop time under uvicorn). `Edge` hands
`POST /predict` straight to `serve_predict`; the FastAPI route stays for the OpenAPI document
and for callers that mount the app without the edge layer. Both run `DataPlane.predict` and
build their answer with `predict_response`, so they cannot drift apart; they differ only in
who answers a crash (here, or the app's handler for the route).
"""

from __future__ import annotations

import logging

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from engine.server.dataplane import DataPlane
from engine.server.errors import Refusal, answer, envelope, json_response, simple
from engine.server.tracing import server_timing
from engine.work import Work

log = logging.getLogger(__name__)


def response_body(work: Work) -> dict[str, object]:
    """`PredictResponse`'s shape, built directly: a pydantic round trip per response cost
    ~10 % of the service's throughput, and every value here is already checked."""
    assert work.model is not None
    return {
        "request_id": work.request_id,
        "model": work.model.name,
        "model_version": work.model.version,
        "outputs": work.output,
        "latency_ms": work.latency_us / 1000,
        "spans": [
            {
                "name": s[0],
                "start_us": s[1],
                "duration_us": s[2],
                "attributes": s[3] if len(s) > 3 else {},
            }
            for s in work.spans
        ],
    }


def predict_response(work: Work) -> Response:
    """The answer to a finished (committed) or rejected request."""
    headers = {"server-timing": server_timing(work.spans)}
    if work.status == "ok":
        return json_response(response_body(work), 200, headers)
    assert work.error is not None
    if work.status == "failed":
        # The stored row keeps the reason; a caller gets no internals.
        response = simple("internal", "the request could not be completed", work.request_id)
    else:
        response = envelope(work.error, work.request_id)
    response.headers.update(headers)
    return response


async def serve_predict(
    plane: DataPlane, scope: Scope, receive: Receive, send: Send, request_id: str, chosen: bool
) -> str | None:
    """Answer `POST /predict` as a plain ASGI app; returns the model name for the log line."""
    model: str | None = None
    try:
        work = await plane.predict(receive, request_id, chosen)
        scope["state"]["works"] = [work]  # for the request's trace (see telemetry)
        model = work.model_name
        response = predict_response(work)
    except Refusal as refusal:
        response = answer("/predict", refusal, request_id)
    except Exception:  # never a traceback to the caller; the log keeps it
        log.exception("POST /predict failed (request %s)", request_id)
        response = simple("internal", "the request could not be completed", request_id)
    await response(scope, receive, send)
    return model
