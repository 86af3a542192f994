"""The `clients` table: callers with a tier, an enabled flag and a default model."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

UPSERT_CLIENT = (
    "INSERT INTO clients (client_id, display_name, tier, enabled, default_model) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(client_id) DO UPDATE SET "
    "display_name = excluded.display_name, "
    "tier = excluded.tier, enabled = excluded.enabled, default_model = excluded.default_model"
)


@dataclass(frozen=True, slots=True)
class ClientRow:
    """One `clients` row: a caller's tier and default model, read by `engine.tiers`."""

    client_id: str
    display_name: str
    tier: str
    enabled: bool
    default_model: str | None


async def fetch_client(conn: aiosqlite.Connection, client_id: str) -> ClientRow | None:
    async with conn.execute(
        "SELECT client_id, display_name, tier, enabled, default_model FROM clients "
        "WHERE client_id = ?",
        (client_id,),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return ClientRow(row[0], row[1], row[2], bool(row[3]), row[4])
