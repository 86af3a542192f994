"""Shared test set-up: offscreen Qt, a temporary database, and a runner for the real CLI."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Tests never need a display; set before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# QSettings (window layout, last model, theme) go to a scratch folder, never the user's own.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="inferdeck-test-config-")
# Likewise the crash log (platformdirs' user log folder lies under XDG_STATE_HOME).
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="inferdeck-test-state-")
# And the user's own models folder (platformdirs' user data folder lies under XDG_DATA_HOME).
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="inferdeck-test-data-")
os.environ.pop("INFERDECK_MODELS_DIR", None)

REPO = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    """What one `inferdeck` run left: exit status, stdout and stderr (and its --json summary)."""

    code: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        """The `--json` contract: the last stdout line is one JSON object."""
        lines = self.stdout.strip().splitlines()
        assert lines, f"no stdout; stderr: {self.stderr}"
        value = json.loads(lines[-1])
        assert isinstance(value, dict)
        return value


def run_on_qasync(app: Any, coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` to the end on a qasync loop over `app`, as the desktop app runs its work."""
    import qasync

    loop = qasync.QEventLoop(app)
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()
        stop_qt_timers(loop)
        # Collected here, on the GUI thread, when nothing else holds it.
        del loop
        gc.collect()


def stop_qt_timers(loop: Any) -> None:
    """Kill the Qt timers a closed qasync loop still owns, here on the GUI thread.

    qasync arms a Qt timer on one QObject of its loop per `call_later` (every sleep, every
    `asyncio.timeout`) and a cancelled handle keeps its timer until it fires. The loop can
    outlive its test (a widget qtbot deletes later holds a view's database, whose events hold
    the loop): a garbage collection on another thread (aiosqlite's, a worker's) then destroys
    that QObject where Qt cannot unregister its timers, and they fire into freed memory in a
    later test's event loop (a segfault in `QTimerInfoList::activateTimers`). Without timers,
    whoever frees the loop later, and on whichever thread, frees nothing Qt still uses.
    """
    from PySide6.QtCore import QAbstractEventDispatcher

    owner = loop._timer  # qasync's `_SimpleTimer`: the one QObject behind its call_later
    dispatcher = QAbstractEventDispatcher.instance()
    if dispatcher is not None:
        for info in dispatcher.registeredTimers(owner):
            owner.killTimer(info.timerId)


def run_cli(args: Sequence[str | os.PathLike[str]], db: Path, timeout: float = 120) -> CliResult:
    env = {**os.environ, "INFERDECK_DB": str(db)}
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "inferdeck.db"


@pytest.fixture
def cli(db_path: Path) -> Any:
    def call(*args: str | os.PathLike[str], timeout: float = 120) -> CliResult:
        return run_cli(args, db_path, timeout)

    return call
