"""What the service's lifespan builds and its routes read: the running engine and database.

Its own module so the `/predict` routes and the OIP routes share it without importing each
other.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.types import Receive

from engine.pipeline import Engine, Origin
from engine.stats import RunRecorder
from storage.database import Database

# Set in a request's scope state by the HTTP protocol when its client did not send the body
# in time (the connection is closed; the route reading the body sees a disconnect).
CLIENT_TIMEOUT = "client_timeout"


@dataclass
class Running:
    """Absent until models are warm and the database is open."""

    engine: Engine
    db: Database
    run: RunRecorder
    origin: Origin


def running(request: Request) -> Running | None:
    """The engine and its database once the lifespan has them ready; None before and after."""
    value: Running | None = request.app.state.running
    return value


async def receive_body(receive: Receive, limit: int) -> bytes | None:
    """The request body from ASGI messages, or None once it passes `limit` or the caller
    disconnects (a chunked body has no length to check first; the edge layer already refused
    a declared length over it)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


async def read_body(request: Request, limit: int) -> bytes | None:
    """`receive_body` for a route's request."""
    return await receive_body(request.receive, limit)
