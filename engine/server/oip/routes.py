"""The OIP v2 endpoints: HTTP in, dataplane calls, OIP's JSON out.

Every model endpoint comes in a pair, on the model's path and on one version's path
(`/v2/models/{model_name}` and `/v2/models/{model_name}/versions/{model_version}`), so each is
written once and mounted twice. A refusal (not ready, unknown model or version, a bad body) is
raised and answered by the app's handler in OIP's `{"error": ...}` shape.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from engine.models.runtime import LoadedModel
from engine.server.dataplane import DataPlane, max_batch_size
from engine.server.errors import RETRY_AFTER_S, Refusal, json_response
from engine.server.oip.binary import HEADER
from engine.server.oip.infer_route import lookup as find_model
from engine.server.oip.infer_route import run_infer
from engine.server.oip.schema import (
    OIP_ERRORS,
    OipInferenceResponse,
    OipModelMetadata,
    model_config,
    model_metadata,
)
from engine.server.state import Running

# The protocol's extensions that are served whole (Triton's names).
EXTENSIONS = ["model_configuration", "statistics"]
MODEL_PATH = "/v2/models/{model_name}"
VERSION_PATH = "/v2/models/{model_name}/versions/{model_version}"

# A model endpoint's work, given the model's name and the version asked for (None: any).
ModelHandler = Callable[[Request, str, str | None], Awaitable[Response]]


def _server_version() -> str:
    try:
        return importlib.metadata.version("inferdeck")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0"


def _add_model_routes(
    app: FastAPI,
    method: str,
    suffix: str,
    handler: ModelHandler,
    names: tuple[str, str],
    descriptions: tuple[str, str],
    responses: dict[int | str, dict[str, Any]],
) -> None:
    """Mount `handler` on the model's path and on one version's path (+ `suffix`). `names`
    and `descriptions` are each route's, unversioned first (the OpenAPI operation IDs and
    summaries come from the names)."""

    async def any_version(request: Request, model_name: str) -> Response:
        return await handler(request, model_name, None)

    async def one_version(request: Request, model_name: str, model_version: str) -> Response:
        return await handler(request, model_name, model_version)

    endpoints: tuple[Callable[..., Awaitable[Response]], ...] = (any_version, one_version)
    for path, endpoint, name, description in zip(
        (MODEL_PATH + suffix, VERSION_PATH + suffix),
        endpoints,
        names,
        descriptions,
        strict=True,
    ):
        app.add_api_route(
            path,
            endpoint,
            methods=[method],
            name=name,
            description=description,
            tags=["oip"],
            responses=responses,
        )


def add_oip_routes(app: FastAPI, plane: DataPlane) -> None:
    """Mount the OIP v2 endpoints on `app`, over `plane`."""
    version = _server_version()
    lookup_docs: dict[int | str, dict[str, Any]] = {c: OIP_ERRORS[c] for c in (404, 503)}
    metadata_docs: dict[int | str, dict[str, Any]] = {
        200: {"model": OipModelMetadata},
        **lookup_docs,
    }
    infer_docs: dict[int | str, dict[str, Any]] = {
        200: {"model": OipInferenceResponse},
        **OIP_ERRORS,
    }

    def lookup(
        request: Request, name: str, model_version: str | None
    ) -> tuple[Running, LoadedModel]:
        live, model = find_model(plane, name, model_version)
        request.state.model = model.name
        return live, model

    @app.get("/v2", tags=["oip"])
    async def server_metadata() -> Response:
        """OIP server metadata."""
        return json_response({"name": "inferdeck", "version": version, "extensions": EXTENSIONS})

    @app.get("/v2/health/live", tags=["oip"])
    async def server_live() -> Response:
        """OIP liveness: the process answers."""
        return json_response({"live": True})

    @app.get("/v2/health/ready", tags=["oip"])
    async def server_ready() -> Response:
        """OIP readiness: models loaded and warm, and requests can be stored (as `/ready`)."""
        try:
            await plane.ready(probe_database=False)
        except Refusal:
            return json_response({"ready": False}, 503, {"Retry-After": str(RETRY_AFTER_S)})
        return json_response({"ready": True})

    async def metadata(request: Request, model_name: str, model_version: str | None) -> Response:
        live, model = lookup(request, model_name, model_version)
        return json_response(model_metadata(model, max_batch_size(live.engine)))

    # Before the model's own path: `/v2/models/stats` is not a model called "stats".
    @app.get("/v2/models/stats", tags=["oip"])
    async def all_statistics() -> Response:
        """The statistics extension for every model served (`statistics.ModelStatistics`)."""
        live = plane.live()
        registry = live.engine.registry
        models = [registry.models[name] for name in registry.names()]
        stats = [live.statistics.model_json(m.name, m.version) for m in models]
        return json_response({"model_stats": stats})

    async def statistics(request: Request, model_name: str, model_version: str | None) -> Response:
        live, model = lookup(request, model_name, model_version)
        return json_response(
            {"model_stats": [live.statistics.model_json(model.name, model.version)]}
        )

    async def config(request: Request, model_name: str, model_version: str | None) -> Response:
        live, model = lookup(request, model_name, model_version)
        return json_response(model_config(model, max_batch_size(live.engine)))

    @app.post("/v2/repository/index", tags=["oip"])
    async def repository_index() -> Response:
        """The models served, each with its version and state (read-only: models are added
        in the models folder the service starts with, not through it). Every model listed is loaded
        and ready; a folder that failed its checks is not served."""
        registry = plane.live().engine.registry
        models = [registry.models[name] for name in registry.names()]
        return json_response(
            [{"name": m.name, "version": m.version, "state": "READY"} for m in models]
        )

    async def ready(request: Request, model_name: str, model_version: str | None) -> Response:
        _live, model = lookup(request, model_name, model_version)
        return json_response({"name": model.name, "ready": True})

    async def infer(request: Request, model_name: str, model_version: str | None) -> Response:
        live, model = lookup(request, model_name, model_version)
        binary = request.headers.get(HEADER)
        return await run_infer(plane, live, model, request.receive, binary, request.scope["state"])

    # The stats route for all models is declared above, so it comes before this one.
    _add_model_routes(
        app,
        "GET",
        "",
        metadata,
        ("model_metadata_route", "model_version_metadata"),
        (
            "OIP model metadata: the tensors the model takes and gives.",
            "OIP model metadata for one version.",
        ),
        metadata_docs,
    )
    _add_model_routes(
        app,
        "GET",
        "/stats",
        statistics,
        ("model_statistics", "model_version_statistics"),
        (
            "OIP statistics (Triton's shape): counts and times per stage, per batch size.",
            "OIP statistics for one version.",
        ),
        lookup_docs,
    )
    _add_model_routes(
        app,
        "GET",
        "/config",
        config,
        ("model_config", "model_version_config"),
        (
            "OIP model configuration (Triton's shape): batch limit, input and output tensors.",
            "OIP model configuration for one version.",
        ),
        lookup_docs,
    )
    _add_model_routes(
        app,
        "GET",
        "/ready",
        ready,
        ("model_ready", "model_version_ready"),
        ("OIP model readiness.", "OIP model readiness for one version."),
        lookup_docs,
    )
    _add_model_routes(
        app,
        "POST",
        "/infer",
        infer,
        ("model_infer", "model_version_infer"),
        (
            "OIP inference: tensors in; out, a classifier's `label` and `scores` tensors or "
            "a regressor's one tensor per output (see the model metadata).",
            "OIP inference against one version.",
        ),
        infer_docs,
    )
