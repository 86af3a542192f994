"""Model folders for the tests, written the way a user (or `inferdeck models add`) writes them.

Each function writes a complete folder (`model.json`, `model.pt2`, and a `tokenizer.json` for
text) with known weights, so a test can assert exact answers:
- `regression_folder`: Celsius to Fahrenheit and Kelvin, exact (`tabular-regression`);
- `text_folder`: a word-counting classifier over a tiny vocabulary (`text-classification`);
- `classifier_folder`: a two-input linear classifier (`tabular-classification`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

TEXT_WORDS = ["good", "great", "fine", "bad", "awful", "poor"]


def _export(module: nn.Module, example: torch.Tensor, folder: Path) -> None:
    module.eval()
    batch = torch.export.Dim("batch", min=1, max=65536)
    name = "ids" if example.dtype == torch.long else "x"
    program = torch.export.export(module, (example,), dynamic_shapes={name: {0: batch}})
    torch.export.save(program, str(folder / "model.pt2"))


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return folder


class _Linear(nn.Module):
    def __init__(self, weight: list[list[float]], bias: list[float]) -> None:
        super().__init__()
        self.linear = nn.Linear(len(weight[0]), len(weight))
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor(weight))
            self.linear.bias.copy_(torch.tensor(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)
        return out


def regression_folder(folder: Path, name: str = "temperature") -> Path:
    """`celsius` in; `fahrenheit` (C x 1.8 + 32) and `kelvin` (C + 273.15) out, exactly."""
    write_manifest(
        folder,
        {
            "name": name,
            "version": "1",
            "task": "tabular-regression",
            "description": "Celsius to Fahrenheit and Kelvin.",
            "inputs": [{"name": "celsius", "type": "float", "unit": "°C", "minimum": -273.15}],
            "outputs": [
                {"name": "fahrenheit", "unit": "°F"},
                {"name": "kelvin", "unit": "K", "description": "Absolute temperature."},
            ],
        },
    )
    _export(_Linear([[1.8], [1.0]], [32.0, 273.15]), torch.zeros(2, 1), folder)
    return folder


class _WordVotes(nn.Module):
    """Counts the first three vocabulary words against the last three: logits [bad, good]."""

    votes: torch.Tensor

    def __init__(self, vocab: int) -> None:
        super().__init__()
        votes = torch.zeros(vocab, 2)
        for i, _ in enumerate(TEXT_WORDS):
            votes[2 + i, 1 if i < 3 else 0] = 1.0  # ids 0 and 1 are [PAD] and [UNK]
        self.register_buffer("votes", votes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.votes[ids].sum(dim=1)


def write_word_tokenizer(folder: Path) -> Path:
    """A word-level `tokenizers` file: [PAD]=0, [UNK]=1, then TEXT_WORDS; lower-cased."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: 2 + i for i, w in enumerate(TEXT_WORDS)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def text_folder(folder: Path, name: str = "review") -> Path:
    """`text` in; `good` when it has more of good/great/fine than of bad/awful/poor."""
    write_manifest(
        folder,
        {
            "name": name,
            "version": "1",
            "task": "text-classification",
            "description": "A review's tone from six words.",
            "inputs": [{"name": "text", "type": "text", "max_length": 200}],
            "labels": ["bad", "good"],
            "preprocessing": {"text": {"max_tokens": 8}},
        },
    )
    write_word_tokenizer(folder)
    _export(_WordVotes(2 + len(TEXT_WORDS)), torch.zeros(2, 8, dtype=torch.long), folder)
    return folder


def classifier_folder(folder: Path, name: str = "sign") -> Path:
    """`a`, `b` in; `positive` when a + b > 0, else `negative`."""
    write_manifest(
        folder,
        {
            "name": name,
            "version": "1",
            "task": "tabular-classification",
            "inputs": [{"name": "a", "type": "float"}, {"name": "b", "type": "float"}],
            "labels": ["negative", "positive"],
        },
    )
    _export(_Linear([[-1.0, -1.0], [1.0, 1.0]], [0.0, 0.0]), torch.zeros(2, 2), folder)
    return folder
