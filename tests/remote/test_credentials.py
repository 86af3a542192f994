"""Credentials given with a target reach the target and nothing else (issue 11, item 12).

A target's user info (`http://user:pass@host`), credential query parameters (`?token=`,
`?api_key=`) and credential headers outside any fixed list (`X-Auth-Token`, `Private-Token`,
`X-Goog-Api-Key`) go through the real CLI to a real HTTP server on 127.0.0.1 that records what it
got; the server must get every one of them, and no secret string may appear in the SQLite file's
bytes (database, WAL and shared memory) nor in anything the CLI prints: `targets list|show`,
`probe --json`, `load --json`, `runs list|show`, `export` in every format.

Secrets outlive a process only in a keyring: a saved target is tested with a file-backed keyring
(`tests/file_keyring.py`, chosen through the keyring library's `PYTHON_KEYRING_BACKEND`), an
unsaved URL with the memory-only store.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import REPO, CliResult
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from qt_helpers import all_cells, drive, wait_for

from engine.remote.credentials import (
    host_name,
    is_credential_header,
    is_credential_name,
    redact_url,
)
from engine.remote.secrets import TokenStore
from engine.remote.targets import Target
from gui.targets.targets_view import TargetsView
from storage import Database

USER, PASSWORD = "alice-u7f3a", "pw-9c1e-secret"
TOKEN, API_KEY = "qtok-51d0e8", "qkey-73b2aa"
X_AUTH, PRIVATE, GOOG = "xauth-2b8f04", "ptok-6e19c3", "goog-a4d770"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = (USER, PASSWORD, TOKEN, API_KEY, X_AUTH, PRIVATE, GOOG, BASIC)
HEADERS = (f"X-Auth-Token:{X_AUTH}", f"Private-Token:{PRIVATE}", f"X-Goog-Api-Key:{GOOG}")


class Recorder(ThreadingHTTPServer):
    """An HTTP server that answers 200 `{}` to everything and keeps each request's path and
    headers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        server = self.server
        assert isinstance(server, Recorder)
        with server.lock:
            server.seen.append(
                (self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
            )
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *_args: object) -> None:  # quiet: the test reads `seen`
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def _url(port: int) -> str:
    return f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/?token={TOKEN}&api_key={API_KEY}&team=ml"


def _run(env: dict[str, str], *args: str) -> CliResult:
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def _db_bytes(db: Path) -> bytes:
    """Everything SQLite keeps on disk for this database."""
    return b"".join(
        p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()
    )


def _assert_no_secret(where: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in SECRETS:
        assert secret.encode() not in data, f"{secret!r} leaked into {where}"


def _assert_received(recorder: Recorder) -> None:
    """Every request carried every credential, the query after the path."""
    assert recorder.seen
    for _method, path, headers in recorder.seen:
        assert f"token={TOKEN}" in path and f"api_key={API_KEY}" in path and "team=ml" in path
        assert headers["authorization"] == f"Basic {BASIC}"
        assert headers["x-auth-token"] == X_AUTH
        assert headers["private-token"] == PRIVATE
        assert headers["x-goog-api-key"] == GOOG


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "INFERDECK_KEYRING"}
    return {**env, "INFERDECK_DB": str(db), **extra}


