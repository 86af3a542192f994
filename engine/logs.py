"""Where log records go, for every front door: the app, the commands, and `serve` (each worker).

Two places, both bounded:
- stderr: one line per record (`inferdeck: LEVEL: message`), control characters escaped;
- `crash.log` in the user's log folder: the records that carry a traceback, in full, in a file
  that is rotated at `MAX_BYTES` with `BACKUPS` old files kept.

Both drop repeats. A failure that recurs (every commit on a full disk, every accept with the
file descriptors used up) used to write a line or a traceback each time: 4,821 tracebacks in
20 s, half a million stderr lines in 30 s. Now the first record of a kind is written and the
same kind is only counted for `REPEAT_WINDOW_S`; then one line, the latest of them with the
count (`... (repeated 4,820 more times in 60 s)`), is written when the window has passed (at
the next record of any kind, or of that kind), when the handler closes at exit, or on SIGTERM
in `serve`. "The same kind" is the logger, the level, the message before its arguments are
filled in (digits ignored when it had none) and the exception type: `request %s failed` for ten
thousand requests is one kind. Records below WARNING (the service's per-request access lines)
are never merged.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import re
import signal
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from engine.cli.common import printable

CRASH_LOG = "crash.log"
MAX_BYTES = 1 << 20  # a crash log past 1 MiB has nothing a bug report needs that 1 MiB lacks
BACKUPS = 3
REPEAT_WINDOW_S = 60.0
# Kinds of record remembered at once; past it the oldest is forgotten (its count written).
MAX_KINDS = 256
STDERR_FORMAT = "inferdeck: %(levelname)s: %(message)s"
CRASH_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"

_DIGITS = re.compile(r"\d+")


def log_dir() -> Path:
    return platformdirs.user_log_path("inferdeck", appauthor=False)


def crash_log_path() -> Path:
    return log_dir() / CRASH_LOG


# A count to write: the latest record dropped, how many were, over how many seconds.
_Count = tuple[logging.LogRecord, int, float]


@dataclass(slots=True)
class _Kind:
    """The rate limiter's state for one kind of log record (see `RepeatGate`)."""

    shown_at: float  # when a record of this kind was last written
    count: int = 0  # records dropped since then
    last: logging.LogRecord | None = None  # the latest dropped one, for the closing count


