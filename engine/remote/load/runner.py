"""`LoadRunner`: one load run against one target, composed of its parts.

The run's jobs each have a module: when requests leave and how the run ends
(`engine.remote.load.schedule`), sending one request and judging its outcome
(`engine.remote.load.sending`), and counting, storing and summarising (`...load.recording`),
all sharing one `RunState`. The runner wires them together and is what callers hold: the
`load` command, the desktop app's Load panel, the tests and the benchmark.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from engine.remote.classify import UNREACHABLE
from engine.remote.client import Exchange, TargetClient
from engine.remote.load.recording import LoadResult, Recorder
from engine.remote.load.schedule import Scheduler
from engine.remote.load.sending import LoadError, Sender, make_client, open_sender
from engine.remote.load.server_side import ServerSide
from engine.remote.load.snapshot import LoadSnapshot
from engine.remote.load.state import RunState
from engine.remote.payloads import PayloadSource
from engine.remote.plan import LoadPlan
from engine.remote.targets import Target
from storage.database import Database


class LoadRunner:
    """One load run: `check()` (or `prepare()` and `preflight()`), `run()`, `stop()` and
    `snapshot()`, for the `load` command, the app's Load panel, tests and the load benchmark."""

    def __init__(
        self,
        target: Target,
        plan: LoadPlan,
        payloads: PayloadSource,
        *,
        db: Database | None,
        token: str | None = None,
        trace_every: int | None = None,
        client: TargetClient | None = None,
        summary_extra: Callable[[], dict[str, Any] | Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self.target = target
        self.plan = plan
        self.payloads = payloads
        self._state = RunState()
        # `summary_extra` is called (and awaited, if need be) once as the run ends; its dict
        # joins the stored summary.
        self._recorder = Recorder(target, db, self._state, summary_extra)
        self._sender: Sender | None = None  # made by prepare()
        # The client given, or one `prepare()` makes with this token and trace sampling.
        self._client = client
        self._token = token
        self._trace_every = trace_every
        # The server's own statistics over the run (a task of its own, never on the send path).
        self._server = ServerSide(target, token)

    async def prepare(self) -> None:
        """Open the client, read what the protocol needs (OIP metadata), build every body.
        Raises `LoadError` when the run cannot start. `run()` calls it if nobody did."""
        if self._sender is not None:
            return
        if self._client is None:
            self._client = make_client(self.target, self.plan, self._token, self._trace_every)
        self._sender = await open_sender(self._client, self.payloads, self._state, self._recorder)

    async def preflight(self) -> Exchange:
        """One request with the first payload, neither counted nor stored: does anything answer?"""
        await self.prepare()
        assert self._client is not None and self._sender is not None
        return await self._sender.preflight()

    async def check(self) -> None:
        """Prepare, then send the preflight: `LoadError` (its message fit for a user, the client
        closed) when the run cannot start or nothing answers at the target."""
        try:
            await self.prepare()
            first = await self.preflight()
        except LoadError:
            await self.aclose()
            raise
        if first.error in UNREACHABLE:
            await self.aclose()
            url = self.target.redacted_url()
            raise LoadError(f"{url}: unreachable ({first.error}: {first.message})")

    async def run(self) -> LoadResult:
        """Send the plan's traffic; store the run (kind "load") and every request."""
        try:
            await self.prepare()
        except BaseException:
            await self._close_client()
            raise
        assert self._sender is not None
        recorder = self._recorder
        scheduler = Scheduler(self.plan, self.target.timeout_s, self._state, self._sender.one)
        # Its first snapshot is taken just before the first request, its last after the last.
        await self._server.start()
        started_ns = await recorder.begin(self._config())
        loop = asyncio.get_running_loop()
        flusher = loop.create_task(recorder.flush_often(), name="load-flush")
        status = "done"
        try:
            await scheduler.run(started_ns)
        except asyncio.CancelledError:
            status = "cancelled"
            await scheduler.cancel_in_flight()
            raise
        finally:
            self._state.done = True
            flusher.cancel()
            recorder.flush()
            recorder.traffic_ended()
            await self._close_client()
            server = await asyncio.shield(self._server.stop())
            summary_extra = await recorder.finish(status, server)
        return recorder.result(summary_extra)

    def stop(self) -> None:
        """End the run early: nothing new is sent; requests in flight get `STOP_GRACE_S`."""
        self._state.stopping = True
        self._state.slot_free.set()

    def snapshot(self) -> LoadSnapshot:
        """What a view draws now (`LoadSnapshot`); cheap, callable at any time from the run's
        own loop (it reads counters the run is changing). The app's load process sends these
        to the app (`engine.remote.load.child`)."""
        return self._recorder.snapshot(self._server.live())

    def _config(self) -> dict[str, Any]:
        t = self.target
        return {
            "target": t.name,
            "base_url": t.redacted_url(),
            "protocol": t.protocol,
            "model": t.model,
            "headers": t.redacted_headers(),
            "plan": asdict(self.plan),
            "payloads": self.payloads.origin,
            "payload_count": len(self.payloads),
        }

    async def _close_client(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def aclose(self) -> None:
        """Close the client of a runner that was prepared but will not run."""
        await self._close_client()
