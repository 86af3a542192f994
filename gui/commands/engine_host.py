"""Headless composition: database + model registry + a ThreadPoolExecutor + the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from engine.engine import Engine, EngineConfig
from engine.models import ModelRegistry
from gui.commands.common import CommandError
from storage import Database, open_database
from storage.database import StorageError


@asynccontextmanager
async def database(path: Path) -> AsyncIterator[Database]:
    try:
        db = await open_database(path)
    except StorageError as exc:
        raise CommandError(str(exc)) from exc
    try:
        yield db
    finally:
        await db.close()


@asynccontextmanager
async def headless_engine(path: Path, config: EngineConfig | None = None) -> AsyncIterator[Engine]:
    """An engine whose inference boundary is a ThreadPoolExecutor; stopped and flushed on exit."""
    registry = ModelRegistry.discover()
    async with database(path) as db:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="inference") as executor:
            engine = Engine(db, registry, executor, config)
            await engine.start()
            try:
                yield engine
            finally:
                await engine.stop()
