"""The reference HTTP service (`inferdeck serve`): FastAPI over the same engine and storage.

The async layer coordinates requests and I/O; inference stays behind the engine's executor.
"""

from engine.server.app import ServerSettings, asgi_app, create_app

__all__ = ["ServerSettings", "asgi_app", "create_app"]
