"""Train and export the two built-in models into `engine/models/builtin/`.

Run with `make models` (it installs scikit-learn, whose package carries the Iris and 8x8 digits
data sets, so nothing is downloaded). Each model is a small MLP exported with `torch.export` and a
dynamic batch dimension, next to a `model.json` manifest and a held-out set the tests score.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split
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


if __name__ == "__main__":
    print(f"iris held-out accuracy: {train_iris():.4f}")
    print(f"digits held-out accuracy: {train_digits():.4f}")
