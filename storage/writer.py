"""The one task that writes: group commit over a single aiosqlite connection.

Producers call `add()` without awaiting. The writer takes whatever is pending (up to `max_rows`
rows), commits it in one transaction with `executemany`, runs the callbacks, and goes again at
once. There is no fixed sleep: at low load a commit holds one request and returns in well under a
millisecond; under load commits grow towards `max_rows` and the per-row cost falls.

A statement may decline some rows (an insert that must not replace the row holding its key):
given a `check`, the writer finds which, inside the transaction, and tells their callback. It
also keeps the outcome of its last write, which is what readiness is judged from.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import aiosqlite

log = logging.getLogger(__name__)

Row = Sequence[Any]
# Builds an entry's rows when its transaction starts, given that moment (perf_counter_ns), so a
# row can carry how long it waited for the writer.
RowBuilder = Callable[[int], list[Row]]
# Called once the entry's transaction has committed (None) or failed (the exception); an
# entry some of whose rows a statement declined (see `RowCheck`) hears `RowsRefusedError`.
CommitCallback = Callable[[BaseException | None], None]
# For statements that may decline a row (an insert that will not replace a row it must keep):
# run, inside the transaction, only when the statement changed fewer rows than it was given;
# returns the positions of the rows that were not stored.
RowCheck = Callable[[aiosqlite.Connection, list[Row]], Awaitable[set[int]]]


@dataclass(slots=True)
class _Entry:
    """One write queued by `add`, `add_deferred`, `try_write` or `flush`, until its commit."""

    sql: str | None  # None: a marker that only waits for the commit (see `flush`)
    rows: list[Row]
    count: int  # rows, known before a deferred entry builds them
    on_commit: CommitCallback | None = None
    build: RowBuilder | None = None
    check: RowCheck | None = None
    then: tuple[str, Row] | None = None  # a statement run right after, in the same transaction
    refused: frozenset[int] = frozenset()  # positions of rows the statement declined


@dataclass(slots=True)
class _Group:
    """Consecutive rows of one statement, run as one `executemany`."""

    sql: str
    check: RowCheck | None
    rows: list[Row] = field(default_factory=list)
    members: list[tuple[_Entry, int]] = field(default_factory=list)  # (entry, its first row)

    def takes(self, entry: _Entry) -> bool:
        """Whether `entry` can join this `executemany`: the same statement, and no two
        different checks. Rows without a check ride along with checked ones (the desktop form's
        `queued` rows between results): split apart, every request would cost two statements
        (two thread hops) per commit instead of one shared one."""
        return entry.sql == self.sql and (
            self.check is None or entry.check is None or entry.check is self.check
        )


class WriterClosedError(RuntimeError):
    """`add()` was called after `close()`."""


class RowsRefusedError(Exception):
    """The transaction committed, but a statement declined some of this entry's rows: `rows`
    are their positions in the entry (every other row of it is stored)."""

    def __init__(self, rows: frozenset[int]) -> None:
        super().__init__(f"{len(rows)} row(s) not stored: their key belongs to another row")
        self.rows = rows


class GroupCommitWriter:
    """Commits pending statements in batches of at most `max_rows` rows."""

    def __init__(self, conn: aiosqlite.Connection, *, max_rows: int = 1000) -> None:
        self._conn = conn
        self._max_rows = max_rows
        self._pending: deque[_Entry] = deque()
        self._pending_rows = 0
        self._wakeup = asyncio.Event()
        self._committed = asyncio.Event()
        self._closing = False
        self._busy = False  # a transaction (or its callbacks) is under way
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        self.rows_committed = 0
        # The outcome of the last transaction that wrote anything: None after a success, else
        # its exception (a full disk, a lock held too long). Readiness is judged from it.
        self.failure: BaseException | None = None
        self.succeeded_at = time.monotonic()  # when a write last committed
        # Raises to refuse a batch before it is written (the database's files guard).
        self.before_commit: Callable[[], None] | None = None

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="db-writer")

    def add(self, sql: str, rows: Sequence[Row], on_commit: CommitCallback | None = None) -> None:
        """Queue `rows` for `sql`; `on_commit` runs after the transaction holding the last one."""
        if self._closing:
            raise WriterClosedError("the database writer is closed")
        rows = rows if isinstance(rows, list) else list(rows)
        self._pending.append(_Entry(sql, rows, len(rows), on_commit))
        self._pending_rows += len(rows)
        self._wakeup.set()

    def add_deferred(
        self,
        sql: str,
        count: int,
        build: RowBuilder,
        on_commit: CommitCallback | None = None,
        *,
        check: RowCheck | None = None,
    ) -> None:
        """Queue `count` rows that `build(start_ns)` makes just before their transaction.

        `check`: `sql` may decline rows; rows it declined are reported to `on_commit` as
        `RowsRefusedError` (the others committed)."""
        if self._closing:
            raise WriterClosedError("the database writer is closed")
        self._pending.append(_Entry(sql, [], count, on_commit, build, check))
        self._pending_rows += count
        self._wakeup.set()

    async def try_write(self, sql: str, row: Row, undo: str, undo_row: Row) -> None:
        """Write `row` and undo it in the same transaction, and wait for the commit: whether
        the database can take a write now (raises if not). Nothing stays behind, yet the pages
        are written as for a real row, so a full disk fails it. Counts as any commit does for
        `failure`, so a success ends a failing state."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closing:
            raise WriterClosedError("the database writer is closed")
        self._pending.append(_Entry(sql, [row], 2, _resolver(done), then=(undo, undo_row)))
        self._pending_rows += 2
        self._wakeup.set()
        await done

    async def wait_below(self, limit: int) -> None:
        """Wait until fewer than `limit` rows are pending: backpressure for producers, so a
        writer that falls behind slows intake instead of queueing without bound."""
        while self._pending_rows >= limit and self._task is not None:
            self._committed.clear()
            await self._committed.wait()

    async def execute(self, sql: str, row: Row = ()) -> None:
        """Write one statement through the writer and wait for its commit."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.add(sql, [row], _resolver(done))
        await done

    async def flush(self) -> None:
        """Wait until everything added before this call has been written (or has failed: its
        own callbacks hear of that; a flush only waits)."""
        if not self._pending and not self._busy:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def resolve(_error: BaseException | None) -> None:
            if not done.done():
                done.set_result(None)

        self._pending.append(_Entry(None, [], 0, resolve))
        self._wakeup.set()
        await done

    async def close(self) -> None:
        """Stop taking writes, commit what is pending, and wait for the task to end."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._busy = True
            taken, taken_at = self._take()
            await _in_slices(taken, partial(_build, taken_at=taken_at))
            groups, finished = self._group(taken)
            error: BaseException | None = None
            try:
                await self._commit(groups)
            except Exception as exc:  # the batch is lost, so every waiter must hear why
                log.exception("database commit failed")
                error = exc
                await self._rollback()
            if groups:
                self.failure = error
                if error is None:
                    self.succeeded_at = time.monotonic()
            await _in_slices(finished, partial(_call_back, error=error))
            self._busy = False
            self._committed.set()

    def _take(self) -> tuple[list[_Entry], int]:
        """Pop whole entries up to `max_rows` rows, and the moment they were taken.

        An entry is never split over two transactions, so its callback hears the one outcome
        that all its rows share; an entry larger than `max_rows` gets a transaction of its own.
        """
        taken: list[_Entry] = []
        rows = 0
        while self._pending:
            entry = self._pending[0]
            if rows and entry.sql is not None and rows + entry.count > self._max_rows:
                break
            self._pending.popleft()
            taken.append(entry)
            if entry.sql is not None:
                rows += entry.count
                self._pending_rows -= entry.count
        return taken, time.perf_counter_ns()

    @staticmethod
    def _group(taken: list[_Entry]) -> tuple[list[_Group], list[_Entry]]:
        """Consecutive rows of one statement grouped for `executemany`, and the entries with a
        callback."""
        groups: list[_Group] = []
        finished: list[_Entry] = []
        for entry in taken:
            if entry.sql is not None:
                last = groups[-1] if groups else None
                if last is None or not last.takes(entry):
                    last = _Group(entry.sql, entry.check)
                    groups.append(last)
                last.check = last.check or entry.check
                last.members.append((entry, len(last.rows)))
                last.rows.extend(entry.rows)
                if entry.then is not None:
                    groups.append(_Group(entry.then[0], None, [entry.then[1]]))
            if entry.on_commit is not None:
                finished.append(entry)
        return groups, finished

    async def _commit(self, groups: list[_Group]) -> None:
        if not groups:
            return
        if self.before_commit is not None:
            self.before_commit()
        # The statements and the commit run as one call on aiosqlite's thread: one hop there
        # and back per transaction, where a call per statement and one for the commit cost a
        # hop each (each a wake-up of the thread and of the loop, and the GIL changing hands;
        # at 8 connections that wait was most of a request's time). `_execute` is aiosqlite's
        # own way of running a function on its thread, which all its public calls go through.
        # The connection opens the transaction itself (isolation_level="IMMEDIATE") with the
        # first statement.
        on_thread = cast(Callable[..., Awaitable[tuple[int, bool]]], self._conn._execute)
        start = 0
        while True:
            ran, committed = await on_thread(_run_groups, self._conn._conn, groups[start:])
            start += ran
            if committed:
                break
            # Some row was declined: find which, while this transaction still holds the write
            # lock (no other process can change the answer before the commit), then go on.
            group = groups[start - 1]
            assert group.check is not None
            self._mark_refused(group, await group.check(self._conn, group.rows))
        self.commits += 1
        self.rows_committed += sum(len(group.rows) for group in groups)

    @staticmethod
    def _mark_refused(group: _Group, missing: set[int]) -> None:
        for entry, first in group.members:
            mine = frozenset(i - first for i in missing if first <= i < first + len(entry.rows))
            entry.refused = mine

    async def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                await self._conn.rollback()
        except Exception:
            log.exception("rollback failed")


