"""Saved targets and their secrets: migration 6, the store's round trip, and no secret on disk.

A real SQLite file in tmp_path; secrets go to a dictionary keyring backend (the system keyring is
never touched: `INFERDECK_KEYRING=memory` for everything that would pick one itself).
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from jaraco.classes import properties
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import PasswordDeleteError

import engine.cli.targets as targets_command
from engine.cli.main import main
from engine.remote.secrets import TokenStore
from engine.remote.target_store import (
    TargetError,
    TargetExistsError,
    TargetNotFoundError,
    TargetStore,
    make_target,
)
from storage import open_database, queries
from storage.database import prepare
from storage.migrations import SCHEMA_VERSION, migrate

TOKEN = "tok-SECRET-7f3a9c"
API_KEY = "key-SECRET-51be02"


class DictKeyring(KeyringBackend):
    """A keyring in a dictionary. Its priority raises, so keyring itself never chooses it."""

    @properties.classproperty
    def priority(cls) -> float:
        raise RuntimeError("test backend, never chosen automatically")

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.data.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.data[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.data.pop((service, username), None) is None:
            raise PasswordDeleteError("not found")


class BrokenKeyring(DictKeyring):
    """A keyring that refuses every write, as a locked system keyring does."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise OSError("locked")


@pytest.fixture(autouse=True)
def _no_system_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("INFERDECK_KEYRING", "memory")
    yield


