"""A text model's tokenizer: its folder's `tokenizer.json`, read by the `tokenizers` library.

Every text becomes exactly `max_tokens` ids: the tokenizer's ids, cut after `max_tokens`, then
padded on the right with `pad_id`. The model's `forward` takes those rows as one int64 tensor
`[batch, max_tokens]`, so a batch never needs padding to its longest member and the exported
graph keeps one dynamic dimension (the batch). Nothing is fetched: no hub, no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.models.manifest import ManifestError, TextPreprocessing

if TYPE_CHECKING:
    from tokenizers import Tokenizer


class TextTokenizer:
    """Turns one text into the fixed-width id row a text model takes."""

    def __init__(self, folder: Path, spec: TextPreprocessing) -> None:
        from tokenizers import Tokenizer

        path = folder / spec.tokenizer
        try:
            self._tokenizer: Tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the library's own error type varies: missing, not JSON, ...
            reason = "missing" if not path.is_file() else f"not a tokenizers file ({exc})"
            raise ManifestError(f"{folder}: {spec.tokenizer}: {reason}") from exc
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        self._width, self._pad = spec.max_tokens, spec.pad_id

    def ids(self, text: str) -> list[int]:
        """`max_tokens` ids for `text`: cut, then padded on the right."""
        ids = self._tokenizer.encode(text, add_special_tokens=True).ids[: self._width]
        if len(ids) < self._width:
            ids.extend([self._pad] * (self._width - len(ids)))
        return ids
