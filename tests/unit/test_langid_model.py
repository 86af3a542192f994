"""The built-in language-identification model (`engine/models/builtin/langid`), scored the way the
engine serves it: registry, validated input, token ids from its tokenizer, batched probabilities.

Its manifest's held-out accuracy is what `assets/train_models.py` measured; scoring the shipped
held-out rows again through the engine catches a tokenizer or an export that drifted from training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

from engine.models import ModelRegistry, builtin_models_dir
from engine.models.runtime import LoadedModel

BATCH = 256  # rows per predict_batch call, as the engine batches them


@pytest.fixture(scope="module")
def langid() -> LoadedModel:
    model = ModelRegistry.discover().get("langid")
    assert model is not None, "the langid built-in model is not discovered"
    model.load()
    return model


def _probabilities(model: LoadedModel, texts: Sequence[str]) -> np.ndarray:
    """Each text through the input check and the tokenizer, then the model in batches."""
    rows = [model.features(model.inputs(text=text)) for text in texts]
    parts = [model.predict_batch(rows[i : i + BATCH]) for i in range(0, len(rows), BATCH)]
    return np.concatenate(parts)


def test_heldout_accuracy_is_the_manifests(langid: LoadedModel) -> None:
    path = builtin_models_dir() / "langid" / "heldout.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    probs = _probabilities(langid, [row["text"] for row in rows])
    predicted = [langid.labels[i] for i in probs.argmax(axis=1)]
    accuracy = float(np.mean([p == row["label"] for p, row in zip(predicted, rows, strict=True)]))
    metrics = langid.manifest.metrics
    assert len(rows) == metrics["heldout_rows"]
    assert accuracy == pytest.approx(metrics["heldout_accuracy"], abs=0.005)
    assert accuracy >= 0.85


# Sentences written for this test, not CLDR names: the model has only seen names and short
# calendar phrases, so these check that it learnt the languages rather than a list of names.
SENTENCES = [
    ("The weather is lovely today and we are going to the park.", "English"),
    ("Je voudrais un café et un croissant, s'il vous plaît.", "French"),
    ("Wir fahren nächste Woche mit dem Zug nach Hamburg.", "German"),
    ("¿Dónde está la estación de tren más cercana?", "Spanish"),
    ("Domani andiamo al mare con i bambini.", "Italian"),
    ("Amanhã vamos visitar os nossos avós.", "Portuguese"),
    ("Wij hebben gisteren een nieuwe auto gekocht.", "Dutch"),
    ("Vi ska åka till stugan i helgen.", "Swedish"),
]


def test_plain_sentences_get_their_language(langid: LoadedModel) -> None:
    probs = _probabilities(langid, [text for text, _ in SENTENCES])
    predicted = [langid.labels[i] for i in probs.argmax(axis=1)]
    assert predicted == [label for _, label in SENTENCES]
    assert sorted(langid.labels) == sorted(label for _, label in SENTENCES)


@pytest.mark.parametrize(
    "text",
    [
        "☃☃☃ ☂ ♞♞",  # characters the tokenizer never saw: [UNK] only
        "ᚠᚢᚦ 漢字",  # scripts of none of the eight languages
        " ",  # nothing but a word boundary
        "12345",  # digits, which carry no language
    ],
)
def test_text_without_words_still_gives_a_distribution(langid: LoadedModel, text: str) -> None:
    probs = _probabilities(langid, [text])
    assert probs.shape == (1, len(langid.labels))
    assert np.isfinite(probs).all()
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_a_row_of_only_padding_gives_a_distribution(langid: LoadedModel) -> None:
    # What a text the normalizer empties becomes: no tokens, so every id is the pad; the model's
    # mean over no tokens must not divide by zero.
    text = langid.manifest.preprocessing.text
    assert text is not None
    probs = langid.predict_batch([[text.pad_id] * text.max_tokens])
    assert np.isfinite(probs).all()
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
