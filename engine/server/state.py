"""What the service's lifespan builds and its dataplane reads: the running engine and database.

Its own module so the dataplane, the routes and the HTTP protocol share it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.pipeline import Engine, Origin
from engine.server.oip.statistics import ModelStatistics
from engine.stats import RunRecorder
from storage.database import Database

# Set in a request's scope state by the HTTP protocol when its client did not send the body
# in time (the connection is closed; the route reading the body sees a disconnect).
CLIENT_TIMEOUT = "client_timeout"


@dataclass
class Running:
    """The engine, database, serve run and origin of a started service: the lifespan makes it
    once models are warm and the database is open, and `DataPlane.running` holds it."""

    engine: Engine
    db: Database
    run: RunRecorder
    origin: Origin
    statistics: ModelStatistics  # the OIP statistics extension's figures