class RepeatGate:
    """Decides, for one handler, which records are written and which are only counted."""

    def __init__(
        self,
        window_s: float = REPEAT_WINDOW_S,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.level = level
        self._clock = clock
        self._kinds: OrderedDict[tuple[object, ...], _Kind] = OrderedDict()
        self._lock = threading.Lock()
        self._swept_at = clock()

    @staticmethod
    def kind(record: logging.LogRecord) -> tuple[object, ...]:
        message = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        if not record.args:
            # A message formatted before logging (asyncio's, an f-string) differs in its
            # numbers (a file descriptor, a port, a count) from one time to the next.
            message = _DIGITS.sub("#", message)
        error = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        return (record.name, record.levelno, message, error)

    def admit(self, record: logging.LogRecord) -> tuple[bool, _Count | None]:
        """Whether to write `record`, and a count to write before it: that of its kind's last
        window, when that window has passed and its count is not written yet."""
        if record.levelno < self.level:
            return True, None
        key = self.kind(record)
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(key)
            if seen is not None and now - seen.shown_at < self.window_s:
                seen.count += 1
                seen.last = record
                return False, None
            self._kinds[key] = _Kind(now)
            self._kinds.move_to_end(key)
        if seen is None or not seen.count or seen.last is None:
            return True, None
        return True, (seen.last, seen.count, now - seen.shown_at)

    def due(self, everything: bool = False) -> list[_Count]:
        """Counts to write now: of the kinds forgotten to keep at most `MAX_KINDS`, of those
        whose window has passed with no record to carry them (looked for at most once a
        second), and, when `everything`, all that are pending."""
        now = self._clock()
        out: list[_Count] = []

        def pending(seen: _Kind) -> None:
            if seen.count and seen.last is not None:
                out.append((seen.last, seen.count, now - seen.shown_at))

        with self._lock:
            while len(self._kinds) > MAX_KINDS:
                pending(self._kinds.popitem(last=False)[1])
            if not everything and now - self._swept_at < 1.0:
                return out
            self._swept_at = now
            for key, seen in list(self._kinds.items()):
                if now - seen.shown_at >= self.window_s:
                    pending(seen)
                    del self._kinds[key]
                elif everything:
                    pending(seen)
                    seen.count, seen.last, seen.shown_at = 0, None, now
        return out


def _with_count(record: logging.LogRecord, count: int, seconds: float) -> logging.LogRecord:
    """The line that says how many records of a kind were dropped since the last one written:
    the latest of them, without its traceback, and the count."""
    fields: dict[str, Any] = dict(record.__dict__)
    fields["msg"] = f"{record.getMessage()} (repeated {count:,} more times in {seconds:,.0f} s)"
    fields.update(args=None, exc_info=None, exc_text=None, stack_info=None)
    return logging.makeLogRecord(fields)


# Every repeat-dropping handler alive, so a stop signal can make them write what they counted.
_GATED: weakref.WeakSet[_DropsRepeats] = weakref.WeakSet()


class _DropsRepeats(logging.Handler):
    """The repeat gate in front of a handler. A per-handler gate, not a shared filter: each
    destination must see the first record of a kind, and (on Python 3.11) a filter cannot hand
    the handler a changed copy of the record without changing it for every other handler."""

    gate: RepeatGate

    def wants(self, record: logging.LogRecord) -> bool:
        """Whether this destination takes `record` at all (asked before it is counted)."""
        return True

    def handle(self, record: logging.LogRecord) -> bool:
        self._write_counts(self.gate.due())
        if not self.wants(record):
            return False
        write, count = self.gate.admit(record)
        if count is not None:
            self._write_counts([count])
        return super().handle(record) if write else False

    def _write_counts(self, due: list[_Count]) -> None:
        for last, count, seconds in due:
            super().handle(_with_count(last, count, seconds))

    def write_pending_counts(self) -> None:
        self._write_counts(self.gate.due(everything=True))

    def close(self) -> None:
        # At exit (logging.shutdown) or on reconfiguration: no count is left unsaid.
        self.write_pending_counts()
        super().close()


class OneLineFormatter(logging.Formatter):
    """One line per record: no traceback (that is in the crash log), no raw control characters
    (a file or target name in a message must not drive the terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            record = logging.makeLogRecord(
                {**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None}
            )
        return printable(super().format(record))


class StderrHandler(_DropsRepeats, logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, one line per record, repeats counted."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__(sys.stderr)
        self.gate = RepeatGate(window_s)
        _GATED.add(self)
        self.setFormatter(OneLineFormatter(STDERR_FORMAT))

    def handleError(self, record: logging.LogRecord) -> None:
        # stderr itself failed (a closed pipe): there is nowhere left to say so, and logging's
        # default would write a traceback to that same stderr for every record.
        pass


class CrashLogHandler(_DropsRepeats, logging.handlers.RotatingFileHandler):
    """The records that carry a traceback, in full, in a rotated file; repeats counted.

    Several `serve` workers may share the file, so before each write it checks that the file
    it holds is still the one at `path` (another process may have rotated it) and reopens it
    if not, as `WatchedFileHandler` does. A write that fails (a full disk, no descriptors left)
    is said once on stderr, in one line, until a write succeeds again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int = MAX_BYTES,
        backups: int = BACKUPS,
        window_s: float = REPEAT_WINDOW_S,
    ) -> None:
        super().__init__(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
        self.gate = RepeatGate(window_s)
        _GATED.add(self)
        self.setFormatter(logging.Formatter(CRASH_FORMAT))
        self._failing = False  # the last write failed (and that was said)
        self._failed_now = False

    @property
    def failing(self) -> bool:
        """Whether the latest write failed."""
        return self._failing

    def wants(self, record: logging.LogRecord) -> bool:
        return bool(record.exc_info or record.exc_text)

    def _open(self) -> Any:
        # The folder is made at the first traceback, not by every command that starts.
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is not None and self._moved():
            with contextlib.suppress(OSError):
                self.stream.close()
            self.stream = None  # reopened by emit (delay=True)
        self._failed_now = False
        super().emit(record)
        if not self._failed_now:
            self._failing = False

    def _moved(self) -> bool:
        if self.stream is None:
            return False
        try:
            return os.stat(self.baseFilename).st_ino != os.fstat(self.stream.fileno()).st_ino
        except OSError:
            return True

    def handleError(self, record: logging.LogRecord) -> None:
        # logging's default prints a traceback to stderr per failed record: on a full disk that
        # was a traceback per failure, on stderr instead of the file.
        self._failed_now = True
        if not self._failing:
            self._failing = True
            error = sys.exc_info()[1]
            with contextlib.suppress(Exception):
                sys.stderr.write(
                    printable(f"inferdeck: cannot write {self.baseFilename}: {error}") + "\n"
                )
                sys.stderr.flush()
        if self.stream is not None:
            with contextlib.suppress(Exception):
                self.stream.close()
            self.stream = None  # a fresh open next time


# A logger that writes only to the crash log: the command line's own last-resort catch says
# its one line itself and keeps the traceback here.
CRASH_LOGGER = "inferdeck.crash"


def configure(crash_path: Path | None = None, level: int = logging.WARNING) -> None:
    """The commands' and the app's logging: the root logger writes to stderr and the crash log."""
    root = logging.getLogger()
    crash_logger = logging.getLogger(CRASH_LOGGER)
    for logger in (root, crash_logger):
        # Only a previous call's handlers are replaced: one a host installed (pytest's capture,
        # an embedding program's) stays.
        for old in logger.handlers[:]:
            if isinstance(old, _DropsRepeats):
                logger.removeHandler(old)
                old.close()
    crash = CrashLogHandler(crash_path or crash_log_path())
    root.addHandler(StderrHandler())
    root.addHandler(crash)
    root.setLevel(level)
    crash_logger.addHandler(crash)
    crash_logger.propagate = False


def log_crash(error: BaseException) -> str:
    """Keep `error`'s traceback in the crash log; returns where, for the user's one line."""
    logger = logging.getLogger(CRASH_LOGGER)
    logger.error("internal error: %s: %s", type(error).__name__, error, exc_info=error)
    for handler in logger.handlers:
        if isinstance(handler, CrashLogHandler) and not handler.failing:
            return handler.baseFilename
    return "(could not write a log)"


def _counts_then_default(signum: int, frame: object) -> None:
    """SIGTERM: write the counts still pending, then end exactly as the signal would have."""
    for handler in list(_GATED):
        with contextlib.suppress(Exception):
            handler.write_pending_counts()
            handler.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def serve_stderr_handler() -> StderrHandler:
    """`serve`'s stderr handler; in each process it also makes SIGTERM write pending counts.

    uvicorn stops gracefully on SIGTERM and then raises SIGTERM again under the handler that
    was there before it started, so a stopped server (or worker) dies by the signal and never
    runs `atexit`, where the counts are otherwise written. With this handler in place the
    counts go out first and the process still ends by SIGTERM, as before. Installed only over
    the default action, and only from the main thread (where signal handlers live).
    """
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _counts_then_default)
    return StderrHandler()


def serve_config(crash_path: Path | None = None) -> dict[str, Any]:
    """uvicorn's `log_config` for `serve`: applied in the main process and again in each worker
    (a fresh interpreter), so the same handlers guard every process. The per-request access
    lines (JSON, INFO) keep a plain handler of their own; everything else, uvicorn's own errors
    included, goes through the same stderr and crash-log handlers as the commands'."""
    crash = str(crash_path or crash_log_path())
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "access": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
            "stderr": {"()": "engine.logs.serve_stderr_handler"},
            "crash": {"()": "engine.logs.CrashLogHandler", "path": crash},
        },
        "loggers": {
            "inferdeck.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            CRASH_LOGGER: {"handlers": ["crash"], "level": "ERROR", "propagate": False},
            "engine.server.app": {
                "handlers": ["stderr", "crash"],
                "level": "INFO",
                "propagate": False,
            },
            "uvicorn.error": {"handlers": ["stderr", "crash"], "level": "INFO", "propagate": False},
        },
        "root": {"handlers": ["stderr", "crash"], "level": "WARNING"},
    }
