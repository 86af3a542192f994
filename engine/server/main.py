"""The entry point uvicorn imports in each worker process: settings come from the environment
(`inferdeck serve` sets them), since `--workers N` starts processes that share no objects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.models import ModelRegistry
from engine.models.runtime import set_torch_threads
from engine.server.app import ServerSettings, asgi_app
from engine.server.edge import Edge
from engine.server.oip.statistics import StatisticsTable
from engine.server.protocol import ENV_BODY_TIMEOUT, ENV_HEADER_TIMEOUT

__all__ = [
    "ENV_BODY_TIMEOUT",
    "ENV_DB",
    "ENV_HEADER_TIMEOUT",
    "ENV_MAX_BODY",
    "ENV_METRICS",
    "ENV_MODELS",
    "app_from_env",
    "preloaded_app",
    "settings_from_env",
]

ENV_DB = "INFERDECK_SERVE_DB"
ENV_MODELS = "INFERDECK_SERVE_MODELS_DIR"
ENV_MAX_BODY = "INFERDECK_SERVE_MAX_BODY"
ENV_METRICS = "INFERDECK_SERVE_METRICS"


def settings_from_env() -> ServerSettings:
    models = os.environ.get(ENV_MODELS)
    return ServerSettings(
        db_path=Path(os.environ[ENV_DB]),
        models_dirs=(Path(models),) if models else (),
        max_body_bytes=int(os.environ.get(ENV_MAX_BODY, 1 << 20)),
        metrics=os.environ.get(ENV_METRICS, "1") != "0",
    )


def app_from_env() -> Edge:
    return asgi_app(settings_from_env())


def preloaded_app(workers: int) -> Edge:
    """The app with every model already loaded and warm, for the parent of `workers` forked
    workers (`serve --workers N`): they share those pages instead of each loading its own, and
    one OIP statistics table (`app.app.state.statistics_table`; each worker claims a block)."""
    settings = settings_from_env()
    app = asgi_app(settings)
    fastapi_app: Any = app.app
    registry: ModelRegistry = fastapi_app.state.registry
    if settings.engine.torch_threads is not None:
        set_torch_threads(settings.engine.torch_threads)  # before any op: no pool to fork
    registry.load_all()
    fastapi_app.state.statistics_table = StatisticsTable(
        registry.names(), settings.engine.max_batch, workers
    )
    return app
