"""A keyring backend kept in one JSON file, for tests that need secrets to outlive a process.

The real CLI runs as separate processes (`targets add`, then `probe NAME`); a memory-only store
forgets between them and the system keyring must not be touched by tests. Selected through the
keyring library's own switch: `PYTHON_KEYRING_BACKEND=file_keyring.FileKeyring`, with `tests/` on
`PYTHONPATH` and the file named by `INFERDECK_TEST_KEYRING`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class FileKeyring(KeyringBackend):
    """Secrets by (service, user) in a JSON file; the test owns the file and reads it back."""

    priority = 1  # chosen by name, never by priority

    @staticmethod
    def _path() -> Path:
        return Path(os.environ["INFERDECK_TEST_KEYRING"])

    def _load(self) -> dict[str, str]:
        path = self._path()
        return json.loads(path.read_text()) if path.exists() else {}

    def _save(self, data: dict[str, str]) -> None:
        tmp = self._path().with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self._path())

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\n{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\n{username}"] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}\n{username}", None) is None:
            raise PasswordDeleteError(username)
        self._save(data)
