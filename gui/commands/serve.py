"""`inferdeck serve`: the HTTP service over the engine, run by uvicorn.

Binds 127.0.0.1 unless told otherwise. One JSON line per request goes to stderr; SIGTERM or
Ctrl+C stops accepting, lets requests in flight finish and flushes the writer.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gui import logs
from gui.commands.common import EXIT_OK, CommandError, SubParsers, db_path


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("serve", help="the model-serving HTTP service")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, metavar="N")
    p.add_argument("--db", help="database file")
    p.add_argument("--models-dir", metavar="DIR", help="a folder of user models")
    p.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES")
    p.set_defaults(run=run, sync=True)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from engine.server.main import ENV_DB, ENV_MAX_BODY, ENV_MODELS

    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    if args.models_dir and not Path(args.models_dir).is_dir():
        raise CommandError(f"--models-dir {args.models_dir}: not a folder")
    os.environ[ENV_DB] = str(db_path(args.db).resolve())
    os.environ[ENV_MAX_BODY] = str(args.max_body)
    if args.models_dir:
        os.environ[ENV_MODELS] = str(Path(args.models_dir).resolve())
    # Each worker applies this config again: every process logs through the same bounded,
    # repeat-counting stderr and crash-log handlers as the other commands.
    config = logs.serve_config()
    uvicorn.run(
        "engine.server.main:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,  # our own line per request carries the request ID
        log_config=config,
        timeout_graceful_shutdown=30,
    )
    return EXIT_OK
