"""Train and export the three built-in models into `engine/models/builtin/`.

Run with `make models` (it installs the `train` extra: scikit-learn, whose package carries the Iris
and 8x8 digits data sets, and Babel, whose package carries the Unicode CLDR locale data; so nothing
is downloaded). Each model is small and exported with `torch.export` and a dynamic batch dimension,
next to a `model.json` manifest and a held-out set the tests score.

Name models to retrain only those, e.g. `python assets/train_models.py langid` (default: all), so
one model can change without rewriting the others' committed artifacts.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from babel import localedata
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import nn

MODELS = Path(__file__).resolve().parents[1] / "engine" / "models" / "builtin"
SEED = 7


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def _fit(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> None:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), 32):
            idx = order[start : start + 32]
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.inference_mode():
        pred = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((pred == y).mean())


def _export(model: nn.Module, n_in: int, folder: Path) -> None:
    model.eval()
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(
        model, (torch.zeros(4, n_in),), dynamic_shapes={"input": {0: batch}}
    )
    torch.export.save(program, str(folder / "model.pt2"))


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / "model.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def train_iris() -> float:
    data = load_iris()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=SEED, stratify=y)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    torch.manual_seed(SEED)
    net = _mlp(4, 64, 3)
    _fit(net, (x_tr - mean) / std, y_tr, epochs=200, lr=1e-2)
    acc = _accuracy(net, (x_te - mean) / std, y_te)
    folder = MODELS / "iris"
    folder.mkdir(parents=True, exist_ok=True)
    _export(net, 4, folder)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    labels = [str(name) for name in data.target_names]
    _write_manifest(
        folder,
        {
            "name": "iris",
            "version": "1",
            "task": "tabular-classification",
            "description": "Iris species from four flower measurements (4 -> 64 -> 3 MLP).",
            "inputs": [
                {
                    "name": name,
                    "type": "float",
                    "unit": "cm",
                    "minimum": 0.0,
                    "maximum": 30.0,
                    "description": name.replace("_", " ").capitalize() + " in centimetres.",
                }
                for name in names
            ],
            "labels": labels,
            "preprocessing": {"mean": mean.round(6).tolist(), "std": std.round(6).tolist()},
            "metrics": {"heldout_accuracy": round(acc, 4), "heldout_rows": len(y_te)},
        },
    )
    with (folder / "heldout.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*names, "label"])
        for row, label in zip(x_te.tolist(), y_te.tolist(), strict=True):
            writer.writerow([*(round(v, 2) for v in row), labels[label]])
    return acc


def train_digits() -> float:
    data = load_digits()
    x = data.data.astype(np.float32)  # 0..16, 16 = full ink
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)
    torch.manual_seed(SEED)
    net = _mlp(64, 128, 10)
    mean = np.full(64, 8.0, dtype=np.float32)
    std = np.full(64, 8.0, dtype=np.float32)
    _fit(net, (x_tr - mean) / std, y_tr, epochs=60, lr=2e-3)
    acc = _accuracy(net, (x_te - mean) / std, y_te)
    folder = MODELS / "digits"
    folder.mkdir(parents=True, exist_ok=True)
    _export(net, 64, folder)
    _write_manifest(
        folder,
        {
            "name": "digits",
            "version": "1",
            "task": "image-classification",
            "description": "Handwritten digit from an 8x8 image; any image file is grey-scaled "
            "and resized (64 -> 128 -> 10 MLP).",
            "inputs": [
                {
                    "name": "image",
                    "type": "image",
                    "shape": [8, 8],
                    "minimum": 0.0,
                    "maximum": 16.0,
                    "description": "8x8 pixels, 0 = background, 16 = full ink.",
                }
            ],
            "labels": [str(d) for d in range(10)],
            "preprocessing": {
                "mean": mean.tolist(),
                "std": std.tolist(),
                "image": {"size": [8, 8], "scale": 16.0, "invert": "auto"},
            },
            "metrics": {"heldout_accuracy": round(acc, 4), "heldout_rows": len(y_te)},
        },
    )
    with (folder / "heldout.jsonl").open("w", encoding="utf-8") as fh:
        for row, label in zip(x_te.astype(int).tolist(), y_te.tolist(), strict=True):
            fh.write(json.dumps({"image": row, "label": str(label)}) + "\n")
    return acc


# Language identification: each label's CLDR locales, the language's own first, then regional
# ones that spell some names differently (pt_PT, fr_CA, es_419...): more real words, same language.
LANGID_LOCALES: dict[str, tuple[str, ...]] = {
    "English": ("en", "en_GB", "en_AU", "en_CA"),
    "French": ("fr", "fr_CA"),
    "German": ("de", "de_AT", "de_CH"),
    "Spanish": ("es", "es_419", "es_MX", "es_US"),
    "Italian": ("it", "it_CH"),
    "Portuguese": ("pt", "pt_PT"),
    "Dutch": ("nl", "nl_BE"),
    "Swedish": ("sv", "sv_FI"),
}
# The CLDR sections made of words: names of languages, countries, scripts, currencies, units, time
# zones, calendar words and relative-time phrases. Left out: number and date patterns (symbols),
# and `time_zones`, whose exemplar cities a locale lists only where its spelling differs from its
# parent's, so which language a city lands in is an accident: "Madrid" is only in pt_PT (undoing
# Brazil's "Madri"), never in Spanish.
LANGID_SECTIONS = (
    "languages",
    "territories",
    "scripts",
    "variants",
    "currency_names",
    "currency_names_plural",
    "unit_display_names",
    "unit_patterns",
    "compound_unit_patterns",
    "meta_zones",
    "date_fields",
    "months",
    "days",
    "quarters",
    "eras",
    "day_periods",
    "list_patterns",
    "measurement_systems",
)
LANGID_MAX_TOKENS = 32  # the longest string is 24 tokens, 99% are 15 or fewer
LANGID_VOCAB = 6000
# Appended to every word's last letter, so a piece knows it ends a word: endings (-isch, -ese,
# -ska) say much of a language. A plain character, not BPE's end_of_word_suffix: with that the
# trainer numbers the suffixed letters in hash-map order, which breaks ties between equally
# frequent merges differently on each run, and the tokenizer would not be reproducible.
LANGID_WORD_END = "\u258f"  # ▏, a block-drawing symbol: neither letter, space nor punctuation
_PLACEHOLDER = re.compile(r"\{\d+\}")


def _strings(node: Any) -> Iterator[str]:
    """Every string in a locale-data section, however nested. Aliases (pointers to another width
    of the same section, read there) and date or number pattern objects are not strings."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _strings(value)


