"""The `requests` table: its columns, the writer's upsert and probe rows, and reads by ID.

Writes are statements handed to `GroupCommitWriter`; reads run on the reader connection. The
Requests view's filtered pages are `storage.queries.request_search`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite

REQUEST_COLUMNS = (
    "request_id",
    "run_id",
    "job_id",
    "source_row",
    "source",
    "target",
    "model",
    "client_id",
    "status",
    "created_us",
    "finished_us",
    "latency_us",
    "input",
    "metadata",
    "output",
    "error",
    "spans",
)

# A request's row, written once, or twice for a request acknowledged before its result (first
# `queued`, then the result). A row whose ID is already stored replaces it only when it is
# - the same request moving on from `queued`/`running` (same run, same creation time), or
# - a request that was accepted, taking the ID from a stored rejection (the caller was refused,
#   so the ID was never acknowledged, and may be sent again with the mistake fixed).
# Anything else is declined (it changes no row): a row that was acknowledged is never
# overwritten, whichever process writes. `requests_not_stored` tells which rows were declined.
UPSERT_REQUEST = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)}) "
    "ON CONFLICT(request_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in REQUEST_COLUMNS[1:])
    + " WHERE (requests.status IN ('queued', 'running') AND requests.run_id IS excluded.run_id"
    " AND requests.created_us = excluded.created_us)"
    " OR (requests.status = 'rejected' AND excluded.status <> 'rejected')"
)
_ID, _RUN, _STATUS, _CREATED = (
    REQUEST_COLUMNS.index(c) for c in ("request_id", "run_id", "status", "created_us")
)
# A request-sized row that `GroupCommitWriter.try_write` writes and removes in one transaction:
# "can a request be stored now" asked of the database itself.
PROBE_REQUEST = (
    "INSERT INTO requests (request_id, source, status, created_us, input) "
    "VALUES (?, 'probe', 'rejected', 0, ?)"
)
UNDO_PROBE_REQUEST = "DELETE FROM requests WHERE request_id = ?"


# Whether a stored request holds an ID: any row but a rejection (see `UPSERT_REQUEST`: an
# accepted request may take a rejected request's ID).
REQUEST_ID_HELD = "SELECT 1 FROM requests WHERE request_id = ? AND status <> 'rejected' LIMIT 1"


async def request_id_held(conn: aiosqlite.Connection, request_id: str) -> bool:
    """Whether a stored request holds `request_id` (`REQUEST_ID_HELD`), on the reader's thread;
    `storage.database.Database.request_id_held_now` asks without leaving the caller's."""
    rows = await conn.execute_fetchall(REQUEST_ID_HELD, (request_id,))
    return bool(rows)


async def requests_not_stored(conn: aiosqlite.Connection, rows: list[Sequence[Any]]) -> set[int]:
    """The positions in `rows` (`UPSERT_REQUEST` rows just run on `conn`) of those it declined:
    the row stored under their ID is another request's (another run, time or status)."""
    stored: dict[str, tuple[Any, ...]] = {}
    ids = list(dict.fromkeys(row[_ID] for row in rows))
    for start in range(0, len(ids), 500):  # well under SQLite's limit on bound parameters
        chunk = ids[start : start + 500]
        async with conn.execute(
            "SELECT request_id, run_id, status, created_us FROM requests "
            f"WHERE request_id IN ({', '.join('?' for _ in chunk)})",
            chunk,
        ) as cur:
            for found in await cur.fetchall():
                stored[found[0]] = tuple(found[1:])
    return {
        i
        for i, row in enumerate(rows)
        if stored.get(row[_ID]) != (row[_RUN], row[_STATUS], row[_CREATED])
    }


def request_row(r: Any) -> dict[str, Any]:
    """A `requests` row read as `id` then `REQUEST_COLUMNS`, as the dict the views page."""
    return {"id": r[0], **dict(zip(REQUEST_COLUMNS, tuple(r)[1:], strict=True))}


async def get_request(conn: aiosqlite.Connection, request_id: str) -> dict[str, Any] | None:
    """One request by its ID, in the shape `page_requests` returns (a trace to open)."""
    async with conn.execute(
        f"SELECT id, {', '.join(REQUEST_COLUMNS)} FROM requests WHERE request_id = ?",
        (request_id,),
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else request_row(row)
