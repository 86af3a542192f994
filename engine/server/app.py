"""The FastAPI application: lifespan-managed engine, `/predict`, health, readiness and models.

`/predict` reads the raw body (capped) and hands it to the engine, which validates it before
any database or model work and stores even a rejection, so a caller's bad request is visible
in the history like any other. Every response carries the request ID and trace context (see
`edge`); a prediction's response also lists its stage spans in `Server-Timing`.

The OpenAPI document is built from the model registry: each model's manifest schema is a named
component, and `/predict`'s body is one of the per-model requests, told apart by `model`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, create_model
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException
from starlette.responses import Response

from engine.contracts import ErrorEnvelope, PredictRequest, PredictResponse
from engine.models import ModelRegistry
from engine.models.runtime import LoadedModel
from engine.pipeline import EngineConfig, Origin
from engine.runs import begin_run, end_run
from engine.server.edge import Edge
from engine.server.errors import json_response, simple
from engine.server.oip import add_oip_routes, document_infer_body, error_response, is_oip_path
from engine.server.predict_route import predict as predict_work
from engine.server.predict_route import predict_response
from engine.server.state import Running, read_body, running
from engine.startup import started_engine
from engine.work import FutureSink

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope, "description": what}
    for code, what in (
        (404, "unknown model"),
        (409, "request_id already used"),
        (413, "body too large"),
        (422, "invalid request: per-field details"),
        (500, "internal error (no internals are shown)"),
        (503, "overloaded (with Retry-After) or not ready"),
    )
}
SCHEMA_REF = "#/components/schemas/{model}"


class ModelInfo(BaseModel):
    """One loaded model as `GET /models` and `GET /models/{name}` describe it."""

    name: str
    version: str
    task: str
    description: str
    labels: list[str]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]


class ModelList(BaseModel):
    models: list[ModelInfo]


def model_info(model: LoadedModel) -> dict[str, Any]:
    """`ModelInfo`'s shape: the manifest's input schema, and what `outputs` will hold."""
    labels = model.labels
    return {
        "name": model.name,
        "version": model.version,
        "task": model.manifest.task,
        "description": model.manifest.description,
        "labels": labels,
        "input_schema": model.inputs.model_json_schema(),
        "output_schema": {
            "type": "object",
            "properties": {
                "label": {"type": "string", "enum": labels},
                "scores": {
                    "type": "object",
                    "properties": {label: {"type": "number"} for label in labels},
                    "required": labels,
                    "additionalProperties": False,
                },
            },
            "required": ["label", "scores"],
        },
    }


def request_model(model: LoadedModel) -> type[PredictRequest]:
    """The request contract narrowed to one model: `model` is its name, `input_payload` its
    manifest's input fields. Documentation only: `/predict` validates the generic contract
    and then the payload, so an error names `input_payload.<field>` either way."""
    name_type: Any = Literal[model.name]  # a runtime value: pydantic reads it, mypy need not
    created: type[PredictRequest] = create_model(
        f"{model.inputs.__name__.removesuffix('Inputs')}PredictRequest",
        __base__=PredictRequest,
        __doc__=f"A prediction request for model {model.name!r} (version {model.version}).",
        model=(name_type, ...),
        input_payload=(model.inputs, ...),
    )
    return created


def document_models(document: dict[str, Any], registry: ModelRegistry) -> None:
    """Add each model's input and request schemas to an OpenAPI `document` as components, and
    make `/predict`'s body a `oneOf` of the requests with `model` as the discriminator."""
    document_infer_body(document, SCHEMA_REF)
    requests = {name: request_model(registry.models[name]) for name in registry.names()}
    if not requests:  # no models: the generic contract from the route stays
        return
    refs, top = models_json_schema(
        [(r, "validation") for r in requests.values()], ref_template=SCHEMA_REF
    )
    document.setdefault("components", {}).setdefault("schemas", {}).update(top.get("$defs", {}))
    mapping = {name: refs[(r, "validation")]["$ref"] for name, r in requests.items()}
    schema = {
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "model", "mapping": mapping},
    }
    operation = document["paths"]["/predict"]["post"]
    operation["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": schema}},
    }


class InferDeckAPI(FastAPI):
    """FastAPI whose OpenAPI document carries the registry's per-model schemas."""

    def __init__(self, registry: ModelRegistry, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registry = registry

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = super().openapi()  # cached by FastAPI in `openapi_schema`
            document_models(document, self.registry)
        return self.openapi_schema or {}


@dataclass
class ServerSettings:
    db_path: Path
    models_dirs: tuple[Path, ...] = ()
    max_body_bytes: int = 1 << 20
    # A short queue: a network caller would rather hear "503, retry" than wait behind
    # thousands of requests (4096 is the engine's default, sized for file jobs).
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(queue_capacity=512))


