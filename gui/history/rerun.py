"""Run again: a stored request's input sent again, where the original went, as a request of
its own.

A request the local engine answered runs again on it; one sent to a remote target runs again on
that same target (its stored name, read from the target store with its token from the token
store: a request row never holds a token), through a client made for that one request. Either
way the new request has the source `rerun` and names the one it repeats in its metadata
(`rerun_of`), so History can tell them apart and the Trace view links back. Its answer is shown
by opening its trace, never in the Predict form, whose inputs may say something else. A target
removed since, or one whose metadata cannot be read, is a sentence (`say`), not a request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from engine.contracts import PredictRequest
from engine.ids import short_id
from engine.pipeline import Engine, Origin
from engine.remote.client import TargetClient
from engine.remote.oip_form import adapter_for, fetch_oip_form, send_prediction
from engine.remote.protocols import ProtocolError
from engine.remote.target_store import TargetStore
from engine.stats import RunRecorder
from engine.work import FutureSink
from gui.history.trace_view import RERUN_KEY
from storage import queries

SOURCE = "rerun"
CLIENT_ID = "gui"
LOCAL_TARGET = "local"  # the `target` a row the local engine answered is stored with


def remote_target(row: dict[str, Any] | None) -> str | None:
    """The remote target a stored request went to (None: the local engine)."""
    target = row.get("target") if row is not None else None
    return str(target) if target and target != LOCAL_TARGET else None


class Rerunner:
    """Sends run-again requests through `engine`, or to the remote target in `targets` the
    original went to, and opens each one's stored trace (`open_trace`, the window's); `say`
    tells the user what could not be done."""

    def __init__(
        self,
        engine: Engine,
        run: RunRecorder,
        open_trace: Callable[[dict[str, Any]], None],
        say: Callable[[str], None],
        targets: TargetStore | None = None,
    ) -> None:
        self.engine = engine
        self.run = run
        self.origin = Origin(run, FutureSink(), SOURCE, CLIENT_ID)
        self.open_trace = open_trace
        self.say = say
        self.targets = targets

    async def rerun(self, original_id: str, model: str, payload: dict[str, Any]) -> str | None:
        """Run `payload` again where `original_id` ran (for `model`, on the local engine),
        linked to it; returns the new request's ID once its row is committed and its trace
        opened (None when it could not be sent)."""
        original = (
            await queries.get_request(self.engine.db.reader, original_id) if original_id else None
        )
        target = remote_target(original)
        if target is not None:
            return await self._rerun_remote(original_id, target, payload)
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
        return await self._open(work.request_id, original_id)

    async def _rerun_remote(
        self, original_id: str, name: str, payload: dict[str, Any]
    ) -> str | None:
        """Send `payload` to the stored target `name` again, stored as a run again."""
        shown = short_id(original_id)
        stored = await self.targets.get(name) if self.targets is not None else None
        if stored is None:
            self.say(
                f"request {shown} cannot be run again: it was sent to target {name!r}, "
                "which no longer exists"
            )
            return None
        target = stored.target
        assert self.targets is not None
        client = TargetClient(
            target, token=self.targets.token(name), max_connections=1, trace_every=1
        )
        try:
            # An OIP target's tensors come from its metadata, read again: it may have changed.
            form = await fetch_oip_form(client) if target.protocol == "oip" else None
            adapter = adapter_for(target, form)
            answer = await send_prediction(
                client,
                adapter,
                payload,
                db=self.engine.db,
                run=self.run,
                source=SOURCE,
                metadata={RERUN_KEY: original_id},
            )
        except ProtocolError as exc:
            self.say(f"request {shown} cannot be run again on {name}: {exc}")
            return None
        finally:
            await client.aclose()
        # A refusal or a failure is stored too: its trace says what went wrong.
        return await self._open(answer.request_id, original_id)

    async def _open(self, request_id: str, original_id: str) -> str | None:
        row = await queries.get_request(self.engine.db.reader, request_id)
        if row is None:  # the database stopped taking writes; the window says so elsewhere
            self.say(f"the run again of {original_id} was not stored")
            return None
        self.open_trace(row)
        return request_id
