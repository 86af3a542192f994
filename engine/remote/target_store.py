"""The targets an operator has saved: SQLite for their settings, the token store for secrets.

A stored target's `config` is its JSON with every credential (by the rule in
`engine.remote.credentials`: credential headers, credential query parameters of the URL, user
info turned into `Authorization`) replaced by `***`; the real values and the bearer token go to
`TokenStore` (the keyring, or memory). Reading a target joins them back when this process can see
them; a credential it cannot see (a memory-only store in another process) is left out of the
target rather than sent as `***`, and named in `StoredTarget.missing_secrets` so a view can say
why.

Writes go through the database's one writer and wait for their commit; reads use the reader.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from pydantic import ValidationError

from engine.remote.credentials import REDACTED, drop_url_secrets, redact_url, url_secret_names
from engine.remote.secrets import TokenStore
from engine.remote.targets import Target, describe_validation
from storage import Database, queries


class TargetError(ValueError):
    """A target could not be made, found or saved; the message is fit for a user."""


class TargetExistsError(TargetError):
    """`TargetStore.add` of a name already stored; the `targets add` command and the app's
    target dialog say so."""


class TargetNotFoundError(TargetError):
    """`TargetStore.update` of a name the store does not hold (or no longer does)."""


class _Keep(Enum):
    """The type of `KEEP` alone: a sentinel that `update` tells apart from a token or None."""

    KEEP = "keep"


KEEP: Final = _Keep.KEEP  # `update(..., token=KEEP)`: leave the stored token as it is


@dataclass(frozen=True, slots=True)
class StoredTarget:
    """A target as the store holds it (with its timestamps and what is known of its secrets);
    what `TargetStore` returns to the commands, the Targets tab and the Predict view."""

    target: Target  # secrets joined back where this process can read them
    created_us: int
    updated_us: int
    has_token: bool
    missing_secrets: tuple[str, ...]  # credential headers whose values are not available here
    # Credentials still in clear in the database, saved by a version before the rule: a save
    # (`update`) moves them to the token store.
    plaintext_secrets: tuple[str, ...] = ()


def make_target(**fields: Any) -> Target:
    """Build a `Target`, turning pydantic's report into a `TargetError` naming the fields."""
    try:
        return Target(**fields)
    except ValidationError as exc:
        raise TargetError(f"invalid target: {describe_validation(exc)}") from exc


@dataclass(frozen=True, slots=True)
class Secrets:
    """What `split_secrets` takes out of a target: it goes to the token store, never to SQLite."""

    headers: dict[str, str]  # credential headers by name
    url: str | None  # the whole base URL when it has credential parameters, else None


def split_secrets(target: Target) -> tuple[Target, Secrets]:
    """The target as stored (every credential value `***`) and its credentials apart."""
    shown = target.redacted_headers()
    secret = {k: v for k, v in target.headers.items() if shown[k] == REDACTED}
    url = target.redacted_url()
    stored = target.model_copy(update={"headers": shown, "base_url": url})
    return stored, Secrets(secret, target.base_url if url != target.base_url else None)


def _one_authorization(target: Target, has_token: bool) -> None:
    """A request carries one Authorization: a bearer token or the target's own, never both."""
    if has_token and any(k.lower() == "authorization" for k in target.headers):
        raise TargetError(
            "a bearer token and an Authorization header (or user:password in the URL) both set "
            "credentials; give one of them"
        )


def _now_us() -> int:
    return time.time_ns() // 1000


