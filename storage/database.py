"""Opening the database: pragmas, migrations, crash recovery, and the connections that stay open.

One writer connection (owned by `GroupCommitWriter`) and one reader connection. WAL lets the reader
page through history while the writer commits.

The files of an open database must never be opened by anything but SQLite in this process.
SQLite's locks are POSIX advisory locks, which belong to the process and the file: a `close()` of
*any* descriptor on the database (or its `-shm`) drops all of them. Another process closing its
own connection then believes it is the last one, checkpoints and deletes the `-wal` and `-shm`
under the live connections, which go on writing into a deleted log. So every place that opens a
user-named file asks `is_live_database` first, and `FilesGuard` notices (before each commit) if
it happened anyway and stops writing.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from storage.migrations import SchemaTooNewError, migrate
from storage.queries.requests import REQUEST_ID_HELD
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


class LiveDatabaseError(StorageError):
    """A user-named file is one of the files of a database this process has open."""


class DatabaseFilesChangedError(StorageError):
    """The database's files on disk are no longer the ones its connections write: writing
    would go into a deleted log, so the database refuses every further write."""


# The suffixes of the files SQLite keeps beside a database (WAL mode, and rollback journals).
_COMPANIONS = ("-wal", "-shm", "-journal")
# Databases this process has open (or is opening), by resolved path. Locks are per process, so
# a process-wide registry is exactly the right scope.
_OPEN: dict[Path, int] = {}


def file_identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """A file's (device, inode), so two names of one file compare equal; None if it is not
    there."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return None
    return st.st_dev, st.st_ino


def database_files(db: Path) -> list[Path]:
    """The database file and its companions (WAL, shared memory, rollback journal)."""
    return [db, *(db.with_name(db.name + suffix) for suffix in _COMPANIONS)]


def is_database_file(path: str | os.PathLike[str], db: str | os.PathLike[str]) -> bool:
    """Whether `path` is the database `db` or one of its companion files (same inode, so a
    symlink or hard link counts; by name too, for a companion that does not exist yet)."""
    db_path = Path(db).expanduser()
    candidate = Path(path).expanduser()
    names = database_files(db_path)
    mine = file_identity(candidate)
    if mine is not None and any(file_identity(name) == mine for name in names):
        return True
    try:
        resolved, db_resolved = candidate.resolve(), db_path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False
    return resolved.parent == db_resolved.parent and resolved.name in {n.name for n in names}


def is_live_database(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is (a companion file of) a database this process has open: opening and
    closing it outside SQLite would silently drop this process's locks on it."""
    return any(is_database_file(path, db) for db in list(_OPEN))


def refuse_live_database(path: str | os.PathLike[str], what: str = "an input file") -> None:
    """Raise `LiveDatabaseError` (a one-line message) if `path` is a live database's file."""
    if is_live_database(path):
        raise LiveDatabaseError(
            f"{path} is the database InferDeck has open; it cannot be used as {what} "
            "(choose another file)"
        )


def _register(path: Path) -> None:
    _OPEN[path] = _OPEN.get(path, 0) + 1


def _unregister(path: Path) -> None:
    left = _OPEN.get(path, 0) - 1
    if left > 0:
        _OPEN[path] = left
    else:
        _OPEN.pop(path, None)


class FilesGuard:
    """Notices that the database's files on disk are no longer the ones the connections hold.

    The identities (device, inode) of the database, its `-wal` and `-shm` are recorded once the
    connections have opened them. While a connection is open SQLite never deletes or replaces
    them itself, so a missing or different file means another process did, after this one lost
    its locks. `check()` costs three `stat` calls; the writer runs it before every commit.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        self._known: list[tuple[int, int] | None] = []
        self.error: DatabaseFilesChangedError | None = None
        # Called once, with the error, when the guard first trips (the app shows a message).
        self.on_trip: list[Callable[[DatabaseFilesChangedError], None]] = []

    def record(self) -> None:
        self._known = [file_identity(f) for f in self._files]

    def check(self) -> None:
        """Raise `DatabaseFilesChangedError` if a recorded file is gone or replaced (and from
        then on, every time: a write into a deleted log is never acknowledged)."""
        if self.error is not None:
            raise DatabaseFilesChangedError(str(self.error))  # a fresh one: no growing traceback
        for name, known in zip(self._files, self._known, strict=True):
            try:
                st = os.stat(name)
                same = (st.st_dev, st.st_ino) == known
            except OSError:
                same = False
            if known is not None and not same:
                self.error = DatabaseFilesChangedError(
                    f"database {self.path}: its file {name.name} was deleted or replaced by "
                    "another program while in use; stopped writing so nothing is written into "
                    "a lost log. Quit InferDeck and start it again (what was stored before "
                    "is kept)."
                )
                for callback in self.on_trip:
                    callback(self.error)
                raise self.error


@dataclass(slots=True)
class Recovery:
    """What `open_database` found left behind by processes that died."""

    requests: int = 0
    file_jobs: int = 0
    runs: int = 0


@dataclass(slots=True)
class Database:
    """An open database: its writer task, a reader connection, and the guard on its files."""

    path: Path
    writer: GroupCommitWriter
    reader: aiosqlite.Connection
    recovered: Recovery
    _write_conn: aiosqlite.Connection
    guard: FilesGuard
    # A third connection, read-only and used only from the opening thread (the event loop's),
    # for point lookups too small to be worth a trip to the reader's thread.
    _point_reader: sqlite3.Connection

    def request_id_held_now(self, request_id: str) -> bool | None:
        """Whether a stored request holds `request_id`, answered on the caller's thread: a
        primary-key lookup costs ~10 µs, a trip to the reader's thread ~100 µs of CPU (on every
        request that brings its own ID, `serve`'s and the app's). None when SQLite would have
        to wait for a lock (it never waits here): ask the reader then
        (`storage.queries.request_id_held`)."""
        try:
            row = self._point_reader.execute(REQUEST_ID_HELD, (request_id,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return row is not None

    async def close(self) -> None:
        """Commit what is pending (awaited), then close the connections."""
        try:
            await self.writer.close()
        finally:
            try:
                self._point_reader.close()
                await self.reader.close()
                await self._write_conn.close()
            finally:
                _unregister(self.path)


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
    # Registered before the first connection, so nothing in this process opens its files.
    _register(db_path)
    try:
        recovered = await asyncio.to_thread(prepare, db_path)
        try:
            # The writer's statements open a write transaction at once (see GroupCommitWriter);
            # the reader is in autocommit mode so it never holds a snapshot open between reads.
            write_conn = await _connect(db_path, "IMMEDIATE")
            reader = await _connect(db_path, None)
            # A read makes SQLite open (creating if need be) the -wal and -shm, so the guard
            # records the files the connections really hold.
            await reader.execute_fetchall("SELECT count(*) FROM sqlite_master")
            # timeout=0: a lock is answered at once (as OperationalError), never waited for.
            point_reader = sqlite3.connect(db_path, isolation_level=None, timeout=0)
            point_reader.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open database {db_path}: {exc}") from exc
    except BaseException:
        _unregister(db_path)
        raise
    guard = FilesGuard(db_path)
    guard.record()
    writer = GroupCommitWriter(write_conn, max_rows=max_batch_rows)
    writer.before_commit = guard.check
    writer.start()
    return Database(db_path, writer, reader, recovered, write_conn, guard, point_reader)
