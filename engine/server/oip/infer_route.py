"""OIP infer's answer, shared by the FastAPI routes and the edge layer's ASGI fast path.

As `POST /predict` does (see `predict_route`), `POST /v2/models/{m}[/versions/{v}]/infer` skips
FastAPI's middleware stack, router and request objects on the service's hot path: that
machinery was a third of an infer's event-loop time. The FastAPI routes stay for the OpenAPI
document and for callers that mount the app without the edge layer; both run `run_infer`, so
they cannot drift apart.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from engine.models.runtime import LoadedModel
from engine.server.dataplane import DataPlane
from engine.server.errors import Refusal, answer, json_response, oip_error
from engine.server.oip.binary import HEADER, binary_response, with_binary_inputs
from engine.server.oip.tensors import response_body
from engine.server.state import Running
from engine.server.tracing import server_timing

log = logging.getLogger(__name__)

# `/v2/models/{model_name}/infer` and `/v2/models/{model_name}/versions/{model_version}/infer`,
# as the FastAPI routes match them (one path segment each).
INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_BINARY_HEADER = HEADER.lower().encode("latin-1")


def lookup(plane: DataPlane, name: str, version: str | None) -> tuple[Running, LoadedModel]:
    """The running engine and the model asked for; refuses an unknown model or version."""
    live, model = plane.model(name)
    if model is None:
        raise Refusal("unknown_model", f"unknown model {name!r}")
    if version is not None and version != model.version:
        raise Refusal("not_found", f"model {name!r} has no version {version!r}")
    return live, model


async def run_infer(
    plane: DataPlane,
    live: Running,
    model: LoadedModel,
    receive: Receive,
    binary_header: str | None,
    state: dict[str, Any],
) -> Response:
    """Read, run and answer one infer request (`state` is the scope's: IDs in, works out)."""
    body = with_binary_inputs(await plane.read_body(receive), binary_header)
    request_id, chosen = state["request_id"], state["caller_chose_id"]
    parsed, done = await plane.infer(live, model, body, request_id, chosen)
    state["works"] = done  # for the request's trace (see telemetry)
    # Server-Timing as /predict gives it, from the slowest row: the answer waited for it.
    slowest = max(done, key=lambda work: work.latency_us or 0)
    headers = {"server-timing": server_timing(slowest.spans)}
    body_out = response_body(model, parsed, done)
    wanted = parsed.binary_outputs([output["name"] for output in body_out["outputs"]])
    if not wanted:
        return json_response(body_out, 200, headers)
    content, binary_headers = binary_response(body_out, wanted)
    return Response(content, 200, headers | binary_headers)


async def serve_infer(
    plane: DataPlane, scope: Scope, receive: Receive, send: Send, match: re.Match[str]
) -> None:
    """Answer an OIP infer as a plain ASGI app (the edge layer's fast path)."""
    state: dict[str, Any] = scope["state"]
    try:
        live, model = lookup(plane, match.group(1), match.group(2))
        state["model"] = model.name
        binary = next((v for k, v in scope["headers"] if k == _BINARY_HEADER), None)
        header = binary.decode("latin-1") if binary is not None else None
        response = await run_infer(plane, live, model, receive, header, state)
    except Refusal as refusal:
        response = answer(scope["path"], refusal, state["request_id"])
    except Exception:  # never a traceback to the caller; the log keeps it
        log.exception("%s failed (request %s)", scope["path"], state["request_id"])
        response = oip_error("internal error", 500)
    await response(scope, receive, send)
