"""A model file for `inferdeck models add`: a review's tone from the words it uses.

A text model's file has a tokenizer beside it: `tokenizer.json`, a file of the `tokenizers`
library, named by MANIFEST's `preprocessing.text.tokenizer`; `models add` copies it into the
model's folder. The engine turns each text into exactly `max_tokens` ids (cut, then padded
with `pad_id`), so `forward` takes one int64 tensor `[batch, max_tokens]` and returns logits
`[batch, n_labels]`. Here each known word votes for a label, and the votes are summed.

    inferdeck models add assets/examples/reviews/reviews.py

`python reviews.py` writes tokenizer.json again (a word-level vocabulary: [PAD] = 0,
[UNK] = 1, then WORDS; lower-cased, split on whitespace and punctuation).
"""

from pathlib import Path

import torch
from torch import nn

POSITIVE = ["good", "great", "fine", "excellent", "love", "loved", "wonderful", "best", "nice"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "hate", "hated", "worst", "boring", "broken"]
WORDS = POSITIVE + NEGATIVE
LABELS = ["negative", "positive"]
MAX_TOKENS = 32

MANIFEST = {
    "name": "reviews",
    "version": "1",
    "task": "text-classification",
    "description": "A review's tone from 18 words that vote (a word-level tokenizer).",
    "inputs": [
        {"name": "text", "type": "text", "max_length": 1000, "description": "A short review."}
    ],
    "labels": LABELS,
    "preprocessing": {"text": {"tokenizer": "tokenizer.json", "max_tokens": MAX_TOKENS}},
}

EXAMPLES = [
    {"text": "Great phone, I love it."},
    {"text": "Awful battery and a broken screen."},
    {"text": "Fine, nothing special."},
]


class WordVotes(nn.Module):
    """Each known word adds 1 to its label's logit; padding and unknown words add nothing."""

    votes: torch.Tensor  # [vocabulary, labels]: a buffer, saved with the exported program

    def __init__(self) -> None:
        super().__init__()
        votes = torch.zeros(2 + len(WORDS), len(LABELS))
        for i, word in enumerate(WORDS):
            votes[2 + i, LABELS.index("positive" if word in POSITIVE else "negative")] = 1.0
        self.register_buffer("votes", votes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.votes[ids].sum(dim=1)


def build() -> nn.Module:
    return WordVotes()


def write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    vocab = {"[PAD]": 0, "[UNK]": 1, **{word: 2 + i for i, word in enumerate(WORDS)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))


if __name__ == "__main__":
    write_tokenizer(Path(__file__).resolve().parent / "tokenizer.json")