def _clean(text: str) -> str:
    """A CLDR string as plain words: "{0} kilomètres" -> "kilomètres", since the number a pattern
    carries says nothing of the language."""
    return " ".join(_PLACEHOLDER.sub(" ", text).split()).strip(" ,;:-")


def _same_text(text: str) -> str:
    """What the tokenizer makes of a text (NFKC, lower case, single spaces): two strings equal
    here are one and the same input to the model."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def langid_corpus() -> dict[str, list[str]]:
    """Each language's distinct CLDR strings, sorted. A string that two languages share
    ("Paris", "Euro") is dropped from both: no model could tell them apart."""
    found: dict[str, dict[str, str]] = {}
    for label, codes in LANGID_LOCALES.items():
        texts = found[label] = {}
        for code in codes:
            data = localedata.load(code)
            for section in LANGID_SECTIONS:
                for raw in _strings(data.get(section, {})):
                    text = _clean(raw)
                    # Under three characters is abbreviations ("h", "km") and bare "et" or "y".
                    if len(text) >= 3 and any(ch.isalpha() for ch in text):
                        texts.setdefault(_same_text(text), text)
    seen = Counter(key for texts in found.values() for key in texts)
    return {
        label: sorted(text for key, text in texts.items() if seen[key] == 1)
        for label, texts in found.items()
    }


def _langid_tokenizer(texts: list[str]) -> Tokenizer:
    """A BPE tokenizer learnt from the training texts. Its alphabet is every character they use,
    so unseen words still split into known pieces; a character never seen becomes [UNK]. Words
    start with the Metaspace mark and end with LANGID_WORD_END, so a piece knows where it sits.
    No padding, truncation or added [CLS]: the engine cuts and pads the ids itself."""
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.Lowercase(),
            # After a letter that no letter follows: the end of each word.
            normalizers.Replace(Regex(r"(?<=\p{L})(?!\p{L})"), LANGID_WORD_END),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(),
            pre_tokenizers.Punctuation(),
            # Numbers carry no language: one piece per digit keeps them out of the vocabulary.
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=LANGID_VOCAB,
        special_tokens=["[PAD]", "[UNK]"],  # in this order: [PAD] is id 0, the engine's pad_id
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    if tokenizer.token_to_id("[PAD]") != 0 or tokenizer.token_to_id("[UNK]") != 1:
        raise RuntimeError("the tokenizer's special tokens are not ids 0 and 1")
    return tokenizer


def _coarser(tokenizer: Tokenizer, share: float) -> Tokenizer:
    """The tokenizer with only the first `share` of its BPE merges: the same ids, in shorter
    pieces. A word seen in training is one token in the full tokenizer, so its pieces would never
    be trained, yet an unseen word at serving time is made of exactly such pieces."""
    spec = json.loads(tokenizer.to_str())
    merges = spec["model"]["merges"]
    spec["model"]["merges"] = merges[: int(len(merges) * share)]
    return Tokenizer.from_str(json.dumps(spec))


def _token_ids(tokenizer: Tokenizer, texts: list[str], max_tokens: int) -> np.ndarray:
    """Ids as the engine makes them: `encode(text).ids`, cut to max_tokens, padded with 0."""
    out = np.zeros((len(texts), max_tokens), dtype=np.int64)
    for row, text in enumerate(texts):
        ids = tokenizer.encode(text).ids[:max_tokens]
        out[row, : len(ids)] = ids
    return out


class LangIdNet(nn.Module):
    """Token embeddings averaged over the real tokens, then an MLP to one logit per language.
    Pads (id 0) have a zero embedding and are left out of the count, so how many there are never
    changes the result; a text with no tokens at all averages to zeros, not to a division by 0."""

    def __init__(self, vocab: int, dim: int, hidden: int, n_labels: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.head = _mlp(dim, hidden, n_labels)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).unsqueeze(-1).to(self.embed.weight.dtype)
        total = (self.embed(ids) * mask).sum(dim=1)
        logits: torch.Tensor = self.head(total / mask.sum(dim=1).clamp(min=1.0))
        return logits


def _fit_langid(net: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    """AdamW with strong weight decay, a one-cycle rate and label smoothing: most strings are a
    single name, and without them the net learns the training names by heart. Token dropout (a
    fifth of the ids set to pad) makes it use every piece of a text, not just the surest one."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    batch = 64
    opt = torch.optim.AdamW(net.parameters(), lr=5e-3, weight_decay=0.3)
    steps = epochs * ((len(xt) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    gen = torch.Generator().manual_seed(SEED)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), batch):
            idx = order[start : start + batch]
            ids = xt[idx]
            ids = torch.where(torch.rand(ids.shape, generator=gen) < 0.2, 0, ids)
            opt.zero_grad()
            loss_fn(net(ids), yt[idx]).backward()
            opt.step()
            schedule.step()
    net.eval()


