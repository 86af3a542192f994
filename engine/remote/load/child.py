"""The child's side of `engine.remote.load.process`: one load run, its spec read from stdin,
its events written to stdout as JSON lines. Run as `python -m engine.remote.load.child`.

The order is the app's: the payloads are built (a form's JSON, a file, the model's stored
history, or the model's own example), then the target's health is probed once while the
runner prepares and the database opens; a target that is down is refused with its reason.
Then traffic, a snapshot every `publish_every_s`, and the summary, stored with whatever the
parent answers to `ending` (the app's UI loop lag over the run).

A line "stop" on stdin stops the run (or, before traffic, keeps it from starting), and so does
the end of stdin: a parent that quits or dies still gets every request sent stored.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from typing import Any, BinaryIO

import orjson

from engine.cli.load_args import LoadStartError
from engine.remote.load.preflight import check_health
from engine.remote.load.process import ENDING_WAIT_S, STOP_LINE, LoadSpec, snapshot_event
from engine.remote.load.runner import LoadRunner
from engine.remote.load.sending import LoadError
from engine.remote.payloads import PayloadError, PayloadSource
from engine.tasks import freeze_startup_objects
from storage.database import Database, StorageError, is_live_database, open_database


class _Events:
    """The events' own copy of stdout. Standard output itself then goes to stderr, so a stray
    print (ours or a library's) cannot break a line the parent reads."""

    out: BinaryIO = sys.stdout.buffer

    @classmethod
    def take_stdout(cls) -> None:
        cls.out = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)

    gone = False  # the parent stopped reading (it quit or died): the run goes on, unheard

    @classmethod
    def write(cls, line: bytes) -> None:
        if cls.gone:
            return
        try:
            cls.out.write(line)
            cls.out.flush()
        except (OSError, ValueError):
            # Nobody reads any more: the run still stops (end of stdin) and stores its summary.
            cls.gone = True


def emit(event: dict[str, Any]) -> None:
    _Events.write(orjson.dumps(event) + b"\n")


async def build_payloads(db: Database | None, spec: LoadSpec) -> PayloadSource:
    """The run's payloads from the spec's choice; `LoadStartError` says what is wrong."""
    kind, text = spec.payload_kind, spec.payload_text
    try:
        if kind == "form":
            try:
                value: Any = orjson.loads(text or "{}")
            except orjson.JSONDecodeError as exc:
                raise LoadStartError(f"the payload is not JSON: {exc}") from None
            if not isinstance(value, dict):
                raise LoadStartError("the payload must be a JSON object")
            return PayloadSource.single(value)
        if kind == "file":
            if not text:
                raise LoadStartError("choose a payload file")
            if is_live_database(text):  # never opened: see storage.database
                raise LoadStartError(
                    f"{text} is the database InferDeck has open, not a payload file"
                )
            return await asyncio.to_thread(PayloadSource.from_file, text)
        if kind == "history":
            model = spec.target.model
            if db is None or not model:
                raise LoadStartError("replaying history needs a model")
            return await PayloadSource.from_history(db, model)
    except PayloadError as exc:
        raise LoadStartError(str(exc)) from None
    return PayloadSource.model_example()


class Parent:
    """What the parent says on stdin after the spec, read by a thread: stop, or the extra."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.stop_asked = asyncio.Event()
        self.extras: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        threading.Thread(target=self._read, name="parent-lines", daemon=True).start()

    def _read(self) -> None:
        try:
            for line in sys.stdin.buffer:
                if line == STOP_LINE:
                    self.loop.call_soon_threadsafe(self.stop_asked.set)
                    continue
                try:
                    extra = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(extra, dict):
                    self.loop.call_soon_threadsafe(self.extras.put_nowait, extra)
            # The parent has gone: stop, and store the summary without waiting for its extra.
            self.loop.call_soon_threadsafe(self.stop_asked.set)
            self.loop.call_soon_threadsafe(self.extras.put_nowait, {})
        except RuntimeError:
            pass  # the run has ended and its loop closed: nothing is left to tell

    async def summary_extra(self) -> dict[str, Any]:
        emit({"event": "ending"})
        try:
            return await asyncio.wait_for(self.extras.get(), ENDING_WAIT_S)
        except TimeoutError:
            return {}


async def run(spec: LoadSpec, parent: Parent) -> dict[str, Any]:
    """The run; the event that ends it (`finished` or `failed`)."""
    db: Database | None = None
    try:
        if spec.db_path is not None:
            try:
                db = await open_database(spec.db_path)
            except StorageError as exc:
                return {"event": "failed", "error": str(exc)}
        try:
            payloads = await build_payloads(db, spec)
        except LoadStartError as exc:
            return {"event": "failed", "error": str(exc)}
        return await _send(spec, parent, db, payloads)
    finally:
        if db is not None:
            await db.close()  # every row handed to its writer is committed first


async def _send(
    spec: LoadSpec, parent: Parent, db: Database | None, payloads: PayloadSource
) -> dict[str, Any]:
    runner = LoadRunner(
        spec.target,
        spec.plan,
        payloads,
        db=db,
        token=spec.token,
        trace_every=spec.trace_every,
        summary_extra=parent.summary_extra,
    )
    # One round of the target's health probes before any traffic, while the runner prepares.
    health, checked = await asyncio.gather(
        check_health(spec.target, spec.token), runner.check(), return_exceptions=True
    )
    if isinstance(health, BaseException):
        if not isinstance(checked, BaseException):
            await runner.aclose()
        raise health  # (the probe judges every failure itself: this is a bug)
    if health.down or isinstance(checked, BaseException):
        if not isinstance(checked, LoadError):
            await runner.aclose()  # (a check that failed with a LoadError closed it itself)
            if checked is not None and not health.down:
                raise checked  # (not a failure a user can act on: a bug)
        return {"event": "failed", "error": health.text() if health.down else str(checked)}
    if parent.stop_asked.is_set():
        await runner.aclose()
        return {"event": "failed", "error": "stopped before it began"}
    freeze_startup_objects()  # a full collection walking start-up objects would stall sends
    emit({"event": "started", "health": health.text()})
    loop = asyncio.get_running_loop()
    publisher = loop.create_task(_publish(runner, spec.publish_every_s))
    stopper = loop.create_task(_stop_when_asked(runner, parent))
    try:
        result = await runner.run()
    except Exception as exc:  # the runner stores what it recorded before it gave up
        return {"event": "failed", "error": f"the run ended with an error: {exc}"}
    finally:
        publisher.cancel()
        stopper.cancel()
    final = orjson.loads(snapshot_event(runner.snapshot()))
    return {"event": "finished", "summary": result.summary, "final": final}


async def _publish(runner: LoadRunner, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        _Events.write(snapshot_event(runner.snapshot()))


async def _stop_when_asked(runner: LoadRunner, parent: Parent) -> None:
    await parent.stop_asked.wait()
    runner.stop()


async def main_async() -> None:
    line = await asyncio.to_thread(sys.stdin.buffer.readline)
    if not line:
        return  # the parent went before it said what to run
    spec = LoadSpec.from_line(line)
    parent = Parent(asyncio.get_running_loop())
    try:
        end = await run(spec, parent)
    except Exception as exc:  # a bug: said in one line, the parent shows it as the run's end
        end = {"event": "failed", "error": f"the load process failed: {type(exc).__name__}: {exc}"}
    emit(end)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run, through stdin
    _Events.take_stdout()
    asyncio.run(main_async())


if __name__ == "__main__":
    main()
