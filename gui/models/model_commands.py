"""`inferdeck models add` and `inferdeck models remove`, run from the app in a child process.

Adding a model runs the user's code (a `.py` file's `build()`, an export, a check against its
examples): that must never run inside the app, where a crash, a hang or a stray global would
take the window with it. So the app runs the very command a user would type, `python -m
engine.cli models add SOURCE --json`, on the qasync loop (`asyncio.create_subprocess_exec`):
its stderr lines are progress, passed on as they come; its last stdout line is the JSON report.
A failure is one line (the command's own message, or the last line of whatever it left), never
a traceback; Cancel terminates the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import engine

LINE_LIMIT = 1 << 20  # a progress line longer than this is cut, not an error
MESSAGE_CHARS = 300  # a one-line error is cut here: it goes in a status line
STOP_WAIT_S = 5.0  # after `terminate`, how long a child may take before it is killed
_TRACEBACK = "Traceback (most recent call last):"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class CommandFailed(Exception):
    """A models command that did not succeed; its message is one line, fit for a status line."""


@dataclass(frozen=True)
class AddReport:
    """What `inferdeck models add --json` reports: the model added, where, and how closely the
    exported model agreed with its source on the examples."""

    name: str
    version: str
    task: str
    folder: Path
    examples: int
    max_abs_diff: float | None
    seconds: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AddReport:
        diff = data.get("max_abs_diff")
        return cls(
            name=str(data["name"]),
            version=str(data.get("version", "")),
            task=str(data.get("task", "")),
            folder=Path(str(data.get("folder", ""))),
            examples=int(data.get("examples") or 0),
            max_abs_diff=None if diff is None else float(diff),
            seconds=float(data.get("seconds") or 0.0),
        )

    def sentence(self) -> str:
        """The report in words: "Added temperature v1 (tabular-regression): 3 examples
        checked, max difference 0 (2.1 s)"."""
        head = f"Added {self.name} v{self.version} ({self.task})"
        if self.examples and self.max_abs_diff is not None:
            agree = (
                f"{self.examples} example{'s' if self.examples != 1 else ''} checked, "
                f"max difference {self.max_abs_diff:.3g}"
            )
        else:
            agree = "no examples to check it against"
        return f"{head}: {agree} ({self.seconds:.1f} s)"


def add_args(source: Path) -> list[str]:
    return ["models", "add", str(source), "--json"]


def remove_args(name: str, models_dir: Path) -> list[str]:
    return ["models", "remove", name, "--models-dir", str(models_dir)]


def _clean(line: str) -> str:
    return _CONTROL.sub("", line).rstrip()


def one_line(lines: Sequence[str], code: int | None) -> str:
    """Why a command failed, in one line: its own last line (the CLI's message, or the last line
    of a traceback: the exception itself), without the program's name."""
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    last = last.removeprefix("inferdeck: ")
    if not last:
        last = f"the command stopped (exit status {code})"
    return last if len(last) <= MESSAGE_CHARS else last[: MESSAGE_CHARS - 1] + "…"


class ModelsCommand:
    """One `inferdeck models …` run in a child process: `run()` awaits it, `on_progress` hears
    each stderr line as it comes (none of a traceback), `cancel()` stops it."""

    def __init__(self, args: Sequence[str], on_progress: Callable[[str], None]) -> None:
        self.args = list(args)
        self.on_progress = on_progress
        self.process: asyncio.subprocess.Process | None = None
        self.cancelled = False
        self._lines: list[str] = []
        self._in_traceback = False

    async def run(self) -> str:
        """The command's stdout once it exits 0; `CommandFailed` (one line) otherwise."""
        # The child imports `engine` from where this app found it, whatever its working folder.
        root = str(Path(engine.__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"  # progress as it happens, not when a buffer fills
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "engine.cli",
                *self.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                limit=LINE_LIMIT,
            )
        except OSError as exc:
            raise CommandFailed(f"could not start the command: {exc.strerror or exc}") from exc
        process = self.process
        assert process.stdout is not None and process.stderr is not None
        try:
            out, _ = await asyncio.gather(process.stdout.read(), self._read_progress())
            code = await process.wait()
        except asyncio.CancelledError:
            await self.stop()
            raise
        text = out.decode("utf-8", errors="replace")
        if self.cancelled:
            raise CommandFailed("cancelled")
        if code != 0:
            # `--json` says why on stdout too ({"error": ...}); else stderr's last line does.
            raise CommandFailed(json_error(text) or one_line(self._lines, code))
        return text

    async def _read_progress(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        stream = self.process.stderr
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over LINE_LIMIT: take what there is of it
                raw = await stream.read(LINE_LIMIT)
            if not raw:
                return
            line = _clean(raw.decode("utf-8", errors="replace"))
            if line.startswith(_TRACEBACK):
                # A crash's frames are for the log, not the window: only its last line (the
                # exception) is kept, as the failure's message.
                self._in_traceback = True
            if not line:
                continue
            self._lines.append(line)
            del self._lines[:-50]  # the message is the last line; keep a few for context
            if not self._in_traceback:
                self.on_progress(line)

    def cancel(self) -> None:
        """Stop the child (the user pressed Cancel); `run()` then fails with "cancelled"."""
        if self.process is not None and self.process.returncode is None:
            self.cancelled = True
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()

    async def stop(self) -> None:
        """Stop the child and wait for it (the app is closing); killed if it lingers."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        self.cancel()
        try:
            await asyncio.wait_for(process.wait(), STOP_WAIT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _last_object(stdout: str) -> dict[str, Any] | None:
    lines = stdout.strip().splitlines()
    try:
        data = orjson.loads(lines[-1]) if lines else None
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def json_error(stdout: str) -> str | None:
    """The one-line `error` of a `--json` command that failed, if it printed one."""
    data = _last_object(stdout)
    error = data.get("error") if data is not None else None
    return one_line([str(error)], None) if error else None


def add_report(stdout: str) -> AddReport:
    """The report on `models add --json`'s last stdout line; `CommandFailed` if there is none."""
    data = _last_object(stdout)
    try:
        if data is None:
            raise ValueError("no JSON object")
        return AddReport.from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandFailed("the command gave no report of what it added") from exc