def _example_first(texts: list[str], labels: list[str], label: str) -> int:
    """Which held-out row the form shows as its example: the `label` text with the most words
    that is only words (no digits or brackets), so the example reads as a phrase."""
    wordy = re.compile(r"[^\W\d_]+(?:[\s’'-][^\W\d_]+)*")
    rows = [i for i, text in enumerate(texts) if labels[i] == label and wordy.fullmatch(text)]
    return max(rows, key=lambda i: (len(texts[i].split()), -len(texts[i]), texts[i]))


def train_langid() -> float:
    """Tokenizer, model, held-out rows and manifest of `langid`. Everything is learnt from the
    training 80% only, the tokenizer included, so the held-out words are as new to it as a user's;
    the held-out accuracy is measured through the saved files, as the engine will run them."""
    torch.set_num_threads(2)  # the figures and the time it takes are those of a 2-core machine
    started = time.perf_counter()
    corpus = langid_corpus()
    names = list(LANGID_LOCALES)
    texts = [text for name in names for text in corpus[name]]
    y = np.array([i for i, name in enumerate(names) for _ in corpus[name]], dtype=np.int64)
    tr_x, te_x, y_tr, y_te = train_test_split(
        texts, y, test_size=0.2, random_state=SEED, stratify=y
    )
    folder = MODELS / "langid"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _langid_tokenizer(tr_x)
    tokenizer.save(str(folder / "tokenizer.json"), pretty=False)  # a third of the size
    # Each training text three times: whole-word tokens, and in pieces from half and a quarter
    # of the merges, so the pieces unseen words split into have trained embeddings too.
    x_tr = np.concatenate(
        [
            _token_ids(_coarser(tokenizer, share), tr_x, LANGID_MAX_TOKENS)
            for share in (1, 0.5, 0.25)
        ]
    )
    torch.manual_seed(SEED)
    net = LangIdNet(tokenizer.get_vocab_size(), 64, 64, len(names))
    _fit_langid(net, x_tr, np.tile(y_tr, 3), epochs=20)
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(
        net,
        (torch.zeros(4, LANGID_MAX_TOKENS, dtype=torch.long),),
        dynamic_shapes={"ids": {0: batch}},
    )
    torch.export.save(program, str(folder / "model.pt2"))
    # Scored the way the engine serves: the saved tokenizer and the saved program.
    served = Tokenizer.from_file(str(folder / "tokenizer.json"))
    module = torch.export.load(str(folder / "model.pt2")).module()
    with torch.inference_mode():
        logits = module(torch.from_numpy(_token_ids(served, te_x, LANGID_MAX_TOKENS)))
    acc = float((logits.argmax(dim=1).numpy() == y_te).mean())
    labels_te = [names[i] for i in y_te]
    first = _example_first(te_x, labels_te, "French")
    order = [first, *(i for i in range(len(te_x)) if i != first)]
    with (folder / "heldout.jsonl").open("w", encoding="utf-8") as fh:
        for i in order:
            fh.write(json.dumps({"text": te_x[i], "label": labels_te[i]}, ensure_ascii=False))
            fh.write("\n")
    _write_manifest(
        folder,
        {
            "name": "langid",
            "version": "1",
            "task": "text-classification",
            "description": "Language of a short text, one of eight European languages; BPE "
            f"tokens ({tokenizer.get_vocab_size()}) -> mean of 64-wide embeddings -> 64 -> "
            f"{len(names)} MLP, trained on the Unicode CLDR names Babel ships.",
            "inputs": [
                {
                    "name": "text",
                    "type": "text",
                    "max_length": 500,
                    "description": "A word, name or short phrase; only its first "
                    f"{LANGID_MAX_TOKENS} tokens count.",
                }
            ],
            "labels": names,
            "preprocessing": {
                "text": {
                    "tokenizer": "tokenizer.json",
                    "max_tokens": LANGID_MAX_TOKENS,
                    "pad_id": 0,
                }
            },
            "metrics": {
                "heldout_accuracy": round(acc, 4),
                "heldout_rows": len(te_x),
                "train_rows": len(tr_x),
            },
        },
    )
    counts = ", ".join(f"{name} {len(corpus[name])}" for name in names)
    print(f"langid: {counts}; trained in {time.perf_counter() - started:.0f} s")
    return acc


TRAINERS = {"iris": train_iris, "digits": train_digits, "langid": train_langid}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=f"of {', '.join(TRAINERS)}; default: all")
    chosen = parser.parse_args().models or list(TRAINERS)
    unknown = sorted(set(chosen) - set(TRAINERS))
    if unknown:
        parser.error(f"no model {', '.join(unknown)}; the models are {', '.join(TRAINERS)}")
    for name in chosen:
        print(f"{name} held-out accuracy: {TRAINERS[name]():.4f}")
