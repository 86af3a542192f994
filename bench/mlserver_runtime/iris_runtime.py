"""An MLServer runtime for InferDeck's built-in models (bench/bench_mlserver.py serves `iris`).

Imported only inside the MLServer environment (`.venv-mlserver`). It computes what InferDeck's
engine computes (engine/models/runtime.py): the per-field OIP inputs, `[batch, 1]` each, are put
side by side in the manifest's input order into a `[batch, fields]` FP32 tensor, standardised
with the manifest's preprocessing mean and std when it has them, run through the exported
program (`torch.export.load(...).module()`) under `torch.inference_mode`, and softmaxed. The
answer carries InferDeck's two outputs: `label` (BYTES, `[batch, 1]`) and `scores` (FP32,
`[batch, labels]`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlserver import MLModel  # type: ignore[import-not-found]
from mlserver.codecs import NumpyCodec  # type: ignore[import-not-found]
from mlserver.errors import MLServerError  # type: ignore[import-not-found]
from mlserver.types import (  # type: ignore[import-not-found]
    InferenceRequest,
    InferenceResponse,
    ResponseOutput,
)
from mlserver.utils import get_model_uri  # type: ignore[import-not-found]


class IrisRuntime(MLModel):  # type: ignore[misc]
    """A model folder's manifest (`model.json`) and exported program, served over OIP."""

    async def load(self) -> bool:
        folder = Path(await get_model_uri(self.settings))
        manifest: dict[str, Any] = json.loads((folder / "model.json").read_text())
        self._fields: list[str] = [spec["name"] for spec in manifest["inputs"]]
        self._labels: list[str] = list(manifest["labels"])
        pre = manifest.get("preprocessing") or {}
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None
        if pre.get("mean") is not None and pre.get("std") is not None:
            self._mean = np.asarray(pre["mean"], dtype=np.float32)
            self._std = np.asarray(pre["std"], dtype=np.float32)
        extra = self.settings.parameters.extra or {}
        if extra.get("torch_threads") is not None:
            # InferDeck runs its models with one intra-op thread (engine/pipeline.py).
            torch.set_num_threads(int(extra["torch_threads"]))
        program = torch.export.load(str(folder / manifest.get("artifact", "model.pt2")))
        self._module = program.module()
        self._run(np.zeros((1, len(self._fields)), dtype=np.float32))  # warm up
        return True

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._mean is not None and self._std is not None:
            x = (x - self._mean) / self._std
        with torch.inference_mode():
            probs = torch.softmax(self._module(torch.from_numpy(x)), dim=1)
        result: np.ndarray = probs.numpy()
        return result

    def _features(self, payload: InferenceRequest) -> np.ndarray:
        given = {tensor.name: tensor for tensor in payload.inputs}
        missing = [name for name in self._fields if name not in given]
        if missing:
            raise MLServerError(f"missing input tensor(s): {', '.join(missing)}", status_code=400)
        columns = []
        for name in self._fields:
            column = NumpyCodec.decode_input(given[name]).astype(np.float32, copy=False)
            columns.append(column.reshape(-1, 1))
        if len({len(c) for c in columns}) != 1:
            raise MLServerError("input tensors differ in batch size", status_code=400)
        return np.ascontiguousarray(np.concatenate(columns, axis=1))

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        probs = self._run(self._features(payload))
        batch = probs.shape[0]
        labels = [self._labels[i] for i in probs.argmax(axis=1).tolist()]
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[
                ResponseOutput(name="label", datatype="BYTES", shape=[batch, 1], data=labels),
                ResponseOutput(
                    name="scores",
                    datatype="FP32",
                    shape=[batch, len(self._labels)],
                    data=probs.reshape(-1).tolist(),
                ),
            ],
        )
