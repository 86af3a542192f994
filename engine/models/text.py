"""A text model's tokenizer: its folder's `tokenizer.json`, read by the `tokenizers` library.

Every text becomes exactly `max_tokens` ids: the tokenizer's ids, cut after `max_tokens`, then
padded on the right with `pad_id`. The model's `forward` takes those rows as one int64 tensor
`[batch, max_tokens]`, so a batch never needs padding to its longest member and the exported
graph keeps one dynamic dimension (the batch). Nothing is fetched: no hub, no network.

The file comes with the model folder, so it is read as untrusted: through `read_member` (a
regular file in the folder, at most `MAX_TOKENIZER_BYTES`; the library's own `from_file` would
read a FIFO or `/dev/urandom` until memory ran out), and a failure inside the library, which
surfaces as a Rust panic (a `BaseException`, not an `Exception`), becomes a `ValueError` here:
a tokenizer's split pattern that backtracks hits Oniguruma's retry limit and panics.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.models.manifest import ManifestError, TextPreprocessing, UnsafeFile, read_member

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# The largest tokenizer.json read: real ones run from 0.2 MB (a word list) to about 35 MB (a
# large multilingual vocabulary), and discovery reads each text model's at start-up.
MAX_TOKENIZER_BYTES = 64 << 20


def _library_failure(exc: BaseException) -> bool:
    """A failure of the library's own (a panic), not an interrupt or exit to pass on."""
    return not isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))


class TextTokenizer:
    """Turns one text into the fixed-width id row a text model takes."""

    def __init__(self, folder: Path, spec: TextPreprocessing) -> None:
        from tokenizers import Tokenizer

        name = spec.tokenizer
        try:
            data = read_member(folder, name, MAX_TOKENIZER_BYTES)
        except FileNotFoundError as exc:
            raise ManifestError(f"{folder}: {name}: missing") from exc
        except UnsafeFile as exc:
            raise ManifestError(f"{folder}: {name}: {exc}") from exc
        except OSError as exc:
            raise ManifestError(f"{folder}: {name}: cannot read ({exc.strerror})") from exc
        try:
            self._tokenizer: Tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        except BaseException as exc:  # the library's error type varies: not JSON, a panic, ...
            if not _library_failure(exc):
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ManifestError(f"{folder}: {name}: not a tokenizers file ({reason})") from exc
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        self._width, self._pad = spec.max_tokens, spec.pad_id

    def ids(self, text: str) -> list[int]:
        """`max_tokens` ids for `text`: cut, then padded on the right. A ValueError when the
        tokenizer fails on it."""
        try:
            ids = self._tokenizer.encode(text, add_special_tokens=True).ids[: self._width]
        except BaseException as exc:
            if not _library_failure(exc):
                raise
            raise ValueError(f"the tokenizer failed on this text ({type(exc).__name__})") from exc
        if len(ids) < self._width:
            ids.extend([self._pad] * (self._width - len(ids)))
        return ids