# The writer's own work on the event loop (building a transaction's rows, running its
# callbacks) is done in slices of about this long, so a 1,000-row commit never holds the loop
# (the desktop app's GUI thread) for more than a millisecond or so at once (the reading's
# slices in `engine.file_job.job` say why so short).
_SLICE_S = 0.001


async def _in_slices(entries: list[_Entry], step: Callable[[_Entry], None]) -> None:
    """`step` each entry in order, yielding to the loop whenever a slice's time is up."""
    slice_end = time.perf_counter() + _SLICE_S
    for entry in entries:
        step(entry)
        if time.perf_counter() >= slice_end:
            await asyncio.sleep(0)
            slice_end = time.perf_counter() + _SLICE_S


def _run_groups(conn: sqlite3.Connection, groups: list[_Group]) -> tuple[int, bool]:
    """On the connection's thread: run the groups in order and commit. Stops early, without
    committing, after a checked group that stored fewer rows than it was given; returns how
    many groups ran and whether it committed."""
    for ran, group in enumerate(groups, start=1):
        params = group.rows
        if len(params) == 1:
            cursor = conn.execute(group.sql, params[0])
        else:
            cursor = conn.executemany(group.sql, params)
        if group.check is not None and cursor.rowcount < len(params):
            return ran, False
    conn.commit()
    return len(groups), True


def _build(entry: _Entry, taken_at: int) -> None:
    if entry.build is not None:
        entry.rows, entry.build = entry.build(taken_at), None


def _call_back(entry: _Entry, error: BaseException | None) -> None:
    assert entry.on_commit is not None
    outcome = error
    if outcome is None and entry.refused:
        outcome = RowsRefusedError(entry.refused)
    try:
        entry.on_commit(outcome)
    except Exception:
        log.exception("commit callback failed")


def _resolver(future: asyncio.Future[None]) -> CommitCallback:
    def resolve(error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    return resolve