@pytest.mark.slow
def test_saved_target_credentials_reach_the_server_and_nothing_else(
    recorder: Recorder, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    keyring_file = tmp_path / "keyring.json"
    env = _env(
        db,
        PYTHON_KEYRING_BACKEND="file_keyring.FileKeyring",
        PYTHONPATH=os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
        INFERDECK_TEST_KEYRING=str(keyring_file),
    )
    header_args = [a for h in HEADERS for a in ("--header", h)]
    outputs: dict[str, CliResult] = {}
    outputs["add"] = _run(env, "targets", "add", "web", _url(recorder.port), *header_args)
    assert outputs["add"].code == 0, outputs["add"].stderr
    for name, args in {
        "list": ["targets", "list"],
        "list --json": ["targets", "list", "--json"],
        "show": ["targets", "show", "web"],
        "show --json": ["targets", "show", "web", "--json"],
        "probe": ["probe", "web", "--json"],
        "edit": ["targets", "edit", "web", "--timeout", "7"],
        "probe after edit": ["probe", "web", "--json"],
    }.items():
        outputs[name] = _run(env, *args)
        assert outputs[name].code == 0, (name, outputs[name].stderr)

    for name, result in outputs.items():
        _assert_no_secret(f"{name} stdout", result.stdout)
        _assert_no_secret(f"{name} stderr", result.stderr)
    _assert_no_secret("the database", _db_bytes(db))
    _assert_received(recorder)
    assert "secrets kept in the system keyring" in outputs["add"].stdout
    # The probes went to the health paths, the query kept after them; the server-statistics
    # discovery asked the same server (with the same credentials, checked above) and nowhere else.
    paths = {p.partition("?")[0] for _m, p, _h in recorder.seen}
    assert {"/health", "/ready"} <= paths <= {"/health", "/ready", "/v2/models/stats", "/metrics"}
    shown = json.loads(outputs["show --json"].stdout)
    assert shown["base_url"] == f"http://127.0.0.1:{recorder.port}?token=***&api_key=***&team=ml"
    assert shown["headers"] == {
        "X-Auth-Token": "***",
        "Private-Token": "***",
        "X-Goog-Api-Key": "***",
        "Authorization": "***",
    }
    assert shown["secrets_in"] == "keyring" and shown["missing_secrets"] == []
    assert outputs["probe"].summary["final_state"] == "up"
    # They are somewhere: in the keyring.
    kept = keyring_file.read_text()
    assert all(s in kept for s in (TOKEN, API_KEY, X_AUTH, PRIVATE, GOOG, BASIC))


@pytest.mark.slow
def test_unsaved_url_credentials_reach_the_server_and_nothing_else(
    recorder: Recorder, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    env = _env(db, INFERDECK_KEYRING="memory")
    header_args = [a for h in HEADERS for a in ("--header", h)]
    url = _url(recorder.port)
    outputs: dict[str, CliResult] = {}
    outputs["load"] = _run(
        env,
        "load",
        url,
        "--protocol",
        "json",
        "--data",
        '{"x": 1}',
        "--concurrency",
        "2",
        "--requests",
        "20",
        "--trace-every",
        "2",  # half of them through the other transport: both must send the credentials
        "--json",
        *header_args,
    )
    assert outputs["load"].code == 0, outputs["load"].stderr
    run_id = outputs["load"].summary["run_id"]
    assert outputs["load"].summary["ok"] == 20
    outputs["probe"] = _run(env, "probe", url, *header_args, "--json")
    assert outputs["probe"].code == 0, outputs["probe"].stderr
    for name, args in {
        "runs list": ["runs", "list"],
        "runs list --json": ["runs", "list", "--json"],
        "runs show": ["runs", "show", run_id],
        "runs show --json": ["runs", "show", run_id, "--json"],
        "export csv": ["export", run_id, "--format", "csv"],
        "export jsonl": ["export", run_id, "--format", "jsonl"],
        "export chrome-trace": ["export", run_id, "--format", "chrome-trace"],
    }.items():
        outputs[name] = _run(env, *args)
        assert outputs[name].code == 0, (name, outputs[name].stderr)

    for name, result in outputs.items():
        _assert_no_secret(f"{name} stdout", result.stdout)
        _assert_no_secret(f"{name} stderr", result.stderr)
    _assert_no_secret("the database", _db_bytes(db))
    _assert_received(recorder)
    assert outputs["export jsonl"].stdout.count("\n") == 20
    # A request's `target` is the host, never the user info.
    first = json.loads(outputs["export jsonl"].stdout.splitlines()[0])
    assert first["target"] == f"127.0.0.1:{recorder.port}"


def test_the_rule_is_by_name_not_by_list() -> None:
    for name in (
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "X-Auth-Token",
        "Private-Token",
        "X-Goog-Api-Key",
        "apikey",
        "access_token",
        "client_secret",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "sig",
        "password",
        "X-Session-Id",
    ):
        assert is_credential_name(name), name
    for name in ("X-Tenant", "Accept", "team", "model", "X-Request-ID", "User-Agent"):
        assert not is_credential_name(name), name
    # A value that names an auth scheme is a credential under any header name.
    assert is_credential_header("X-Upstream", "Bearer abc.def")
    assert not is_credential_header("X-Upstream", "eu-west")
    assert redact_url("http://u:p@h:1/p?a=1&token=x&b") == "http://***@h:1/p?a=1&token=***&b"
    assert host_name("http://u:p@h:1/?token=x") == "h:1"


def test_user_info_becomes_the_authorization_header_and_clashes_are_refused() -> None:
    t = Target(name="t", base_url="http://a%40b:c%3Ad@h:1/v1/?token=x/")
    assert t.base_url == "http://h:1/v1?token=x/"
    assert t.headers == {"Authorization": "Basic " + base64.b64encode(b"a@b:c:d").decode()}
    assert t.url("/predict") == "http://h:1/v1/predict?token=x/"
    assert "x/" not in repr(t) and "Basic" not in repr(t)
    with pytest.raises(ValueError, match="both set credentials"):
        Target(name="t", base_url="http://u:p@h", headers={"authorization": "Bearer z"})


def test_targets_view_and_dialog_show_only_redacted_credentials_and_keep_them(
    qapp: QApplication, qtbot: QtBot, recorder: Recorder, tmp_path: Path
) -> None:
    db_file = tmp_path / "gui.db"
    shown_url = f"http://127.0.0.1:{recorder.port}?token=***&api_key=***&team=ml"

    async def scenario(view: TargetsView, db: Database, tokens: TokenStore) -> None:
        view.add_target()
        dialog = view.dialog
        assert dialog is not None
        dialog.name_edit.setText("web")
        dialog.url_edit.setText(_url(recorder.port))
        dialog.headers_edit.setPlainText("\n".join(h.replace(":", ": ", 1) for h in HEADERS))
        dialog.submit()
        await wait_for(lambda: view.table_model.rowCount() == 1)
        await wait_for(lambda: len(recorder.seen) >= 2)  # the prober's live and ready
        assert shown_url in all_cells(view)

        # Edit: the URL and every credential read back redacted; left so, they keep the values.
        view.select("web")
        view.edit_target()
        dialog = view.dialog
        assert dialog is not None
        assert dialog.url_edit.text() == shown_url
        headers_text = dialog.headers_edit.toPlainText()
        assert "Authorization: ***" in headers_text and "X-Goog-Api-Key: ***" in headers_text
        dialog.timeout_spin.setValue(4.0)
        # Counted before the submit: the restarted prober may finish its round before the
        # checks below, and the next round is 30 s away.
        before = len(recorder.seen)
        dialog.submit()
        await wait_for(lambda: view.host.probers["web"].target.timeout_s == 4.0)
        stored = await view.store.get("web")
        assert (
            stored is not None
            and stored.target.base_url == Target(name="x", base_url=_url(recorder.port)).base_url
        )
        await wait_for(lambda: len(recorder.seen) >= before + 2)  # the restarted prober's

        # A *** the dialog cannot fill in (the URL changed around it) must be typed.
        view.edit_target()
        dialog = view.dialog
        assert dialog is not None
        dialog.url_edit.setText(shown_url.replace("team=ml", "team=ops"))
        dialog.submit()
        assert "type the URL's credentials instead of ***" in dialog.error_label.text()
        dialog.reject()

        for _widget_text in (all_cells(view), dialog.url_edit.text()):
            _assert_no_secret("the targets view", _widget_text)
        await db.writer.flush()
        _assert_no_secret("the database", _db_bytes(db_file))

    drive(qapp, qtbot, db_file, scenario)
    _assert_received(recorder)


@pytest.mark.slow
def test_credentials_an_older_version_stored_in_clear_are_named_and_moved_by_an_edit(
    recorder: Recorder, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    env = _env(
        db,
        PYTHON_KEYRING_BACKEND="file_keyring.FileKeyring",
        PYTHONPATH=os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
        INFERDECK_TEST_KEYRING=str(tmp_path / "keyring.json"),
    )
    plain_url = f"http://127.0.0.1:{recorder.port}?token={TOKEN}"
    assert _run(env, "targets", "add", "old", plain_url).code == 0
    # As a version before the rule saved it: the URL and an X-Auth-Token in clear.
    conn = sqlite3.connect(db)
    (config,) = conn.execute("SELECT config FROM targets WHERE name = 'old'").fetchone()
    legacy = json.loads(config) | {"base_url": plain_url, "headers": {"X-Auth-Token": X_AUTH}}
    with conn:
        conn.execute("UPDATE targets SET config = ? WHERE name = 'old'", (json.dumps(legacy),))
    conn.close()

    show = _run(env, "targets", "show", "old")
    assert show.code == 0, show.stderr
    assert "in clear, saved by an older version (X-Auth-Token, url)" in show.stderr
    assert "`inferdeck targets edit old` moves them to the system keyring" in show.stderr
    _assert_no_secret("show", show.stdout + show.stderr)
    edit = _run(env, "targets", "edit", "old")
    assert edit.code == 0, edit.stderr
    again = _run(env, "targets", "show", "old")
    assert "older version" not in again.stderr
    conn = sqlite3.connect(db)
    (config,) = conn.execute("SELECT config FROM targets WHERE name = 'old'").fetchone()
    conn.close()
    _assert_no_secret("the stored config", config)
    probe = _run(env, "probe", "old", "--json")
    assert probe.code == 0, probe.stderr
    _method, path, headers = recorder.seen[-1]
    assert f"token={TOKEN}" in path and headers["x-auth-token"] == X_AUTH
    # An empty user info is no credential: dropped, nothing sent for it.
    bare = Target(name="t", base_url="http://@h:1/")
    assert bare.base_url == "http://h:1" and bare.headers == {}


@pytest.mark.slow
def test_a_bearer_token_beside_user_info_is_refused_in_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path / "c.db", INFERDECK_KEYRING="memory")
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "targets", "add", "x", _url(1), "--token-stdin"],
        input="tok-1234\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "inferdeck: a bearer token and an Authorization header (or user:password in the URL) "
        "both set credentials; give one of them"
    ]
    _assert_no_secret("stderr", proc.stderr)
