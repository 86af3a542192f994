"""Forward-only schema migrations keyed by `PRAGMA user_version`.

Each entry in `MIGRATIONS` takes a database from version i to i + 1. A migration never edits an
earlier one: a file made by any released version is brought forward by running the ones it lacks.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: requests and runs, the history every view reads.
    """
    CREATE TABLE runs (
        run_id      TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        status      TEXT NOT NULL DEFAULT 'running',
        config      TEXT NOT NULL DEFAULT '{}',
        started_us  INTEGER NOT NULL,
        ended_us    INTEGER,
        owner_pid   INTEGER,
        summary     TEXT,
        histogram   BLOB
    );
    CREATE INDEX idx_runs_started ON runs(started_us);

    CREATE TABLE requests (
        id           INTEGER PRIMARY KEY,
        request_id   TEXT NOT NULL UNIQUE,
        run_id       TEXT,
        source       TEXT NOT NULL,
        target       TEXT NOT NULL DEFAULT 'local',
        model        TEXT,
        client_id    TEXT,
        status       TEXT NOT NULL,
        created_us   INTEGER NOT NULL,
        finished_us  INTEGER,
        latency_us   INTEGER,
        input        TEXT,
        metadata     TEXT,
        output       TEXT,
        error        TEXT,
        spans        TEXT
    );
    CREATE INDEX idx_requests_run ON requests(run_id, created_us);
    CREATE INDEX idx_requests_status ON requests(status, created_us);
    CREATE INDEX idx_requests_created ON requests(created_us);
    CREATE INDEX idx_requests_latency ON requests(latency_us);
    """,
    # 2: client metadata looked up by the engine (tier drives priority).
    """
    CREATE TABLE clients (
        client_id      TEXT PRIMARY KEY,
        display_name   TEXT NOT NULL,
        tier           TEXT NOT NULL DEFAULT 'standard'
                       CHECK (tier IN ('interactive', 'standard', 'batch')),
        enabled        INTEGER NOT NULL DEFAULT 1,
        default_model  TEXT
    );
    INSERT INTO clients (client_id, display_name, tier) VALUES
        ('gui', 'Desktop form', 'interactive'),
        ('cli', 'Command line', 'batch'),
        ('api', 'HTTP callers', 'standard');
    """,
    # 3: file jobs, so a crashed file run resumes where its committed rows end.
    """
    CREATE TABLE file_jobs (
        job_id       INTEGER PRIMARY KEY,
        run_id       TEXT NOT NULL,
        source_path  TEXT NOT NULL,
        size_bytes   INTEGER NOT NULL,
        sha256       TEXT NOT NULL,
        format       TEXT NOT NULL,
        model        TEXT,
        status       TEXT NOT NULL DEFAULT 'running',
        rows_done    INTEGER NOT NULL DEFAULT 0,
        rows_total   INTEGER,
        created_us   INTEGER NOT NULL,
        updated_us   INTEGER NOT NULL
    );
    CREATE INDEX idx_file_jobs_source ON file_jobs(sha256, status);
    ALTER TABLE requests ADD COLUMN job_id INTEGER;
    ALTER TABLE requests ADD COLUMN source_row INTEGER;
    CREATE UNIQUE INDEX idx_requests_job_row ON requests(job_id, source_row)
        WHERE job_id IS NOT NULL;
    """,
    # 4: the desktop app's file drops run at the batch tier, so form requests overtake them.
    """
    INSERT OR IGNORE INTO clients (client_id, display_name, tier)
        VALUES ('files', 'Dropped files', 'batch');
    """,
    # 5: the Requests view filters by status, model, client and source, newest or slowest first,
    # over millions of rows. One index per filter, ordered by time, with the latency alongside:
    # a time-sorted page walks it in order and stops at the page's end; a latency-sorted page
    # ranks the filter's rows by latency from the index alone (about 70 ns a row measured), with
    # no table lookup. Cheaper than a second (filter, latency_us) index per filter: ~25 bytes a
    # row each (~58 for source, a path), against the 1 KB a row the history may take.
    # `storage.queries.plan_requests` names these indexes; it relies on their columns.
    """
    DROP INDEX idx_requests_status;
    CREATE INDEX idx_requests_status ON requests(status, created_us, latency_us);
    CREATE INDEX idx_requests_model ON requests(model, created_us, latency_us);
    CREATE INDEX idx_requests_client ON requests(client_id, created_us, latency_us);
    CREATE INDEX idx_requests_source ON requests(source, created_us, latency_us);
    """,
    # 6: remote targets and their health probes. A target's config is its JSON without secrets
    # (tokens and credential headers live in the keyring, `engine.remote.secrets`). Probes are a
    # bounded history per target, read newest first for the status timeline and pruned by
    # (target, at_us), which the index serves.
    """
    CREATE TABLE targets (
        name        TEXT PRIMARY KEY,
        config      TEXT NOT NULL,
        created_us  INTEGER NOT NULL,
        updated_us  INTEGER NOT NULL
    );
    CREATE TABLE probes (
        id           INTEGER PRIMARY KEY,
        target       TEXT NOT NULL,
        at_us        INTEGER NOT NULL,
        kind         TEXT NOT NULL CHECK (kind IN ('live', 'ready', 'model_ready')),
        status_code  INTEGER,
        ok           INTEGER NOT NULL CHECK (ok IN (0, 1)),
        latency_us   INTEGER NOT NULL,
        error        TEXT,
        state        TEXT
    );
    CREATE INDEX idx_probes_target ON probes(target, at_us);
    """,
    # 7: History scoped to one target (the side pane) and sorted by any column the table shows.
    # The target index holds no latency: with the row's id last, it is in exact time order, so
    # a scope walks it without sorting ties (measured 6x faster with text checked on each row).
    # `label` is the answer's label, read from the stored output (never text that is not JSON:
    # a remote target's raw answer must not fail the index); '' where there is none, and model
    # sorts by `ifnull(model, '')`, so every sort key is a value (a keyset never meets NULL).
    # Rejections stored before the engine kept the model a request named get it back: from a
    # full request's body, or from the file job that sent the row. Both updates walk only the
    # model index's NULL entries.
    """
    CREATE INDEX idx_requests_target ON requests(target, created_us);
    ALTER TABLE requests ADD COLUMN label TEXT GENERATED ALWAYS AS (
        CASE WHEN json_valid(output) AND json_type(output) = 'object'
        THEN ifnull(CAST(json_extract(output, '$.label') AS TEXT), '') ELSE '' END
    ) VIRTUAL;
    CREATE INDEX idx_requests_label ON requests(label, created_us);
    UPDATE requests SET model = json_extract(input, '$.model')
        WHERE model IS NULL AND json_valid(input) AND json_type(input) = 'object'
        AND json_type(input, '$.model') = 'text';
    UPDATE requests SET model = (SELECT f.model FROM file_jobs f WHERE f.job_id = requests.job_id)
        WHERE model IS NULL AND job_id IS NOT NULL;
    CREATE INDEX idx_requests_model_sort ON requests(ifnull(model, ''), created_us);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNewError(RuntimeError):
    """The file was written by a newer InferDeck than this one."""


def _statements(script: str) -> list[str]:
    """A migration's statements one by one (`executescript` would commit the transaction)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring `conn` forward to `target` in one transaction: a crash leaves the old version whole.

    The version is read under the write lock (`BEGIN IMMEDIATE`), so processes opening one file
    at once (`inferdeck serve --workers N`) migrate it once: the others wait for the lock
    (busy_timeout) and then find it done.
    """
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if current > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"database schema v{current} is newer than this InferDeck (v{SCHEMA_VERSION})"
            )
        for version in range(current, target):
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return max(current, target)
