"""A loaded model: features from validated inputs, and batched inference under torch.

`predict_batch` is the synchronous boundary: it runs in the injected executor, never on the event
loop. torch is imported here only, so listing models or validating input never pays for it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from engine.models.lean import batch_range, lean_forward
from engine.models.manifest import Manifest, input_model
from engine.models.text import TextTokenizer

# One input's row for the model: floats for tabular and image models, token ids for text.
FeatureRow = Sequence[float] | Sequence[int]


def set_torch_threads(count: int) -> None:
    """Intra-op threads for torch, process-wide. Small models gain nothing from more than one,
    and idle pool threads spinning on a 2-core machine steal time from the event loop."""
    import torch

    torch.set_num_threads(count)


@dataclass(slots=True)
class LoadedModel:
    """One model's manifest, input class and loaded artifact; turns inputs into features and
    runs batches in the executor."""

    manifest: Manifest
    folder: Path
    inputs: type[BaseModel]
    _module: Callable[..., Any] | None = field(default=None, repr=False)
    # The exported module as loaded, and the batch sizes `_module` takes unchecked (see lean).
    _exported: Callable[..., Any] | None = field(default=None, repr=False)
    _rows: tuple[int, int] | None = field(default=None, repr=False)
    _mean: np.ndarray | None = field(default=None, repr=False)
    _std: np.ndarray | None = field(default=None, repr=False)
    _getter: Callable[[BaseModel], Any] | None = field(default=None, repr=False)
    _all_numeric: bool = field(default=False, repr=False)
    _tokenizer: TextTokenizer | None = field(default=None, repr=False)

    @classmethod
    def from_manifest(cls, manifest: Manifest, folder: Path) -> LoadedModel:
        """The model as its manifest describes it; a text model's tokenizer is read here
        (ManifestError when it cannot be), the artifact later (`load`)."""
        model = cls(manifest, folder, input_model(manifest))
        if manifest.preprocessing.text is not None:
            model._tokenizer = TextTokenizer(folder, manifest.preprocessing.text)
        pre = manifest.preprocessing
        if pre.mean is not None and pre.std is not None:
            model._mean = np.asarray(pre.mean, dtype=np.float32)
            model._std = np.asarray(pre.std, dtype=np.float32)
        names = [spec.name for spec in manifest.inputs]
        model._getter = operator.attrgetter(*names) if len(names) > 1 else None
        model._all_numeric = all(spec.type in ("float", "int") for spec in manifest.inputs)
        return model

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def labels(self) -> list[str]:
        return self.manifest.labels

    @property
    def output_names(self) -> list[str]:
        """The output columns: a classifier's labels, a regressor's output names."""
        return self.manifest.output_names

    @property
    def loaded(self) -> bool:
        return self._module is not None

    def features(self, inputs: BaseModel) -> FeatureRow:
        """The model's feature vector for one validated input (enums by choice index, text as
        token ids)."""
        if self._tokenizer is not None:
            return self._tokenizer.ids(getattr(inputs, self.manifest.inputs[0].name))
        if self._getter is not None:
            values = self._getter(inputs)
            if self._all_numeric:  # the common tabular case: the values are the features
                return values  # type: ignore[no-any-return]
        else:
            values = (getattr(inputs, self.manifest.inputs[0].name),)
        row: list[float] = []
        for spec, value in zip(self.manifest.inputs, values, strict=True):
            if spec.type == "image":
                row.extend(value)
            elif spec.type == "enum":
                assert spec.choices is not None
                row.append(float(spec.choices.index(value)))
            else:
                row.append(float(value))
        return row

    def load(self) -> None:
        """Load the exported program (safe: `.pt2` archives are not unpickled) and warm it up."""
        if self._module is not None:
            return
        import torch

        from engine.models.check import load_program  # check imports this module

        # Vetted first: torch.export.load alone is not safe on a hostile archive (check.py).
        program = load_program(self.folder, self.manifest.artifact)
        exported = program.module()
        self._module = self._exported = exported
        rows = batch_range(program, exported)
        lean = lean_forward(exported, keep_guard=rows is None)
        if lean is not None:
            # Kept only if it computes exactly what the exported module does.
            probe = torch.from_numpy(self._probe_rows(3))
            try:
                with torch.inference_mode():
                    agrees = torch.equal(lean(probe), exported(probe))
            except Exception:  # a graph the copy cannot run, or not one tensor out
                agrees = False
            if agrees:
                self._module, self._rows = lean, rows
        try:
            warm = self.predict_batch(self._probe_rows(1).tolist())
        except Exception:
            self._module = None
            raise
        width = len(self.output_names)
        if warm.shape != (1, width):
            self._module = None
            what = "labels" if self.manifest.is_classifier else "outputs"
            raise ValueError(f"returns shape {list(warm.shape)} for {width} {what}")

    def _probe_rows(self, count: int) -> np.ndarray:
        """Rows of the model's input kind for checks: normal floats, or ids the tokenizer has."""
        rng = np.random.default_rng(0)
        width = self.manifest.feature_count
        if self._tokenizer is not None:
            return rng.integers(0, self._tokenizer.vocab_size, size=(count, width), dtype=np.int64)
        return rng.normal(size=(count, width)).astype(np.float32)

    def predict_batch(self, rows: Sequence[FeatureRow]) -> np.ndarray:
        """One row of outputs per input: class probabilities for a classifier (softmax of its
        logits), the values themselves for a regressor; runs in the executor."""
        import torch

        if self._module is None:
            self.load()
        assert self._module is not None
        x = np.asarray(rows, dtype=np.int64 if self._tokenizer is not None else np.float32)
        if self._mean is not None and self._std is not None:
            x = (x - self._mean) / self._std
        module = self._module
        if self._rows is not None and not self._rows[0] <= len(x) <= self._rows[1]:
            assert self._exported is not None
            module = self._exported  # its guard refuses the batch, naming the bound
        with torch.inference_mode():
            out = module(torch.from_numpy(x))
            if self.manifest.is_classifier:
                out = torch.softmax(out, dim=1)
        result: np.ndarray = out.numpy()
        return result
