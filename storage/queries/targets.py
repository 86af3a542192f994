"""The `targets` and `probes` tables: remote targets (config without secrets) and their
health probes, pruned to the newest few per target.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

# Remote targets (migration 6). `config` is the target's JSON with no secrets in it.
INSERT_TARGET = (
    "INSERT INTO targets (name, config, created_us, updated_us) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(name) DO NOTHING"
)
UPDATE_TARGET = "UPDATE targets SET config = ?, updated_us = ? WHERE name = ?"
DELETE_TARGET = "DELETE FROM targets WHERE name = ?"
DELETE_TARGET_PROBES = "DELETE FROM probes WHERE target = ?"
INSERT_PROBE = (
    "INSERT INTO probes (target, at_us, kind, status_code, ok, latency_us, error, state) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# Keeps the newest `keep` probes of a target (params: target, keep). Run now and then, not per
# insert: one indexed walk to the cut-off, then a range delete on the same index.
PRUNE_PROBES = (
    "DELETE FROM probes WHERE target = ?1 AND at_us < ("
    "SELECT at_us FROM probes WHERE target = ?1 ORDER BY at_us DESC LIMIT 1 OFFSET ?2 - 1)"
)


@dataclass(frozen=True, slots=True)
class TargetRow:
    """One `targets` row (config as JSON), read by `engine.remote.target_store`."""

    name: str
    config: str  # JSON
    created_us: int
    updated_us: int


@dataclass(frozen=True, slots=True)
class ProbeRow:
    """One health probe of a target, read by the prober's history and the status timeline."""

    target: str
    at_us: int
    kind: str
    status_code: int | None
    ok: bool
    latency_us: int
    error: str | None
    state: str | None


async def fetch_target(conn: aiosqlite.Connection, name: str) -> TargetRow | None:
    async with conn.execute(
        "SELECT name, config, created_us, updated_us FROM targets WHERE name = ?", (name,)
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else TargetRow(str(row[0]), str(row[1]), int(row[2]), int(row[3]))


async def list_targets(conn: aiosqlite.Connection) -> list[TargetRow]:
    async with conn.execute(
        "SELECT name, config, created_us, updated_us FROM targets ORDER BY name"
    ) as cur:
        rows = await cur.fetchall()
    return [TargetRow(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]


async def recent_probes(
    conn: aiosqlite.Connection, target: str, limit: int = 1000, since_us: int | None = None
) -> list[ProbeRow]:
    """A target's newest probes (at most `limit`, optionally from `since_us` on), oldest first."""
    async with conn.execute(
        "SELECT target, at_us, kind, status_code, ok, latency_us, error, state FROM probes "
        "WHERE target = ? AND at_us >= ? ORDER BY at_us DESC, id DESC LIMIT ?",
        (target, since_us if since_us is not None else 0, limit),
    ) as cur:
        rows = list(await cur.fetchall())
    rows.reverse()
    return [
        ProbeRow(str(r[0]), int(r[1]), str(r[2]), r[3], bool(r[4]), int(r[5]), r[6], r[7])
        for r in rows
    ]


async def probe_count(conn: aiosqlite.Connection, target: str) -> int:
    async with conn.execute("SELECT count(*) FROM probes WHERE target = ?", (target,)) as cur:
        row = await cur.fetchone()
    return 0 if row is None else int(row[0])
