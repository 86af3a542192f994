"""What the service does, behind every route: readiness, `/predict`, the model descriptions and
OIP inference, over the engine the lifespan started.

The routes (`app`, `oip.routes`) and the edge layer's `POST /predict` fast path only translate
HTTP to these calls and their results back. A request the service turns away (not ready yet, a
body over the limit, an unknown model) is a `Refusal`, which each caller answers in the shape its
path speaks (`errors.answer`).

An OIP batch is all or nothing: every row is checked before any is run, and one bad row refuses
the whole request (only the rejections are stored); a batch with more rows than the engine's
queue holds (`max_batch_size`, advertised in the model metadata's `parameters`) is refused with
a 400 before anything runs, and one that does not fit in the queue's free room gets a 503 before
anything runs, rather than running the rows that fit and refusing the rest. The OIP `id` is the
caller's correlation ID, which KServe and Triton let clients reuse: it is echoed and kept in each
stored row's metadata (`oip_id`), while the rows take their IDs from `X-Request-ID` or the
server.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from starlette.types import Receive

from engine.ids import new_id
from engine.models.runtime import LoadedModel
from engine.pipeline import Engine
from engine.server.errors import Refusal
from engine.server.metrics import ServiceMetrics
from engine.server.oip.schema import output_specs
from engine.server.oip.tensors import (
    InferRequest,
    OipError,
    batch_refusal,
    parse_request,
    row_request,
    rows_from,
)
from engine.server.openapi import model_info
from engine.server.state import Running
from engine.validation import Validated
from engine.work import Work

if TYPE_CHECKING:  # imported only when tracing is on (see telemetry)
    from engine.server.otlp import Tracing

log = logging.getLogger(__name__)

NOT_READY = "models are still loading"
MAX_ID_CHARS = 64


class DataPlane:
    """The service's operations over the running engine; `create_app` makes one, its lifespan
    sets `running`, and the routes and the edge layer call it."""

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.running: Running | None = None  # set once models are warm and the database open
        self.metrics: ServiceMetrics | None = None  # set as the lifespan starts (`GET /metrics`)
        self.tracing: Tracing | None = None  # set as the lifespan starts, when OTEL_* asks
        # Each model's description, made once: `GET /models/{name}` is a remote prober's
        # "model ready" check, asked every few seconds.
        self._described: dict[str, dict[str, Any]] = {}

    def live(self) -> Running:
        """The running engine; refuses (503) before start-up has finished and after shutdown."""
        live = self.running
        if live is None:
            raise Refusal("not_ready", NOT_READY)
        return live

    async def read_body(self, receive: Receive) -> bytes:
        """The request body from ASGI messages; refuses (413) once it passes the limit or the
        caller disconnects (a chunked body has no length to check first; the edge layer already
        refused a declared length over it)."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                break
            if not message.get("more_body", False):
                return bytes(body)
        raise Refusal("body_too_large", f"the body is over {self.max_body_bytes:,} bytes")

    # -- the service's own API -----------------------------------------------------------------

    async def predict(self, receive: Receive, request_id: str, caller_chose_id: bool) -> Work:
        """Run one prediction from its raw body; returns once its row is committed (or it was
        rejected: the engine validates before any database or model work, and stores even a
        rejection)."""
        live = self.live()
        body = await self.read_body(receive)
        return await live.engine.predict_json(
            body,
            live.origin,
            request_id=request_id if caller_chose_id else None,
            own_id=None if caller_chose_id else request_id,
        )

    async def ready(self, *, probe_database: bool) -> list[str]:
        """The models' names once a request could be served and stored now; refuses (503) with
        the reason otherwise. `probe_database` also asks the database to answer a query."""
        live = self.live()
        if probe_database:
            try:
                async with asyncio.timeout(2):
                    await live.db.reader.execute("SELECT 1")
            except Exception as exc:  # any failure to answer means not ready
                log.warning("readiness: database check failed: %s", exc)
                raise Refusal("not_ready", "the database is not reachable") from None
        problem = await live.engine.storage_problem()
        if problem is not None:
            raise Refusal("not_ready", problem)
        return live.engine.registry.names()

    def model(self, name: str) -> tuple[Running, LoadedModel | None]:
        """The running engine and its model called `name` (None when there is none)."""
        live = self.live()
        return live, live.engine.registry.get(name)

    def describe(self, model: LoadedModel) -> dict[str, Any]:
        """`ModelInfo` for a loaded model."""
        info = self._described.get(model.name)
        if info is None:
            info = self._described[model.name] = model_info(model)
        return info

    def models(self) -> list[dict[str, Any]]:
        """`ModelInfo` for every loaded model, by name."""
        registry = self.live().engine.registry
        return [self.describe(registry.models[name]) for name in registry.names()]

    def unknown_model(self, name: str) -> Refusal:
        """The refusal for a model name the registry does not have, naming the ones it has."""
        known = ", ".join(self.live().engine.registry.names())
        return Refusal("unknown_model", f"unknown model {name!r} (have: {known})")

    # -- OIP -----------------------------------------------------------------------------------

    async def infer(
        self, live: Running, model: LoadedModel, body: bytes, request_id: str, chosen: bool
    ) -> tuple[InferRequest, list[Work]]:
        """Parse, split into rows, run every row through the engine at once, and return the
        parsed request with the rows' finished work; raises `OipError` for a refused request."""
        engine = live.engine
        parsed = parse_request(body)
        unknown = [n for n in parsed.outputs or () if n not in output_specs(model)]
        if unknown:
            raise OipError(f"model {model.name!r} has no output(s) {', '.join(unknown)}")
        rows = rows_from(model, parsed.inputs, max_batch_size(engine))
        if len(rows) > 1 and len(rows) > engine.queue.capacity - len(engine.queue):
            # Refused whole while nothing has run: admitted row by row, the rows that found room
            # would run and be stored under a 503 the caller retries.
            raise OipError(
                f"the server is at capacity for a batch of {len(rows):,} rows; try again shortly",
                503,
            )
        ids, chosen = _row_ids(request_id, chosen, len(rows))
        bodies = [row_request(model, row, parsed.id, i) for i, row in enumerate(rows)]
        # Every row is checked before any is run, so a 400 never hides rows that were run and
        # stored: then only the invalid rows go on (the engine stores their rejections) and the
        # valid rows of the batch are not sent. Checked once, by the engine's own validator,
        # whose verdicts the engine takes as they are.
        checks = [engine.requests_validator().validate(b) for b in bodies]
        invalid = [i for i, check in enumerate(checks) if not isinstance(check, Validated)]
        chosen_rows = invalid or range(len(rows))
        # Admitted all at once or refused whole (the check of free room above is only a fast path).
        done = await engine.predict_json_batch(
            [bodies[i] for i in chosen_rows],
            live.origin,
            request_ids=[ids[i] if chosen else None for i in chosen_rows],
            own_ids=[None if chosen else ids[i] for i in chosen_rows],
            checked=[checks[i] for i in chosen_rows],
        )
        refused = batch_refusal(list(zip(chosen_rows, done, strict=True)), len(rows))
        if refused is not None:
            if invalid and len(rows) > 1:
                refused.message += "; no row of the batch was run"
            raise refused
        return parsed, done


def max_batch_size(engine: Engine) -> int:
    """The most rows one infer request may carry: as many as the engine's queue holds."""
    return engine.queue.capacity


def _row_ids(base: str, chosen: bool, count: int) -> tuple[list[str], bool]:
    """The engine request IDs for a batch's rows, and whether the caller chose them.

    Rows are named after the `X-Request-ID` (the caller's, or the one made at the edge), never
    after the OIP `id`: clients may reuse that one for every request (KServe and Triton treat
    it as an opaque correlation value), and a stored row's ID must be unique. Rows of a batch
    get `.0`, `.1`, ... so each has its own."""
    if count == 1:
        return [base], chosen
    if len(base) + len(str(count - 1)) + 1 <= MAX_ID_CHARS:
        return [f"{base}.{i}" for i in range(count)], chosen
    # A caller's 64-character X-Request-ID leaves no room for row suffixes: name rows here.
    return [new_id() for _ in range(count)], False
