"""`LoopThread`: one coroutine run on a thread of its own, with an asyncio loop of its own.

A load run sends, measures and records up to thousands of requests a second. Where the caller's
loop also paints a window (the desktop app's qasync loop is its GUI thread), sharing it would
make every request a little stutter, so the app runs the whole load (its client, schedule,
recorder and database connections) here instead, as load tools keep their generator off the
thread that draws. The caller's side only ever touches a `concurrent.futures.Future` (awaited
with `asyncio.wrap_future`) and `call_soon` (the run loop's `call_soon_threadsafe`).

Whatever the coroutine opens belongs to this thread's loop: an aiosqlite connection, an
httpx client or an `asyncio.Event` must be made, used and closed inside it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LoopThread(Generic[T]):
    """Runs `main()` to its end on a new thread and loop; `future` holds its result.

    The thread is not a daemon: a process that quits without waiting still lets the run
    finish storing what it sent (the app waits for it anyway, see `LoadHost.aclose`).
    """

    def __init__(self, main: Callable[[], Coroutine[Any, Any, T]], name: str = "load-run") -> None:
        self._main = main
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()  # guards `_loop` while it opens and closes
        self._thread = threading.Thread(target=self._run, name=name, daemon=False)

    def start(self) -> concurrent.futures.Future[T]:
        # Running from now: a caller's cancelled wait (`asyncio.wrap_future`) must not cancel
        # the future the thread will set.
        self.future.set_running_or_notify_cancel()
        self._thread.start()
        return self.future

    def call_soon(self, callback: Callable[[], object]) -> bool:
        """Run `callback` on the thread's loop, soon; False when the loop is not running
        (not started yet, or finished: the caller's flags are read there instead)."""
        with self._lock:
            loop = self._loop
            if loop is None or loop.is_closed():
                return False
            loop.call_soon_threadsafe(callback)
            return True

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        # A plain asyncio loop, named outright: the process's policy may make another kind
        # (the app's, qasync's, makes loops that run on the GUI thread's Qt timers).
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            with self._lock:
                self._loop = runner.get_loop()
            try:
                result = runner.run(self._main())
            except BaseException as exc:  # the caller hears every failure through the future
                self.future.set_exception(exc)
            else:
                self.future.set_result(result)
            finally:
                with self._lock:
                    self._loop = None
