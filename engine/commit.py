"""Write and fan out: finished requests go to the writer's group commit as `requests` rows, and
reach their sinks, the run's figures and the live stats only once that transaction has ended.

A transaction that failed delivers its requests as `failed` with `stored=False`; rows the
database declined (their IDs were taken by requests stored first) are stored again as
rejections under IDs of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine.acceptance import CallerIds, duplicate, us
from engine.ids import new_id
from engine.stats import LiveStats
from engine.validation import error
from engine.work import Sink, Work, compact_json
from storage import queries
from storage.writer import GroupCommitWriter, RowsRefusedError


class Committer:
    """Stores finished requests through the group commit and delivers them after it; the Engine
    (rejections) and the `Batcher` (results) hand it work."""

    def __init__(self, writer: GroupCommitWriter, stats: LiveStats, caller_ids: CallerIds) -> None:
        self._writer = writer
        self._stats = stats
        self._caller_ids = caller_ids
        self.finished_listeners: list[Callable[[list[Work]], None]] = []
        # Requests taken by the batcher that have reached their end here (committed, failed, or
        # turned into a rejection); the batcher counts those it took.
        self.finished = 0

    def write(self, group: list[Work]) -> None:
        def build(start_ns: int) -> list[Any]:
            return [request_row(work, start_ns) for work in group]

        def committed(failure: BaseException | None) -> None:
            self._deliver(group, failure)

        self._writer.add_deferred(
            queries.UPSERT_REQUEST,
            len(group),
            build,
            committed,
            check=queries.requests_not_stored,
        )

    def _deliver(self, group: list[Work], failure: BaseException | None) -> None:
        if isinstance(failure, RowsRefusedError):
            # The rest of the group committed; the declined rows' IDs belong to requests
            # stored by someone else (another worker process, an earlier run).
            refused = [group[i] for i in sorted(failure.rows)]
            self._restore_refused(refused)
            group = [work for i, work in enumerate(group) if i not in failure.rows]
            failure = None
            if not group:
                return
        now = time.perf_counter_ns()
        stats, finished = self._stats, 0
        release = self._caller_ids.release
        for work in group:
            if work.status != "rejected":
                finished += 1  # counted in flight from the batcher on
            if failure is not None:
                work.stored = False
                work.status = "failed"
                work.error = error("storage_failed", f"could not store the result: {failure}")
            work.latency_us = us(now - work.accepted_ns)
            work.spans.append(
                ("write", us(work.ready_ns - work.accepted_ns), us(now - work.ready_ns))
            )
            release(work.request_id, work)
            work.run.record(work.status, work.latency_us)
            stats.record(work.status, work.latency_us, work.spans)
        self.finished += finished
        for listener in self.finished_listeners:
            listener(group)
        sink = group[0].sink
        if all(work.sink is sink for work in group):
            sink.deliver(group)
            return
        by_sink: dict[int, tuple[Sink, list[Work]]] = {}
        for work in group:
            by_sink.setdefault(id(work.sink), (work.sink, []))[1].append(work)
        for target, works in by_sink.values():
            target.deliver(works)

    def _restore_refused(self, refused: list[Work]) -> None:
        """Store requests whose rows the database declined as rejections under IDs of their own.

        An accepted request lost the race for its ID to a request stored first (in another
        process: this one's reservations rule out a race here): it becomes a
        `duplicate_request_id` rejection, as if the stored one had been seen at acceptance. A
        rejection keeps its reason and only moves to a new ID. Callers hear of them once that
        second write has ended."""
        for work in refused:
            self._caller_ids.release(work.request_id, work)
            if work.status != "rejected":
                self.finished += 1  # it leaves the batcher's count here, not in `_deliver`
                work.status, work.output = "rejected", None
                work.error = duplicate(work.request_id)
            work.request_id = new_id()
            assert work.error is not None
            work.error.request_id = work.request_id
        self.write(refused)


def request_row(work: Work, start_ns: int, *, queued: bool = False) -> tuple[Any, ...]:
    """The `requests` row for `work`; the stored write span ends as its transaction starts."""
    if queued:
        spans: list[Any] = list(work.spans)
        latency_us = finished_us = None
        status = "queued"
        output = None
    else:
        write_start = us(work.ready_ns - work.accepted_ns)
        spans = [*work.spans, ("write", write_start, us(start_ns - work.ready_ns))]
        latency_us = us(start_ns - work.accepted_ns)
        finished_us = work.created_us + latency_us
        status = work.status
        output = compact_json(work.output) if work.output is not None else None
    return (
        work.request_id,
        work.run.run_id,
        work.job_id,
        work.source_row,
        work.source,
        work.target,
        work.model_name,
        work.client_id,
        status,
        work.created_us,
        finished_us,
        latency_us,
        work.input_json,
        work.metadata_json,
        output,
        work.error.model_dump_json(exclude_none=True) if work.error is not None else None,
        compact_json(spans),
    )
