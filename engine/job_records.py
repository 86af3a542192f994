"""The `file_jobs` rows as file jobs keep them: find the job to resume, claim or open one, add
its progress, close it; and whether the database still takes writes. Reads go through the
database's reader, writes through its one writer (in order with the jobs' request rows).
"""

from __future__ import annotations

import time
from typing import Any

from storage import queries
from storage.database import Database


def _now_us() -> int:
    return time.time_ns() // 1000


class JobRecords:
    """The `file_jobs` table for file jobs; the Engine holds one (`engine.job_records`) for
    `FileJob` and the `predict` command's resume check."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def find_resumable(self, source_path: str, digest: str) -> queries.FileJobRow | None:
        """The interrupted (cancelled, failed) job over this file's path and contents, if any."""
        return await queries.find_resumable_job(self._db.reader, source_path, digest)

    async def supersede(self, job_id: int) -> None:
        """Mark a resumable job as replaced, so that no later run resumes it (`--restart`)."""
        await self._db.writer.execute(queries.SUPERSEDE_FILE_JOB, (_now_us(), job_id))

    async def claim(self, job_id: int, run_id: str) -> set[int]:
        """Take an interrupted job over for `run_id`; returns the rows it has done already."""
        done = await queries.done_rows(self._db.reader, job_id)
        await self._db.writer.execute(
            queries.CLAIM_FILE_JOB, (run_id, len(done), _now_us(), job_id)
        )
        return done

    async def open(
        self,
        run_id: str,
        source_path: str,
        size: int,
        digest: str,
        file_format: str,
        model: str | None,
    ) -> int:
        """A new job's row; returns its ID."""
        job_id = await queries.next_file_job_id(self._db.reader)
        now_us = _now_us()
        await self._db.writer.execute(
            queries.INSERT_FILE_JOB,
            (job_id, run_id, source_path, size, digest, file_format, model, now_us, now_us),
        )
        return job_id

    def add_progress(self, job_id: int, rows: int) -> None:
        """Count `rows` more committed rows; goes in with the writer's next group commit."""
        self._db.writer.add(queries.ADD_FILE_JOB_PROGRESS, [(rows, _now_us(), job_id)])

    async def finish(
        self, job_id: int, status: str, rows_total: int | None, rows_done: int
    ) -> None:
        await self._db.writer.execute(
            queries.FINISH_FILE_JOB, (status, rows_total, rows_done, _now_us(), job_id)
        )

    async def results(self, job_id: int) -> list[dict[str, Any]]:
        """The job's committed request rows (to back-fill `--out` when it resumes)."""
        return await queries.job_results(self._db.reader, job_id)

    def write_stopped(self) -> BaseException | None:
        """Why the database stopped taking writes (its files changed under it), or None."""
        return self._db.guard.error
