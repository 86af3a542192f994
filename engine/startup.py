"""The one start-up routine: database, model registry, executor and engine, composed and started
the same way for the command line, the HTTP service and the desktop app.

Each front door differs only in what it hands in: the app its QThreadPool-backed executor and a
hook on the database guard, the service a short queue, the commands nothing at all.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from engine.models import ModelRegistry
from engine.pipeline import Engine, EngineConfig
from engine.tasks import freeze_startup_objects
from storage import Database, open_database

# One inference thread: on a 2-core machine a second one only competes with the event loop and
# the writer for the cores; batching, not parallel calls, is where the throughput comes from.
INFERENCE_WORKERS = 1

# Each request crosses from the loop to the inference and writer threads and back; with the
# default 5 ms GIL switch interval a woken thread can wait that long for its turn (it was the
# whole of `serve`'s p50 at 16 connections). 0.5 ms trims that tail without costing throughput.
SWITCH_INTERVAL_S = 0.0005


def inference_executor() -> ThreadPoolExecutor:
    """The headless inference boundary: a small thread pool (the app brings its own)."""
    return ThreadPoolExecutor(max_workers=INFERENCE_WORKERS, thread_name_prefix="inference")


@asynccontextmanager
async def opened_engine(
    db_path: Path,
    registry: ModelRegistry | None = None,
    config: EngineConfig | None = None,
    executor: Executor | None = None,
    on_open: Callable[[Database], None] | None = None,
    fast_thread_switch: bool = True,
) -> AsyncIterator[Engine]:
    """An engine over the database at `db_path`, not started: requests it accepts wait in its
    queue until `start_engine` has loaded the models. On exit it drains, the writer's last
    commit lands, the database closes and the executor (ours now) shuts down.

    The app opens the engine first so that every view over the database is there at the
    window's first paint, and loads the models after. `on_open` sees the database before
    anything is written (the app hooks its guard there); `fast_thread_switch=False` leaves the
    interpreter's switch interval alone (the app's GUI thread paints, and the headless figure
    was measured for headless use).
    Raises `storage.database.StorageError` when the database cannot be opened.
    """
    if fast_thread_switch:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    pool = executor or inference_executor()
    try:
        db = await open_database(db_path)
        try:
            if on_open is not None:
                on_open(db)
            engine = Engine(db, registry or ModelRegistry.discover(), pool, config)
            try:
                yield engine
            finally:
                await engine.stop()  # in-flight requests finish and their rows are committed
        finally:
            await db.close()
    finally:
        pool.shutdown(wait=True)


async def start_engine(engine: Engine) -> None:
    """Load and warm every model (torch is first imported there, in the executor, never on the
    event loop), then start taking requests from the queue."""
    await engine.start()
    freeze_startup_objects()


@asynccontextmanager
async def started_engine(
    db_path: Path,
    registry: ModelRegistry | None = None,
    config: EngineConfig | None = None,
    executor: Executor | None = None,
    on_open: Callable[[Database], None] | None = None,
    fast_thread_switch: bool = True,
) -> AsyncIterator[Engine]:
    """`opened_engine` with its models loaded and warm (the commands and the service)."""
    async with opened_engine(
        db_path, registry, config, executor, on_open, fast_thread_switch
    ) as engine:
        await start_engine(engine)
        yield engine