def create_app(settings: ServerSettings) -> FastAPI:
    # Manifests only (no torch): the OpenAPI document knows the models before start-up, and
    # the lifespan loads these same models.
    registry = ModelRegistry.discover(*settings.models_dirs)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The models load and warm before /ready says yes; on the way out in-flight requests
        # finish and their rows are committed before the database closes.
        async with started_engine(settings.db_path, registry, settings.engine) as engine:
            # A model that failed to load has left the registry: document the ones that serve.
            _app.openapi_schema = None
            run = await begin_run(engine.db, "serve", {"models": registry.names()})
            origin = Origin(run, FutureSink(), "http", "http")
            _app.state.running = Running(engine, engine.db, run, origin)
            log.info("ready: models %s, database %s", registry.names(), settings.db_path)
            try:
                yield
            finally:
                _app.state.running = None
                await engine.stop()  # drained first, so the run's summary counts every row
                await end_run(engine.db, run)

    app = InferDeckAPI(
        registry,
        title="InferDeck",
        summary="Model inference with request IDs, stage traces and a stored history.",
        version="1",
        lifespan=lifespan,
    )
    app.state.running = None

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
        request_id: str = request.state.request_id
        live = running(request)
        if live is None:
            return simple("not_ready", "models are still loading", request_id)
        body = await read_body(request, settings.max_body_bytes)
        if body is None:
            limit = settings.max_body_bytes
            return simple("body_too_large", f"the body is over {limit:,} bytes", request_id)
        work = await predict_work(live, body, request_id, request.state.caller_chose_id)
        request.state.model = work.model_name
        return predict_response(work)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": ErrorEnvelope}})
    async def ready(request: Request) -> Response:
        """Models loaded and warm, database reachable, and a request could be stored now."""
        live = running(request)
        if live is None:
            return simple("not_ready", "models are still loading", request.state.request_id)
        try:
            async with asyncio.timeout(2):
                await live.db.reader.execute("SELECT 1")
        except Exception as exc:  # any failure to answer means not ready
            log.warning("readiness: database check failed: %s", exc)
            return simple("not_ready", "the database is not reachable", request.state.request_id)
        problem = await live.engine.storage_problem()
        if problem is not None:
            return simple("not_ready", problem, request.state.request_id)
        return json_response({"status": "ready", "models": live.engine.registry.names()})

    # Each model's description, made once: `GET /models/{name}` is a remote prober's
    # "model ready" check, asked every few seconds.
    described: dict[str, dict[str, Any]] = {}

    def describe(model: LoadedModel) -> dict[str, Any]:
        info = described.get(model.name)
        if info is None:
            info = described[model.name] = model_info(model)
        return info

    @app.get("/models", responses={200: {"model": ModelList}, 503: ERROR_RESPONSES[503]})
    async def models(request: Request) -> Response:
        """The loaded models with their input schemas and output labels."""
        live = running(request)
        if live is None:
            return simple("not_ready", "models are still loading", request.state.request_id)
        registry = live.engine.registry
        return json_response({"models": [describe(registry.models[n]) for n in registry.names()]})

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
        live = running(request)
        if live is None:
            return simple("not_ready", "models are still loading", request.state.request_id)
        found = live.engine.registry.get(name)
        if found is None:
            known = ", ".join(live.engine.registry.names())
            return simple(
                "unknown_model", f"unknown model {name!r} (have: {known})", request.state.request_id
            )
        request.state.model = found.name
        return json_response(describe(found))

    # Errors outside any route: under /v2 in the Open Inference Protocol's shape, since an OIP
    # client reads `{"error": "<message>"}` there; everywhere else in this service's envelope.

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        path = request.url.path
        if is_oip_path(path):
            message = {
                404: f"no such endpoint: {path}",
                405: f"{request.method} is not allowed on {path}",
            }.get(exc.status_code, str(exc.detail))
            response = error_response(message, exc.status_code)
        else:
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
            response = simple(code, str(exc.detail), request.state.request_id)
            response.status_code = exc.status_code
        response.headers.update(exc.headers or {})  # a 405's `Allow`
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if is_oip_path(request.url.path):
            return error_response("invalid request", 400)
        return simple("validation_error", "invalid request", request.state.request_id)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("request %s failed", request.state.request_id)
        if is_oip_path(request.url.path):
            return error_response("internal error", 500)
        return simple("internal", "internal error", request.state.request_id)

    add_oip_routes(app, settings.max_body_bytes)
    return app


def asgi_app(settings: ServerSettings) -> Edge:
    """The service as uvicorn runs it: the FastAPI app inside the edge layer, so even a
    crash's 500 carries the request ID and trace context."""
    app = create_app(settings)
    # The edge answers `POST /predict` itself, past FastAPI's stack (see predict_route).
    return Edge(app, settings.max_body_bytes, lambda: cast(Running | None, app.state.running))
