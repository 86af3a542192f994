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

FeatureRow = Sequence[float]


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

    @classmethod
    def from_manifest(cls, manifest: Manifest, folder: Path) -> LoadedModel:
        model = cls(manifest, folder, input_model(manifest))
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
    def loaded(self) -> bool:
        return self._module is not None

    def features(self, inputs: BaseModel) -> FeatureRow:
        """The model's feature vector for one validated input (enums by choice index)."""
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

        program = torch.export.load(str(self.folder / self.manifest.artifact))
        exported = program.module()
        self._module = self._exported = exported
        rows = batch_range(program, exported)
        lean = lean_forward(exported, keep_guard=rows is None)
        if lean is not None:
            # Kept only if it computes exactly what the exported module does.
            probe = torch.from_numpy(
                np.random.default_rng(0).normal(size=(3, self.manifest.feature_count))
            ).float()
            try:
                with torch.inference_mode():
                    agrees = torch.equal(lean(probe), exported(probe))
            except Exception:  # a graph the copy cannot run, or not one tensor out
                agrees = False
            if agrees:
                self._module, self._rows = lean, rows
        warm = self.predict_batch([[0.0] * self.manifest.feature_count])
        if warm.shape != (1, len(self.labels)):
            self._module = None
            raise ValueError(f"outputs {warm.shape[1:]} scores for {len(self.labels)} labels")

    def predict_batch(self, rows: Sequence[FeatureRow]) -> np.ndarray:
        """Class probabilities, one row per input; runs in the executor."""
        import torch

        if self._module is None:
            self.load()
        assert self._module is not None
        x = np.asarray(rows, dtype=np.float32)
        if self._mean is not None and self._std is not None:
            x = (x - self._mean) / self._std
        module = self._module
        if self._rows is not None and not self._rows[0] <= len(x) <= self._rows[1]:
            assert self._exported is not None
            module = self._exported  # its guard refuses the batch, naming the bound
        with torch.inference_mode():
            logits = module(torch.from_numpy(x))
            probs = torch.softmax(logits, dim=1)
        result: np.ndarray = probs.numpy()
        return result