def _file_bytes(folder: Path) -> bytes:
    """Every byte SQLite left in the folder: the database, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


def test_migration_6_applies_on_a_v5_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=5)
    conn.execute(
        "INSERT INTO requests (request_id, source, status, created_us) VALUES ('r1', 'x', 'ok', 1)"
    )
    conn.close()
    prepare(path)
    conn = sqlite3.connect(path)
    assert SCHEMA_VERSION >= 6
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    cols = {r[1] for r in conn.execute("PRAGMA table_info(probes)")}
    assert cols == {
        "id",
        "target",
        "at_us",
        "kind",
        "status_code",
        "ok",
        "latency_us",
        "error",
        "state",
    }
    assert {r[1] for r in conn.execute("PRAGMA table_info(targets)")} == {
        "name",
        "config",
        "created_us",
        "updated_us",
    }
    assert [r[2] for r in conn.execute("PRAGMA index_info(idx_probes_target)")] == [
        "target",
        "at_us",
    ]
    assert conn.execute("SELECT request_id FROM requests").fetchall() == [("r1",)]
    with pytest.raises(sqlite3.IntegrityError):  # kinds are checked by the schema
        conn.execute(
            "INSERT INTO probes (target, at_us, kind, ok, latency_us) VALUES ('t', 1, 'x', 1, 1)"
        )
    conn.close()


def test_add_update_remove_list_round_trip(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = await open_database(tmp_path / "t.db")
        store = TargetStore(db, TokenStore(DictKeyring()))
        try:
            assert await store.list_all() == []
            a = make_target(name="alpha", base_url="http://127.0.0.1:8000/", model="iris")
            b = make_target(name="beta", base_url="https://kserve.example", protocol="oip")
            added = await store.add(a)
            await store.add(b, token=TOKEN)
            assert added.target == make_target(
                name="alpha", base_url="http://127.0.0.1:8000", model="iris"
            )
            assert added.created_us == added.updated_us > 0
            assert not added.has_token
            listed = await store.list_all()
            assert [s.target.name for s in listed] == ["alpha", "beta"]
            assert listed[1].has_token and store.token("beta") == TOKEN

            with pytest.raises(TargetExistsError, match="alpha"):
                await store.add(a)
            changed = a.model_copy(update={"timeout_s": 2.5, "verify_tls": False})
            updated = await store.update(changed)
            assert updated.target.timeout_s == 2.5 and not updated.target.verify_tls
            assert updated.created_us == added.created_us
            assert updated.updated_us >= added.updated_us
            await store.update(b, token=None)  # None drops the token
            assert store.token("beta") is None
            with pytest.raises(TargetNotFoundError, match="gamma"):
                await store.update(a.model_copy(update={"name": "gamma"}))

            db.writer.add(queries.INSERT_PROBE, [("alpha", 1, "live", 200, 1, 10, None, "up")])
            assert await store.remove("alpha")
            assert not await store.remove("alpha")
            assert await store.get("alpha") is None
            assert await queries.probe_count(db.reader, "alpha") == 0
            assert [s.target.name for s in await store.list_all()] == ["beta"]
        finally:
            await db.close()
        # Everything was committed: a second connection to the file sees the same.
        db = await open_database(tmp_path / "t.db")
        try:
            again = await TargetStore(db, TokenStore(DictKeyring())).get("beta")
            assert again is not None and again.target == b
        finally:
            await db.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"base_url": "ftp://host"}, "base_url"),
        ({"base_url": "http://h", "timeout_s": 0}, "timeout_s"),
        ({"base_url": "http://h", "protocol": "grpc"}, "protocol"),
        ({"base_url": "http://h", "headers": {"bad name": "v"}}, "headers"),
        ({"base_url": "http://h", "colour": "red"}, "colour"),
    ],
)
def test_validation_errors_name_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(TargetError) as caught:
        make_target(name="t", **fields)
    message = str(caught.value)
    assert message.startswith("invalid target: ") and f"{named}:" in message
    assert "\n" not in message and "pydantic" not in message


def test_token_store_keyring_memory_and_no_token_in_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ring = DictKeyring()
    store = TokenStore(ring)
    assert store.where() == "keyring"
    store.set("t", TOKEN)
    store.set_headers("t", {"X-Api-Key": API_KEY})
    assert store.get("t") == TOKEN and store.get_headers("t") == {"X-Api-Key": API_KEY}
    assert TOKEN in ring.data.values()  # really in the keyring, not beside it
    assert TOKEN not in repr(store) and API_KEY not in repr(store)
    store.delete("t")
    assert store.get("t") is None and store.get_headers("t") == {} and ring.data == {}
    store.delete("t")  # deleting what is gone is fine

    # Unusable backends: fail, one that cannot write, and the environment switch.
    assert TokenStore(fail.Keyring()).where() == "memory"  # type: ignore[no-untyped-call]
    broken = TokenStore(BrokenKeyring())
    assert broken.where() == "memory"
    broken.set("t", TOKEN)
    assert broken.get("t") == TOKEN
    assert TokenStore().where() == "memory"  # INFERDECK_KEYRING=memory (the fixture)
    assert TokenStore(system_keyring=False).where() == "memory"
    with pytest.raises(ValueError):
        store.set("t", "")


def test_secrets_never_reach_the_database_file(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    ring = DictKeyring()

    async def scenario() -> None:
        db = await open_database(folder / "t.db")
        try:
            store = TargetStore(db, TokenStore(ring))
            target = make_target(
                name="secured",
                base_url="https://api.example",
                headers={"X-Api-Key": API_KEY, "Accept": "application/json"},
            )
            stored = await store.add(target, token=TOKEN)
            assert stored.target.headers["X-Api-Key"] == API_KEY  # joined back on read
            row = await queries.fetch_target(db.reader, "secured")
            assert row is not None and API_KEY not in row.config and "***" in row.config
        finally:
            await db.close()
        data = _file_bytes(folder)
        assert b"api.example" in data  # the target itself is there...
        assert TOKEN.encode() not in data  # ...its secrets are not
        assert API_KEY.encode() not in data

        # Another process without the keyring's contents: the header is named, never sent as ***.
        db = await open_database(folder / "t.db")
        try:
            other = await TargetStore(db, TokenStore(system_keyring=False)).get("secured")
            assert other is not None
            assert other.missing_secrets == ("X-Api-Key",)
            assert other.target.headers == {"Accept": "application/json"}
            assert not other.has_token
        finally:
            await db.close()

    asyncio.run(scenario())


def test_targets_cli_never_prints_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = TokenStore(DictKeyring())  # one keyring across the commands, as a desktop has
    monkeypatch.setattr(targets_command, "TokenStore", lambda: shared)
    folder = tmp_path / "cli"
    db = str(folder / "t.db")
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    assert (
        main(
            [
                "targets",
                "add",
                "prod",
                "https://infer.example/",
                "--protocol",
                "oip",
                "--model",
                "resnet",
                "--header",
                f"X-Api-Key: {API_KEY}",
                "--header",
                "X-Team:vision",
                "--token-stdin",
                "--db",
                db,
            ]
        )
        == 0
    )
    assert main(["targets", "list", "--db", db]) == 0
    assert main(["targets", "list", "--json", "--db", db]) == 0
    assert main(["targets", "show", "prod", "--db", db]) == 0
    assert main(["targets", "show", "prod", "--json", "--db", db]) == 0
    out = capsys.readouterr()
    printed = out.out + out.err
    assert "prod" in printed and "https://infer.example" in printed and "resnet" in printed
    assert "X-Api-Key: ***" in printed and "X-Team: vision" in printed
    assert '"token":"***"' in printed and "secrets kept in the system keyring" in printed
    assert TOKEN not in printed and API_KEY not in printed
    assert TOKEN.encode() not in _file_bytes(folder)
    assert API_KEY.encode() not in _file_bytes(folder)
    assert shared.get("prod") == TOKEN  # kept, just never shown

    # edit: only the options given change; the token and the secret header stay.
    edit = ["targets", "edit", "prod", "--url", "https://infer2.example", "--header", "X-Team:nlp"]
    assert main([*edit, "--timeout", "3", "--db", db]) == 0
    assert main(["targets", "show", "prod", "--json", "--db", db]) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown["base_url"] == "https://infer2.example" and shown["timeout_s"] == 3
    assert shown["protocol"] == "oip" and shown["model"] == "resnet"
    assert shown["headers"] == {"X-Api-Key": "***", "X-Team": "nlp"}
    assert shown["token"] == "***" and shared.get("prod") == TOKEN
    assert shared.get_headers("prod") == {"X-Api-Key": API_KEY}
    assert main(["targets", "edit", "prod", "--clear-token", "--db", db]) == 0
    assert shared.get("prod") is None
    assert main(["targets", "edit", "prod", "--url", "ftp://x", "--db", db]) == 2
    assert "base_url" in capsys.readouterr().err

    assert main(["targets", "remove", "prod", "--db", db]) == 0
    assert shared.get("prod") is None and shared.get_headers("prod") == {}
    capsys.readouterr()
    for argv, says in [
        (["targets", "remove", "prod"], "no target named 'prod'"),
        (["targets", "show", "nope"], "no target named 'nope'"),
        (["targets", "add", "x", "ftp://h"], "base_url: must be an http"),
        (["targets", "add", "x", "http://h", "--header", "novalue"], "expected NAME:VALUE"),
        (["targets", "add", "x", "http://h", "--timeout", "0"], "timeout_s:"),
    ]:
        assert main([*argv, "--db", db]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0] and err[0].startswith("inferdeck: "), err
