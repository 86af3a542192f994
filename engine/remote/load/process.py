"""`LoadProcess`: a load run in a child process of its own, watched from the caller's process.

Sending, measuring and recording 1,000 requests a second takes about a core of Python. In the
desktop app's process that core's worth shares one interpreter lock with the GUI thread, so
the window stutters and the run falls behind its rate, whichever thread runs it (measured: a
load thread there reached 754 of 1,000 /s with a UI lag p99 of 146 ms). So the app runs each
load the way `inferdeck load` runs: in a process of its own (`engine.remote.load.child`).

The two sides speak JSON lines over the child's pipes:

- stdin, parent to child: first the run's spec (target, token, plan, payload choice, database
  path), then `"stop"` lines, then the answer to the child's `ending` event: a JSON object
  that joins the stored summary (the app's UI loop lag over the run). End of input means the
  parent has gone: the child stops the run and stores what it sent.
- stdout, child to parent: one event a line, `{"event": ...}`: `started` (with the target's
  health, in words), `snapshot` (a `LoadSnapshot`'s fields, `publish_every_s` apart), `ending`
  (the summary is about to be stored), then `finished` (the stored summary) or `failed` (why,
  in words).

The token crosses on stdin only: never in the child's arguments or environment, where other
users' `ps` could read it. A thread of the caller's reads the events, keeps the last snapshot
for `latest()` (any thread may call it) and ends with the run's `LoadOutcome` in `future`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from engine.remote.load.snapshot import LoadSnapshot
from engine.remote.plan import LoadPlan
from engine.remote.targets import Target

CHILD_MODULE = "engine.remote.load.child"
STOP_LINE = b"stop\n"
ENDING_WAIT_S = 5.0  # how long the child waits for the answer to its `ending` event


@dataclass(frozen=True)
class LoadSpec:
    """Everything the child needs for one run; crosses as the first line of its stdin."""

    target: Target
    plan: LoadPlan
    payload_kind: str = "example"  # "example", "form" (JSON text), "file" (a path), "history"
    payload_text: str = ""
    token: str | None = None
    db_path: str | None = None  # the run and its requests are stored here (None: not stored)
    trace_every: int = 50
    publish_every_s: float = 0.05

    def to_line(self) -> bytes:
        fields = asdict(self)
        fields["target"] = self.target.model_dump()
        fields["plan"] = asdict(self.plan)
        return orjson.dumps(fields) + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> LoadSpec:
        fields = orjson.loads(line)
        fields["target"] = Target.model_validate(fields["target"])
        fields["plan"] = LoadPlan(**fields["plan"])
        return cls(**fields)


def snapshot_event(snap: LoadSnapshot) -> bytes:
    return orjson.dumps({"event": "snapshot", **asdict(snap)}) + b"\n"


def snapshot_from_event(event: dict[str, Any]) -> LoadSnapshot:
    fields = dict(event)
    del fields["event"]
    return LoadSnapshot(**fields)


@dataclass(frozen=True)
class LoadOutcome:
    """How a run ended: its stored summary and final figures, or why not (in words)."""

    summary: dict[str, Any] | None = None
    final: LoadSnapshot | None = None
    error: str | None = None


class LoadProcess:
    """One run in a child process: `start()`, `latest()`, `stop()`, `join()`.

    `on_started(health_text)` and `summary_extra()` are called on the reader thread: the first
    when the target passed its health check and traffic starts, the second as the run ends
    (its dict joins the stored summary; it should answer within `ENDING_WAIT_S`).
    """

    def __init__(
        self,
        spec: LoadSpec,
        *,
        on_started: Callable[[str], None] | None = None,
        summary_extra: Callable[[], dict[str, Any]] | None = None,
        name: str = "load-run",
    ) -> None:
        self.spec = spec
        self.future: concurrent.futures.Future[LoadOutcome] = concurrent.futures.Future()
        self._on_started = on_started
        self._summary_extra = summary_extra
        self._latest: LoadSnapshot | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdin_lock = threading.Lock()  # "stop" (any thread) and the extra (reader)
        self._stop_asked = False
        self._spec_sent = False  # the spec is on the child's stdin: lines may follow it
        self._thread = threading.Thread(target=self._read, name=name, daemon=False)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> concurrent.futures.Future[LoadOutcome]:
        # Running from now: a caller's cancelled wait (`asyncio.wrap_future`) must not cancel
        # the future the thread will set.
        self.future.set_running_or_notify_cancel()
        self._thread.start()
        return self.future

    def latest(self) -> LoadSnapshot | None:
        """The last snapshot the child sent (the final one once it finished), None before the
        first; from any thread (a snapshot is immutable, handed over by one assignment)."""
        return self._latest

    def stop(self) -> None:
        """End the run early (from any thread): nothing new is sent, what is out gets its
        grace, every request sent is stored. Before traffic starts, the run does not start."""
        self._stop_asked = True
        self._send(STOP_LINE)

    def kill(self) -> None:
        """End the child at once (SIGKILL): for a child that does not end when told to stop.
        What it committed stays; its run is marked interrupted when the database is next
        opened (the recovery of runs whose process died)."""
        with self._stdin_lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.kill()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _send(self, line: bytes) -> None:
        with self._stdin_lock:
            proc = self._proc
            if proc is None or not self._spec_sent or proc.stdin is None or proc.stdin.closed:
                return  # the spec is not out yet (the stop flag goes after it) or it is gone
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
            except (ValueError, OSError):
                # The child has ended (its end is read from stdout). The unsent bytes would
                # make every later flush, the close's too, raise again: drop the pipe now.
                _close_quietly(proc.stdin)

    def _read(self) -> None:
        try:
            outcome = self._run_child()
        except Exception as exc:  # a spawn that failed, or a bug: said in words, never raised
            outcome = LoadOutcome(error=f"the load process could not run: {exc}")
        self.future.set_result(outcome)

    def _run_child(self) -> LoadOutcome:
        # The child's stderr goes to a file, read only if it ends without saying how: a pipe
        # nobody reads while the run goes could fill and stall the child.
        with tempfile.TemporaryFile() as errors:
            proc = self._spawn(errors)
            outcome: LoadOutcome | None = None
            try:
                self._send_spec(proc)
                assert proc.stdout is not None
                for line in proc.stdout:
                    try:
                        event = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue  # not an event (the child sends its own output to stderr)
                    outcome = self._on_event(event) if isinstance(event, dict) else None
                    if outcome is not None:
                        break
            finally:
                with self._stdin_lock:
                    if proc.stdin is not None:
                        _close_quietly(proc.stdin)  # (a child still running reads "stop")
                code = proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
            if outcome is not None:
                return outcome
            errors.seek(0)
            return LoadOutcome(error=_ended_without_outcome(code, errors))

    def _spawn(self, errors: IO[bytes]) -> subprocess.Popen[bytes]:
        root = str(Path(__file__).resolve().parents[3])  # the folder holding `engine/`
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, _pythonpath())))}
        proc = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
            # Its own session: a Ctrl+C in the app's terminal reaches the app, which stops
            # the run through stdin (and stores it), not the child mid-write.
            start_new_session=True,
        )
        with self._stdin_lock:
            self._proc = proc
        return proc

    def _send_spec(self, proc: subprocess.Popen[bytes]) -> None:
        """The spec, then "stop" if one was asked: the spec is written without the lock (a
        large one waits for the child to start reading, and a Stop click must not wait with
        it); stop() and this each look at the other's flag under the lock, so a stop asked
        meanwhile is sent once at least."""
        assert proc.stdin is not None
        try:
            proc.stdin.write(self.spec.to_line())
            proc.stdin.flush()
        except (ValueError, OSError):
            _close_quietly(proc.stdin)  # it died starting: its end is read from stdout
            return
        with self._stdin_lock:
            self._spec_sent = True
        if self._stop_asked:
            self._send(STOP_LINE)

    def _on_event(self, event: dict[str, Any]) -> LoadOutcome | None:
        kind = event.get("event")
        if kind == "snapshot":
            self._latest = snapshot_from_event(event)
        elif kind == "started":
            if self._on_started is not None:
                self._on_started(str(event.get("health", "")))
        elif kind == "ending":
            extra = self._summary_extra() if self._summary_extra is not None else {}
            self._send(orjson.dumps(extra) + b"\n")
        elif kind == "finished":
            final = event.get("final")
            if final is not None:
                self._latest = snapshot_from_event(final)
            return LoadOutcome(summary=event["summary"], final=self._latest)
        elif kind == "failed":
            return LoadOutcome(error=str(event.get("error") or "the run could not start"))
        return None


def _close_quietly(pipe: IO[bytes]) -> None:
    """Close a pipe to a child that may have gone: bytes it could not take are dropped."""
    with contextlib.suppress(OSError, ValueError):
        pipe.close()
    if not pipe.closed:  # the close's flush failed first: the descriptor is still ours
        with contextlib.suppress(OSError):
            os.close(pipe.fileno())


def _pythonpath() -> str:
    return os.environ.get("PYTHONPATH", "")


def _ended_without_outcome(code: int, errors: IO[bytes]) -> str:
    """Why the run ended, for a child that said nothing: its exit and its last error line."""
    tail = errors.read()[-4000:].decode("utf-8", "replace").strip().splitlines()
    last = tail[-1] if tail else ""
    why = f": {last}" if last else ""
    return f"the load process ended unexpectedly (exit code {code}){why}"
