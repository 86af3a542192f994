"""Readiness's storage question: could a request be stored now? The engine's service asks it
(`Engine.storage_problem`) for `/ready` and OIP readiness."""

from __future__ import annotations

import asyncio
import time

from engine.ids import new_id
from storage import queries
from storage.writer import GroupCommitWriter

# Readiness trusts the last commit this long; past it (an idle service) it writes a probe row.
STORAGE_FRESH_S = 5.0
# A request-sized probe row: the space a request's row takes is what must be available.
_PROBE_INPUT = "x" * 2048


class StorageCheck:
    """Answers whether requests can be stored, from the last commit or a probe row; one per
    Engine, asked through `Engine.storage_problem`."""

    def __init__(self, writer: GroupCommitWriter) -> None:
        self._writer = writer
        self._probe: asyncio.Future[str | None] | None = None

    async def problem(self) -> str | None:
        """Why a request could not be stored now, or None when it could: the outcome of the
        last commit while it is recent and a success, else of a probe row written and removed
        in one transaction (so a service that stopped failing, or sat idle, is judged afresh).
        One probe at a time, however many ask."""
        writer = self._writer
        recent = time.monotonic() - writer.succeeded_at < STORAGE_FRESH_S
        if writer.failure is None and recent:
            return None
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._write_probe())
            self._probe.add_done_callback(self._probed)
        return await asyncio.shield(self._probe)

    def _probed(self, _done: asyncio.Future[str | None]) -> None:
        self._probe = None

    async def _write_probe(self) -> str | None:
        probe_id = f"probe-{new_id()}"
        try:
            async with asyncio.timeout(5):
                await self._writer.try_write(
                    queries.PROBE_REQUEST,
                    (probe_id, _PROBE_INPUT),
                    queries.UNDO_PROBE_REQUEST,
                    (probe_id,),
                )
        except TimeoutError:
            return "the database did not finish a write within 5 s"
        except Exception as exc:  # any failure to write means requests cannot be stored
            return f"the database cannot store requests: {exc}"
        return None
