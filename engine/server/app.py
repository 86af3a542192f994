"""The FastAPI application: the lifespan that starts the engine, and thin routes over the
dataplane for `/predict`, health, readiness and models (the OIP routes are in `oip.routes`).

`/predict` hands the raw body (capped) to the engine, which validates it before any database or
model work and stores even a rejection, so a caller's bad request is visible in the history like
any other. Every response carries the request ID and trace context (see `edge`); a prediction's
response also lists its stage spans in `Server-Timing`. The OpenAPI document is built from the
model registry (see `openapi`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from engine.contracts import ErrorEnvelope, PredictRequest, PredictResponse
from engine.models import ModelRegistry
from engine.pipeline import EngineConfig, Origin
from engine.runs import begin_run, end_run
from engine.server.dataplane import NOT_READY, DataPlane
from engine.server.edge import Edge
from engine.server.errors import Refusal, answer, is_oip_path, json_response
from engine.server.metrics import CONTENT_TYPE_LATEST, ServiceMetrics, resident_bytes
from engine.server.oip.routes import add_oip_routes
from engine.server.oip.statistics import ModelStatistics
from engine.server.openapi import ERROR_RESPONSES, InferDeckAPI, ModelInfo, ModelList
from engine.server.predict_route import predict_response
from engine.server.state import Running
from engine.server.telemetry import tracing_from_env
from engine.startup import started_engine
from engine.work import FutureSink

__all__ = ["ModelInfo", "ServerSettings", "asgi_app", "create_app"]

log = logging.getLogger(__name__)


@dataclass
class ServerSettings:
    """How `inferdeck serve` (and tests) configure the service: database, models, limits."""

    db_path: Path
    models_dirs: tuple[Path, ...] = ()
    max_body_bytes: int = 1 << 20
    metrics: bool = True  # `GET /metrics` (Prometheus); `serve --no-metrics` turns it off
    # A short queue: a network caller would rather hear "503, retry" than wait behind
    # thousands of requests (4096 is the engine's default, sized for file jobs).
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(queue_capacity=512))


def create_app(settings: ServerSettings) -> FastAPI:
    """The FastAPI app over one dataplane (`app.state.dataplane`), whose lifespan starts the
    engine; `asgi_app` wraps it in the edge layer for uvicorn."""
    # Manifests only (no torch): the OpenAPI document knows the models before start-up, and
    # the lifespan loads these same models.
    registry = ModelRegistry.discover(*settings.models_dirs)
    plane = DataPlane(settings.max_body_bytes)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The models load and warm before /ready says yes; on the way out in-flight requests
        # finish and their rows are committed before the database closes.
        # Made here, in the worker (see engine.server.prefork): a parent's gauges would count
        # as a live process of its own.
        metrics = plane.metrics = ServiceMetrics(registry.names()) if settings.metrics else None
        tracing = plane.tracing = tracing_from_env()
        async with started_engine(settings.db_path, registry, settings.engine) as engine:
            # A model that failed to load has left the registry: document the ones that serve.
            _app.openapi_schema = None
            run = await begin_run(engine.db, "serve", {"models": registry.names()})
            origin = Origin(run, FutureSink(), "http", "http")
            # `serve --workers N`: the table the parent shared before forking (see prefork).
            table = getattr(_app.state, "statistics_table", None)
            statistics = ModelStatistics(registry.names(), settings.engine.max_batch, table)
            engine.on_finished(statistics.record)
            refresher = None
            if metrics is not None:
                engine.on_finished(metrics.record)
                metrics.set_ready(registry.names(), True)
                refresher = asyncio.create_task(
                    metrics.refresh_forever(lambda: len(engine.queue) + engine.in_flight)
                )
            plane.running = Running(engine, engine.db, run, origin, statistics)
            log.info(
                "ready: models %s, database %s, resident memory %d MB",
                registry.names(),
                settings.db_path,
                resident_bytes() >> 20,
            )
            try:
                yield
            finally:
                plane.running = None
                if metrics is not None and refresher is not None:
                    metrics.set_ready(registry.names(), False)
                    refresher.cancel()
                if tracing is not None:
                    plane.tracing = None
                    await asyncio.to_thread(tracing.shutdown)  # the last spans go out
                await engine.stop()  # drained first, so the run's summary counts every row
                await end_run(engine.db, run)

    app = InferDeckAPI(
        registry,
        title="InferDeck",
        summary="Model inference with request IDs, stage traces and a stored history.",
        version="1",
        lifespan=lifespan,
    )
    app.state.dataplane = plane
    app.state.registry = registry

    @app.post(
        "/predict",
        responses={200: {"model": PredictResponse}, **ERROR_RESPONSES},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
            }
        },
    )
    async def predict(request: Request) -> Response:
        """Run one prediction. The response arrives once its row is committed."""
        state = request.state
        work = await plane.predict(request.receive, state.request_id, state.caller_chose_id)
        state.model = work.model_name
        state.works = [work]
        return predict_response(work)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": ErrorEnvelope}})
    async def ready() -> Response:
        """Models loaded and warm, database reachable, and a request could be stored now."""
        names = await plane.ready(probe_database=True)
        return json_response({"status": "ready", "models": names})

    @app.get("/models", responses={200: {"model": ModelList}, 503: ERROR_RESPONSES[503]})
    async def models() -> Response:
        """The loaded models with their input schemas and output labels."""
        return json_response({"models": plane.models()})

    @app.get(
        "/models/{name}",
        responses={
            200: {"model": ModelInfo},
            404: ERROR_RESPONSES[404],
            503: ERROR_RESPONSES[503],
        },
    )
    async def one_model(request: Request, name: str) -> Response:
        """One loaded model: 200 once it is loaded and warm (a "model ready" probe), else 404."""
        _live, found = plane.model(name)
        if found is None:
            raise plane.unknown_model(name)
        request.state.model = found.name
        return json_response(plane.describe(found))

    # Errors outside any route: under /v2 in the Open Inference Protocol's shape, since an OIP
    # client reads `{"error": "<message>"}` there; everywhere else in this service's envelope.

    @app.exception_handler(Refusal)
    async def refused(request: Request, exc: Refusal) -> Response:
        return answer(request.url.path, exc, request.state.request_id)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        path = request.url.path
        message = str(exc.detail)
        if is_oip_path(path):
            message = {
                404: f"no such endpoint: {path}",
                405: f"{request.method} is not allowed on {path}",
            }.get(exc.status_code, message)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = answer(path, Refusal(code, message, exc.status_code), request.state.request_id)
        response.headers.update(exc.headers or {})  # a 405's `Allow`
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        refusal = Refusal("validation_error", "invalid request")
        return answer(request.url.path, refusal, request.state.request_id)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("request %s failed", request.state.request_id)
        refusal = Refusal("internal", "internal error")
        return answer(request.url.path, refusal, request.state.request_id)

    if settings.metrics:

        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics() -> Response:
            """Prometheus' text format: every worker's figures (see `metrics`)."""
            metrics = plane.metrics
            if metrics is None:
                raise Refusal("not_ready", NOT_READY)
            return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    add_oip_routes(app, plane)
    return app


def asgi_app(settings: ServerSettings) -> Edge:
    """The service as uvicorn runs it: the FastAPI app inside the edge layer, so even a
    crash's 500 carries the request ID and trace context."""
    app = create_app(settings)
    # The edge answers `POST /predict` itself, past FastAPI's stack (see predict_route).
    return Edge(app, settings.max_body_bytes, cast(DataPlane, app.state.dataplane))
