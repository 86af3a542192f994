"""The entry point uvicorn imports in each worker process: settings come from the environment
(`inferdeck serve` sets them), since `--workers N` starts processes that share no objects."""

from __future__ import annotations

import os
from pathlib import Path

from engine.server.app import ServerSettings, asgi_app
from engine.server.edge import Edge
from engine.server.protocol import ENV_BODY_TIMEOUT, ENV_HEADER_TIMEOUT

__all__ = [
    "ENV_BODY_TIMEOUT",
    "ENV_DB",
    "ENV_HEADER_TIMEOUT",
    "ENV_MAX_BODY",
    "ENV_MODELS",
    "app_from_env",
    "settings_from_env",
]

ENV_DB = "INFERDECK_SERVE_DB"
ENV_MODELS = "INFERDECK_SERVE_MODELS_DIR"
ENV_MAX_BODY = "INFERDECK_SERVE_MAX_BODY"


def settings_from_env() -> ServerSettings:
    models = os.environ.get(ENV_MODELS)
    return ServerSettings(
        db_path=Path(os.environ[ENV_DB]),
        models_dirs=(Path(models),) if models else (),
        max_body_bytes=int(os.environ.get(ENV_MAX_BODY, 1 << 20)),
    )


def app_from_env() -> Edge:
    return asgi_app(settings_from_env())
