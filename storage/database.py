"""Opening the database: pragmas, migrations, crash recovery, and the connections that stay open.

One writer connection (owned by `GroupCommitWriter`) and one reader connection. WAL lets the reader
page through history while the writer commits.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from storage.migrations import SchemaTooNewError, migrate
from storage.writer import GroupCommitWriter

PRAGMAS = (
    # First: several processes may open a new file at once, and switching it to WAL waits for
    # the others' locks.
    "PRAGMA busy_timeout = 5000",
    "PRAGMA journal_mode = WAL",
    # NORMAL in WAL mode survives a killed process; only a power cut can lose the last commits.
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA temp_store = MEMORY",
)

# Statuses that mean "work was under way"; after a crash they can never finish.
UNFINISHED = ("queued", "running")


class StorageError(RuntimeError):
    """The database could not be opened or used; the message is fit for a user."""


@dataclass(slots=True)
class Recovery:
    """What `open_database` found left behind by processes that died."""

    requests: int = 0
    file_jobs: int = 0
    runs: int = 0


@dataclass(slots=True)
class Database:
    path: Path
    writer: GroupCommitWriter
    reader: aiosqlite.Connection
    recovered: Recovery
    _write_conn: aiosqlite.Connection

    async def close(self) -> None:
        """Commit what is pending (awaited), then close both connections."""
        try:
            await self.writer.close()
        finally:
            await self.reader.close()
            await self._write_conn.close()


def _pid_alive(pid: int | None) -> bool:
    if pid is None or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def recover(conn: sqlite3.Connection) -> Recovery:
    """Mark work left unfinished by dead processes as interrupted.

    Only runs whose owner process is gone are touched, so a second process (the app and a CLI
    run on one file) never interrupts the other's live work.
    """
    running = conn.execute("SELECT run_id, owner_pid FROM runs WHERE status = 'running'").fetchall()
    dead = [run_id for run_id, pid in running if not _pid_alive(pid)]
    result = Recovery()
    with conn:
        for run_id in dead:
            cur = conn.execute(
                "UPDATE requests SET status = 'interrupted' "
                "WHERE status IN ('queued', 'running') AND run_id = ?",
                (run_id,),
            )
            result.requests += cur.rowcount
            cur = conn.execute(
                "UPDATE file_jobs SET status = 'interrupted' "
                "WHERE status = 'running' AND run_id = ?",
                (run_id,),
            )
            result.file_jobs += cur.rowcount
            conn.execute("UPDATE runs SET status = 'interrupted' WHERE run_id = ?", (run_id,))
            result.runs += 1
        # Requests that never belonged to a run cannot be owned by anyone alive.
        cur = conn.execute(
            "UPDATE requests SET status = 'interrupted' "
            "WHERE status IN ('queued', 'running') AND run_id IS NULL"
        )
        result.requests += cur.rowcount
    return result


def prepare(path: Path) -> Recovery:
    """Create or migrate the file and recover crashed work (blocking; run it in a thread)."""
    if path.is_dir():
        raise StorageError(f"database path {path} is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open database {path}: {exc}") from exc
    try:
        for pragma in PRAGMAS:
            conn.execute(pragma)
        migrate(conn)
        return recover(conn)
    except (sqlite3.DatabaseError, SchemaTooNewError) as exc:
        raise StorageError(f"cannot use database {path}: {exc}") from exc
    finally:
        conn.close()


async def _connect(path: Path, isolation_level: str | None) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=isolation_level)
    for pragma in PRAGMAS:
        if "journal_mode" in pragma:
            continue  # WAL is a property of the file, set once by `prepare`
        await conn.execute(pragma)
    return conn


async def open_database(path: str | os.PathLike[str], *, max_batch_rows: int = 1000) -> Database:
    """Open (creating or migrating) the database at `path` and start its writer task."""
    db_path = Path(path).expanduser().resolve()
    recovered = await asyncio.to_thread(prepare, db_path)
    try:
        # The writer's statements open a write transaction at once (see GroupCommitWriter);
        # the reader is in autocommit mode so it never holds a snapshot open between reads.
        write_conn = await _connect(db_path, "IMMEDIATE")
        reader = await _connect(db_path, None)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {db_path}: {exc}") from exc
    writer = GroupCommitWriter(write_conn, max_rows=max_batch_rows)
    writer.start()
    return Database(db_path, writer, reader, recovered, write_conn)
