"""What the service's lifespan builds and its routes read: the running engine and database.

Its own module so the `/predict` routes and the OIP routes share it without importing each
other.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from engine.engine import Engine, Origin
from engine.stats import RunRecorder
from storage.database import Database


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


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` (a chunked body has no length to check first;
    the edge layer already refused a declared length over it)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
