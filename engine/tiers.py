"""Client metadata (tier, enabled, default model) read from SQLite through a small TTL cache.

The cache keeps the metadata stage off the database for all but the first request of a client in
each TTL window; `peek` answers synchronously so the hot path only awaits on a miss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiosqlite

from storage import queries

# Lower runs first: an interactive form request overtakes a running file batch.
TIER_PRIORITY = {"interactive": 0, "standard": 1, "batch": 2}


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """One caller's tier, enabled flag and default model, as `ClientDirectory` returns it."""

    client_id: str
    display_name: str
    tier: str
    enabled: bool
    default_model: str | None

    @property
    def priority(self) -> int:
        return TIER_PRIORITY.get(self.tier, TIER_PRIORITY["standard"])


def unknown_client(client_id: str) -> ClientInfo:
    """Clients not in the table run at the standard tier; only listed clients can be disabled."""
    return ClientInfo(client_id, client_id, "standard", True, None)


class ClientDirectory:
    """The engine's TTL cache over the `clients` table; acceptance and file jobs look callers
    up in it."""

    def __init__(self, conn: aiosqlite.Connection, ttl_s: float = 30.0) -> None:
        self._conn = conn
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, ClientInfo]] = {}
        self.misses = 0

    def peek(self, client_id: str) -> ClientInfo | None:
        hit = self._cache.get(client_id)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    async def lookup(self, client_id: str) -> ClientInfo:
        cached = self.peek(client_id)
        if cached is not None:
            return cached
        self.misses += 1
        row = await queries.fetch_client(self._conn, client_id)
        info = (
            unknown_client(client_id)
            if row is None
            else ClientInfo(
                row.client_id, row.display_name, row.tier, row.enabled, row.default_model
            )
        )
        self._cache[client_id] = (time.monotonic() + self._ttl_s, info)
        return info
