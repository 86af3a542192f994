"""The desktop app's inference boundary: a `concurrent.futures.Executor` over a QThreadPool.

The engine only sees an `Executor`; here its jobs run as QRunnables on a private QThreadPool, so
Qt owns the worker threads and shuts them down with the app. Results travel back as
`concurrent.futures.Future`s, which `run_in_executor` turns into awaitables on the qasync loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

from PySide6.QtCore import QRunnable, QThreadPool

P = ParamSpec("P")
T = TypeVar("T")


class _Job(QRunnable):
    """One submitted call and its future, run on the pool; `QThreadPoolExecutor.submit` makes it."""

    def __init__(
        self,
        future: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        super().__init__()
        self._future = future
        self._fn = fn
        self._args = args
        self._kwargs = kwargs

    def run(self) -> None:
        if not self._future.set_running_or_notify_cancel():
            return
        try:
            result = self._fn(*self._args, **self._kwargs)
        except BaseException as exc:  # handed to whoever awaits the future
            self._future.set_exception(exc)
        else:
            self._future.set_result(result)
        finally:
            del self._fn, self._args, self._kwargs  # drop references on the worker thread


class QThreadPoolExecutor(Executor):
    """The engine's inference executor over a private QThreadPool; `gui.app` hands it in."""

    def __init__(self, max_workers: int = 1) -> None:
        self._pool = QThreadPool()
        self._pool.setMaxThreadCount(max_workers)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def pool(self) -> QThreadPool:
        return self._pool

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            future: Future[T] = Future()
            self._pool.start(_Job(future, fn, args, kwargs))
            return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
        if cancel_futures:
            self._pool.clear()  # jobs not started yet never run; their futures stay pending
        if wait:
            self._pool.waitForDone()
