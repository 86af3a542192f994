"""A model file for `inferdeck models add`: a tabular classifier with about 1 MB of weights.

Sixteen sensor readings in, one of four states out, through an MLP 16 → 256 → 512 → 256 → 4
(268,292 float32 weights, 1.07 MB). The weights are random but seeded, so every build is the same
model: it is a size to time `models add` and serving with, not a trained model.

The contract (see temperature.py): `build()` returns the module, whose `forward` takes one
float32 tensor `[batch, 16]` (the inputs in MANIFEST's order) and returns logits `[batch, 4]`,
one per label; `MANIFEST` is the manifest but its artifact; `EXAMPLES` are inputs as a request
sends them.

    inferdeck models add assets/examples/mlp_1mb.py
"""

import torch
from torch import nn

N_INPUTS = 16
LABELS = ["idle", "normal", "warning", "fault"]

MANIFEST = {
    "name": "mlp-1mb",
    "version": "1",
    "task": "tabular-classification",
    "description": "A state from 16 sensor readings (16 -> 256 -> 512 -> 256 -> 4 MLP, "
    "seeded random weights, about 1 MB).",
    "inputs": [
        {"name": f"sensor_{i:02d}", "type": "float", "minimum": -100.0, "maximum": 100.0}
        for i in range(N_INPUTS)
    ],
    "labels": LABELS,
}

EXAMPLES = [
    {f"sensor_{i:02d}": 0.0 for i in range(N_INPUTS)},
    {f"sensor_{i:02d}": float(i) / 4 for i in range(N_INPUTS)},
    {f"sensor_{i:02d}": -1.5 if i % 2 else 2.5 for i in range(N_INPUTS)},
]


def build() -> nn.Module:
    torch.manual_seed(1234)
    return nn.Sequential(
        nn.Linear(N_INPUTS, 256),
        nn.ReLU(),
        nn.Linear(256, 512),
        nn.ReLU(),
        nn.Linear(512, 256),
        nn.ReLU(),
        nn.Linear(256, len(LABELS)),
    )
