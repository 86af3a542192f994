"""`inferdeck export RUN_ID --format chrome-trace|csv|jsonl`: a run's requests to standard
output, or to a file through `engine.export.export_file` (whole or not at all)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import export
from engine.cli.common import EXIT_OK, CommandError, SubParsers, database, db_path, warn
from engine.cli.runs import find_run
from storage import queries
from storage.database import LiveDatabaseError


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("export", help="export a run's requests and traces")
    p.add_argument("run_id", metavar="RUN_ID", help="a run ID or a unique prefix of one")
    p.add_argument("--format", required=True, choices=export.FORMATS)
    p.add_argument("--out", metavar="PATH", help="file to write (default: standard output)")
    p.add_argument("--db", help="database file")
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    async with database(db_path(args.db)) as db:
        row = await find_run(db.reader, args.run_id)
        rows = queries.iter_run_requests(db.reader, row.run_id)
        if args.out is None:
            await export.WRITERS[args.format](rows, sys.stdout, row.started_us)
            return EXIT_OK
        target = Path(args.out)
        try:
            count = await export.export_file(target, args.format, rows, row.started_us)
        except LiveDatabaseError as exc:
            raise CommandError(
                f"--out {args.out}: that is the database; choose another file"
            ) from exc
        except OSError as exc:
            raise CommandError(f"--out {args.out}: {exc.strerror or exc}") from exc
        warn(f"wrote {count} requests of run {row.run_id} to {target}")
    return EXIT_OK
