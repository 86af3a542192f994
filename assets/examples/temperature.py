"""A model file for `inferdeck models add`: Celsius to Fahrenheit and Kelvin, exactly.

A model file defines three names:
- `build()` returns the `torch.nn.Module` to export. Its `forward` takes one float32 tensor
  `[batch, n_inputs]`, the inputs in MANIFEST's order (an enum as its choice's index, a bool as
  0.0/1.0), and returns `[batch, n_outputs]` for a regression model (logits `[batch, n_labels]`
  for a classifier).
- `MANIFEST` holds the manifest's fields (see `engine/models/manifest.py`); `models add` writes
  `model.json` from it, and the export as `model.pt2`.
- `EXAMPLES` are inputs as a request sends them: checked against MANIFEST's inputs, run through
  the module and its export (they must agree), stored as the model's examples.

    inferdeck models add assets/examples/temperature.py

The file runs once, when it is added; serving uses only the exported program.
"""

import torch
from torch import nn

MANIFEST = {
    "name": "temperature",
    "version": "1",
    "task": "tabular-regression",
    "description": "Celsius to Fahrenheit and Kelvin (one linear layer, exact weights).",
    "inputs": [
        {
            "name": "celsius",
            "type": "float",
            "unit": "°C",
            "minimum": -273.15,
            "maximum": 10000.0,
            "description": "A temperature in degrees Celsius.",
        }
    ],
    "outputs": [
        {"name": "fahrenheit", "unit": "°F", "description": "C × 1.8 + 32."},
        {"name": "kelvin", "unit": "K", "description": "C + 273.15."},
    ],
}

EXAMPLES = [{"celsius": 100.0}, {"celsius": 0.0}, {"celsius": -40.0}]


def build() -> nn.Module:
    """[°F, K] = [[1.8], [1.0]] · °C + [32, 273.15]."""
    linear = nn.Linear(1, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.8], [1.0]]))
        linear.bias.copy_(torch.tensor([32.0, 273.15]))
    return linear
