"""`inferdeck serve`: the HTTP service over the engine, run by uvicorn.

Binds 127.0.0.1 unless told otherwise. One JSON line per request goes to stderr; SIGTERM,
Ctrl+C or SIGHUP stops accepting, lets requests in flight finish, flushes the writer and exits
0 (see engine.server.draining).

Whatever can stop the service from starting is found here, before a model is loaded and before
any worker starts: the arguments, the port (bound here and handed to uvicorn, so a port in use
is one line at once rather than a traceback after the models have loaded) and the database
(opened and migrated once, so a folder, a corrupt, read-only or newer-schema file is one line
too). Each is a `CommandError`: one line, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from engine.cli.common import (
    EXIT_CANNOT_START,
    EXIT_OK,
    CommandError,
    SubParsers,
    db_path,
    needs_extras,
)

# A client gets this long to send a request's head, and then this long to send its body;
# past either the connection is closed (see engine.server.protocol).
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
# On SIGTERM the service stops accepting and gives requests in flight this long to finish
# (a Kubernetes pod's terminationGracePeriodSeconds must be longer).
DRAIN_TIMEOUT_S = 30
# prometheus-client's multiprocess folder; read when it is first imported, so it is set here,
# not imported from engine.server.metrics (which imports prometheus-client).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCK_FILE = "inferdeck-serve.lock"
_HELD: list[int] = []
_METRIC_FILE = re.compile(r"(counter|gauge_[a-z]+|histogram|summary)_\d+\.db")


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("serve", help="the model-serving HTTP service")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, metavar="N")
    p.add_argument("--db", help="database file")
    p.add_argument("--models-dir", metavar="DIR", help="a folder of user models")
    p.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES")
    p.add_argument(
        "--header-timeout",
        type=float,
        default=HEADER_TIMEOUT_S,
        metavar="S",
        help=f"seconds a client has to send a request's headers (default {HEADER_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=BODY_TIMEOUT_S,
        metavar="S",
        help=f"seconds a client has to send a request's body (default {BODY_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--no-metrics", action="store_true", help="do not count requests for GET /metrics"
    )
    p.set_defaults(run=run, sync=True)


def _check_arguments(args: argparse.Namespace) -> None:
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    if args.max_body < 1:
        raise CommandError(f"--max-body must be at least 1 (got {args.max_body})")
    for flag, value in (
        ("--header-timeout", args.header_timeout),
        ("--body-timeout", args.body_timeout),
    ):
        if not value > 0 or value == float("inf"):  # `not >` also refuses NaN
            raise CommandError(f"{flag} must be a number of seconds above 0 (got {value})")
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be 0 to 65535 (got {args.port})")
    if args.models_dir and not Path(args.models_dir).is_dir():
        raise CommandError(f"--models-dir {args.models_dir}: not a folder")


def _listen(host: str, port: int) -> socket.socket:
    """The service's socket, bound now, as uvicorn would bind it (SO_REUSEADDR, inheritable
    for `--workers`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio turns on TCP_NODELAY only for sockets that say they are
    # TCP, and accepted connections inherit it. Without it every keep-alive answer waited for
    # the client's delayed ACK (~40 ms: 320 requests/s at 16 connections instead of thousands).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CommandError(f"cannot listen on {host}:{port}: {reason}") from exc
    sock.set_inheritable(True)
    return sock


def _check_database(path: Path) -> None:
    """Open (create, migrate, recover) and close the database: each worker then opens a file
    known to work, and a bad one is refused before any model loads."""
    from engine.cli.common import database

    async def probe() -> None:
        async with database(path):
            pass

    asyncio.run(probe())


