"""Run again: a stored request's input sent again on the local engine as a request of its own.

The new request has the source `rerun` and names the one it repeats in its metadata
(`rerun_of`), so History can tell them apart and the Trace view links back. Its answer is shown
by opening its trace, never in the Predict form, whose inputs may say something else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from engine.contracts import PredictRequest
from engine.pipeline import Engine, Origin
from engine.stats import RunRecorder
from engine.work import FutureSink
from gui.history.trace_view import RERUN_KEY
from storage import queries

SOURCE = "rerun"
CLIENT_ID = "gui"


class Rerunner:
    """Sends run-again requests through `engine` and opens each one's stored trace
    (`open_trace`, the window's); `say` tells the user what could not be done."""

    def __init__(
        self,
        engine: Engine,
        run: RunRecorder,
        open_trace: Callable[[dict[str, Any]], None],
        say: Callable[[str], None],
    ) -> None:
        self.engine = engine
        self.origin = Origin(run, FutureSink(), SOURCE, CLIENT_ID)
        self.open_trace = open_trace
        self.say = say

    async def rerun(self, original_id: str, model: str, payload: dict[str, Any]) -> str | None:
        """Run `payload` again for `model`, linked to `original_id`; returns the new request's
        ID once its row is committed and its trace opened (None when it could not be sent)."""
        try:
            request = PredictRequest(
                client_id=CLIENT_ID,
                model=model,
                input_payload=payload,
                metadata={RERUN_KEY: original_id} if original_id else {},
            )
        except ValidationError:
            self.say(f"request {original_id} cannot be run again: its model name is not valid")
            return None
        work = await self.engine.predict(request, self.origin, acknowledge=True)
        # Committed before `predict` returned: the stored row is what the trace shows.
        row = await queries.get_request(self.engine.db.reader, work.request_id)
        if row is None:  # the database stopped taking writes; the window says so elsewhere
            self.say(f"the run again of {original_id} was not stored")
            return None
        self.open_trace(row)
        return work.request_id