class TargetStore:
    """Add, update, remove and read saved targets."""

    def __init__(self, db: Database, tokens: TokenStore) -> None:
        self.db = db
        self.tokens = tokens

    async def add(self, target: Target, *, token: str | None = None) -> StoredTarget:
        if await queries.fetch_target(self.db.reader, target.name) is not None:
            raise TargetExistsError(f"a target named {target.name!r} already exists")
        _one_authorization(target, bool(token))
        stored, secret = split_secrets(target)
        self._keep_secrets(target.name, secret, token)
        now = _now_us()
        await self.db.writer.execute(
            queries.INSERT_TARGET, (target.name, stored.model_dump_json(), now, now)
        )
        return await self._must_get(target.name)

    async def update(self, target: Target, *, token: str | _Keep | None = KEEP) -> StoredTarget:
        """Replace the settings of the target with `target.name`; `token=None` removes its token."""
        if await queries.fetch_target(self.db.reader, target.name) is None:
            raise TargetNotFoundError(f"no target named {target.name!r}")
        kept = token is KEEP and self.tokens.get(target.name) is not None
        _one_authorization(target, kept or isinstance(token, str))
        stored, secret = split_secrets(target)
        if token is KEEP:
            self.tokens.set_headers(target.name, secret.headers)
            self.tokens.set_url(target.name, secret.url)
        else:
            self.tokens.delete(target.name)
            self._keep_secrets(target.name, secret, token)
        await self.db.writer.execute(
            queries.UPDATE_TARGET, (stored.model_dump_json(), _now_us(), target.name)
        )
        return await self._must_get(target.name)

    async def remove(self, name: str) -> bool:
        """Forget the target, its secrets and its probe history; False if there was none."""
        if await queries.fetch_target(self.db.reader, name) is None:
            return False
        self.tokens.delete(name)
        self.db.writer.add(queries.DELETE_TARGET_PROBES, [(name,)])
        await self.db.writer.execute(queries.DELETE_TARGET, (name,))
        return True

    async def get(self, name: str) -> StoredTarget | None:
        row = await queries.fetch_target(self.db.reader, name)
        return None if row is None else self._load(row)

    async def list_all(self) -> list[StoredTarget]:
        return [self._load(row) for row in await queries.list_targets(self.db.reader)]

    def token(self, name: str) -> str | None:
        return self.tokens.get(name)

    def _keep_secrets(self, name: str, secret: Secrets, token: str | None) -> None:
        self.tokens.set_headers(name, secret.headers)
        self.tokens.set_url(name, secret.url)
        if token:
            self.tokens.set(name, token)

    async def _must_get(self, name: str) -> StoredTarget:
        found = await self.get(name)
        if found is None:  # removed by another process between our write and this read
            raise TargetNotFoundError(f"no target named {name!r}")
        return found

    def _load(self, row: queries.TargetRow) -> StoredTarget:
        try:
            stored = Target.model_validate_json(row.config)
        except ValidationError as exc:
            raise TargetError(
                f"stored target {row.name!r} is unreadable: {describe_validation(exc)}"
            ) from exc
        secret = self.tokens.get_headers(row.name)
        headers: dict[str, str] = {}
        missing: list[str] = []
        for key, value in stored.headers.items():
            if value != REDACTED:
                headers[key] = value  # not a secret (or one a database from before kept)
            elif key in secret:
                headers[key] = secret[key]
            else:
                missing.append(key)
        shown = stored.redacted_headers()
        plain = [k for k, v in stored.headers.items() if v != REDACTED and shown[k] == REDACTED]
        if redact_url(stored.base_url) != stored.base_url:
            plain.append("url")
        url = stored.base_url
        if REDACTED in url:
            real = self.tokens.get_url(row.name)
            # The kept URL counts only if it is this URL's: the settings may have been changed
            # by a process whose secrets this one cannot see.
            if real is not None and redact_url(real) == url:
                url = real
            elif names := url_secret_names(url):
                missing += names
                url = drop_url_secrets(url)
        return StoredTarget(
            target=stored.model_copy(update={"headers": headers, "base_url": url}),
            created_us=row.created_us,
            updated_us=row.updated_us,
            has_token=self.tokens.get(row.name) is not None,
            missing_secrets=tuple(missing),
            plaintext_secrets=tuple(plain),
        )