def run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    sock = _listen(args.host, args.port)  # first: before the imports that bring torch in
    if args.workers > 1:
        metrics_dir = _shared_metrics_dir()
    else:
        # One process keeps its metrics in memory; a folder inherited from the environment
        # would mix in an earlier process's values (and a dead one's "not ready").
        metrics_dir = None
        os.environ.pop(MULTIPROC_ENV, None)
    try:
        # The service's packages come with the `serve` install group: without it, one line
        # that names the group, not a traceback.
        with needs_extras("`inferdeck serve`"):
            import uvicorn

            from engine.server.draining import DrainingServer
            from engine.server.main import (
                ENV_BODY_TIMEOUT,
                ENV_DB,
                ENV_HEADER_TIMEOUT,
                ENV_MAX_BODY,
                ENV_METRICS,
                ENV_MODELS,
            )

        database = db_path(args.db).resolve()
        _check_database(database)
        os.environ[ENV_DB] = str(database)
        os.environ[ENV_MAX_BODY] = str(args.max_body)
        os.environ[ENV_HEADER_TIMEOUT] = repr(args.header_timeout)
        os.environ[ENV_BODY_TIMEOUT] = repr(args.body_timeout)
        os.environ[ENV_METRICS] = "0" if args.no_metrics else "1"
        if args.models_dir:
            os.environ[ENV_MODELS] = str(Path(args.models_dir).resolve())
        options: dict[str, Any] = {
            "host": args.host,
            "port": args.port,
            # uvicorn's httptools protocol with a header and a body deadline, and room kept for
            # new clients while slow ones hold many sockets.
            "http": "engine.server.protocol:DeadlineProtocol",
            "access_log": False,  # our own line per request carries the request ID
            "log_config": _log_config(),
            "timeout_graceful_shutdown": DRAIN_TIMEOUT_S,
        }
        if args.workers > 1:
            return _run_workers(args.workers, sock, options)
        server = DrainingServer(
            uvicorn.Config("engine.server.main:app_from_env", factory=True, **options)
        )
        try:
            server.run(sockets=[sock])
        except SystemExit as exc:
            # uvicorn exits 3 when the application's start-up fails; it has logged why.
            return EXIT_CANNOT_START if exc.code else EXIT_OK
        except KeyboardInterrupt:
            pass
        return EXIT_OK if server.started else EXIT_CANNOT_START
    finally:
        sock.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _shared_metrics_dir() -> Path | None:
    """Point prometheus-client's multiprocess mode at an empty folder, before anything imports
    it: every worker writes its values there and a scrape of any worker reads them all. Returns
    the folder made here (removed on exit), or None when the caller chose one (then emptied of
    an earlier run's values)."""
    chosen = os.environ.get(MULTIPROC_ENV)
    if chosen:
        folder = Path(chosen)
        if not folder.is_dir():
            raise CommandError(f"{MULTIPROC_ENV}={chosen}: not a folder")
        _hold_folder(folder)
        # Every `*.db` there is read at each scrape as a metrics file: anything else would
        # break every scrape, and is not ours to delete.
        files = [path for path in folder.glob("*.db") if path.is_file()]
        foreign = [path.name for path in files if not _METRIC_FILE.fullmatch(path.name)]
        if foreign:
            raise CommandError(
                f"{MULTIPROC_ENV}={chosen} holds {', '.join(sorted(foreign)[:3])}, which "
                "prometheus-client would read as metrics: give it a folder of its own"
            )
        for old in files:  # an earlier run's values
            old.unlink()
        return None
    made = Path(tempfile.mkdtemp(prefix="inferdeck-metrics-"))
    os.environ[MULTIPROC_ENV] = str(made)
    return made


def _hold_folder(folder: Path) -> None:
    """Lock the metrics folder for this service's life (its workers inherit the lock): a second
    service clearing it would silently cut the first one's figures off."""
    lock = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        raise CommandError(
            f"{MULTIPROC_ENV}={folder} is in use by another `inferdeck serve`: give each its own"
        ) from None
    _HELD.append(lock)  # open until the process exits


def _run_workers(workers: int, sock: socket.socket, options: dict[str, Any]) -> int:
    """Load the models once here, then fork the workers (see engine.server.prefork)."""
    import uvicorn
    from prometheus_client import multiprocess

    from engine.server.main import preloaded_app
    from engine.server.prefork import Supervisor, block_signals

    block_signals()  # a stop asked for while the models load is read by the supervisor
    try:
        app = preloaded_app(workers)
    except Exception as exc:  # a model folder or the torch runtime, before any worker exists
        raise CommandError(f"cannot load the models: {type(exc).__name__}: {exc}") from exc
    config = uvicorn.Config(app, **options)
    config.load()  # in the parent too: the workers inherit it loaded
    table = app.app.state.statistics_table  # type: ignore[attr-defined]
    supervisor = Supervisor(config, sock, workers, multiprocess.mark_process_dead, table.claim)
    status = supervisor.run()
    return EXIT_CANNOT_START if status else EXIT_OK


def _log_config() -> dict[str, object]:
    # Applied here and again in each worker: every process logs through the same bounded,
    # repeat-counting stderr and crash-log handlers as the other commands (engine/logs.py).
    from engine import logs

    return logs.serve_config()
