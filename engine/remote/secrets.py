"""Where a target's secrets live: the system keyring when a usable one exists, else process memory.

A secret is a bearer token, the values of a target's credential headers, or its URL when the URL
carries credential query parameters (`?token=`, `?api_key=`...); which headers and parameters are
credentials is decided by the one rule in `engine.remote.credentials`. They never go to SQLite,
logs or exports: `engine.remote.target_store` keeps them here and stores only the redacted rest of
the target. Without a keyring (a headless box, a CI runner)
the secrets last only as long as the process, which is said plainly rather than writing them to a
file the operator did not ask for.

`INFERDECK_KEYRING=memory` keeps this process off the system keyring (tests, throwaway sessions).
Keyring calls can block (a desktop keyring may prompt); the app makes them at set-up, not per
request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Literal

import keyring
import keyring.errors
from keyring.backend import KeyringBackend
from keyring.backends import fail, null

log = logging.getLogger(__name__)

TOKEN_SERVICE = "inferdeck-token"
HEADERS_SERVICE = "inferdeck-headers"
URL_SERVICE = "inferdeck-url"
_CHECK_USER = "__inferdeck_write_check__"

Where = Literal["keyring", "memory"]


def usable_backend(backend: KeyringBackend | None = None) -> KeyringBackend | None:
    """The keyring backend to use, or None: a fail/null backend, or one whose test write does not
    read back, is no place for a secret."""
    if backend is None and os.environ.get("INFERDECK_KEYRING", "").lower() in (
        "memory",
        "off",
        "none",
    ):
        return None
    try:
        backend = backend if backend is not None else keyring.get_keyring()
        if isinstance(backend, fail.Keyring | null.Keyring):
            return None
        backend.set_password(TOKEN_SERVICE, _CHECK_USER, "ok")
        works = backend.get_password(TOKEN_SERVICE, _CHECK_USER) == "ok"
        backend.delete_password(TOKEN_SERVICE, _CHECK_USER)
    except Exception as exc:  # any backend failure means: do not trust it with secrets
        log.info("system keyring unusable (%s); secrets stay in memory", type(exc).__name__)
        return None
    return backend if works else None


class TokenStore:
    """Secrets per target name. Thread-unsafe by design: the event loop thread owns it."""

    def __init__(
        self, backend: KeyringBackend | None = None, *, system_keyring: bool = True
    ) -> None:
        # No backend and `system_keyring=False`: memory only, the system keyring left untouched.
        use = backend is not None or system_keyring
        self._backend = usable_backend(backend) if use else None
        self._memory: dict[tuple[str, str], str] = {}

    def where(self) -> Where:
        return "keyring" if self._backend is not None else "memory"

    def __repr__(self) -> str:
        # Names only: a repr ends up in logs and tracebacks.
        return f"TokenStore(where={self.where()!r})"

    # Bearer tokens

    def set(self, name: str, token: str) -> None:
        if not token:
            raise ValueError("a token cannot be empty")
        self._put(TOKEN_SERVICE, name, token)

    def get(self, name: str) -> str | None:
        return self._read(TOKEN_SERVICE, name)

    def delete(self, name: str) -> None:
        self._remove(TOKEN_SERVICE, name)
        self._remove(HEADERS_SERVICE, name)
        self._remove(URL_SERVICE, name)

    # Credential header values (one entry per target holding all of them)

    def set_headers(self, name: str, headers: dict[str, str]) -> None:
        if headers:
            self._put(HEADERS_SERVICE, name, json.dumps(headers))
        else:
            self._remove(HEADERS_SERVICE, name)

    def get_headers(self, name: str) -> dict[str, str]:
        raw = self._read(HEADERS_SERVICE, name)
        if raw is None:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        if not isinstance(value, dict):
            return {}
        return {str(k): str(v) for k, v in value.items()}

    # The whole base URL, when it carries credential query parameters (None: it has none)

    def set_url(self, name: str, url: str | None) -> None:
        if url:
            self._put(URL_SERVICE, name, url)
        else:
            self._remove(URL_SERVICE, name)

    def get_url(self, name: str) -> str | None:
        return self._read(URL_SERVICE, name)

    # One place for each storage operation, so memory and keyring behave alike.

    def _put(self, service: str, name: str, value: str) -> None:
        if self._backend is not None:
            self._backend.set_password(service, name, value)
        else:
            self._memory[(service, name)] = value

    def _read(self, service: str, name: str) -> str | None:
        if self._backend is not None:
            value = self._backend.get_password(service, name)
            return None if value is None else str(value)
        return self._memory.get((service, name))

    def _remove(self, service: str, name: str) -> None:
        if self._backend is not None:
            # Nothing stored is as good as deleted.
            with contextlib.suppress(keyring.errors.PasswordDeleteError):
                self._backend.delete_password(service, name)
        else:
            self._memory.pop((service, name), None)
