"""A valid example payload for a remote model, made from what the target says about it.

`inferdeck load URL --model M` with no payload should send requests the server accepts, not a
run of 422s: the example comes from the model's input schema (`GET /models/{m}` on this
project's service) or its OIP metadata (`GET /v2/models/{m}`): a number in the middle of its
range, a tensor of ones of the input's row shape.

A form starts from a real input where the target offers one (`offered_example`): this project's
service names the model's own example in `GET /models/{m}` (`example`: the first held-out row,
as the local form starts from), and a JSON schema may carry `examples`. A value made up from the
schema is the last resort.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from engine.remote.protocols import OipInput

Payload = dict[str, Any]


def example_from_schema(schema: dict[str, Any]) -> Payload:
    """An object that satisfies a model's JSON input schema (its required and optional fields)."""
    properties: dict[str, Any] = schema.get("properties", {})
    return {name: _value(spec) for name, spec in properties.items()}


def offered_example(info: Any) -> Payload:
    """The example a `GET /models/{m}` answer offers, if any: its `example` (the model's own,
    from this project's service), else the first of its input schema's `examples`; `{}` when
    it offers none (an older service, or another one)."""
    if not isinstance(info, dict):
        return {}
    own = info.get("example")
    if isinstance(own, dict) and own:
        return dict(own)
    schema = info.get("input_schema")
    examples = schema.get("examples") if isinstance(schema, dict) else None
    if isinstance(examples, list) and examples and isinstance(examples[0], dict):
        return dict(examples[0])
    return {}


def _value(spec: dict[str, Any]) -> Any:
    examples = spec.get("examples")
    if isinstance(examples, list) and examples:  # the schema's own example of this field
        return examples[0]
    if "default" in spec:
        return spec["default"]
    if spec.get("enum"):
        return spec["enum"][0]
    if "const" in spec:
        return spec["const"]
    kind = spec.get("type")
    if kind in ("number", "integer"):
        low, high = spec.get("minimum"), spec.get("maximum")
        if low is not None and high is not None:
            middle = (low + high) / 2
        else:
            middle = low if low is not None else (high if high is not None else 1)
        return math.floor(middle) if kind == "integer" else float(middle)
    if kind == "boolean":
        return False
    if kind == "string":
        return "x" * max(1, int(spec.get("minLength", 1)))
    if kind == "array":
        items = spec.get("items", {})
        count = max(1, int(spec.get("minItems", 1)))
        return [_value(items) for _ in range(count)]
    if kind == "object":
        return example_from_schema(spec)
    return 1.0


def example_from_oip(inputs: Sequence[OipInput]) -> Payload:
    """One value per scalar input (`[-1, 1]`), or ones filling the first input's row shape."""
    scalars = [i for i in inputs if i.shape[1:] in ((1,), ())]
    if scalars:
        return {i.name: _scalar(i.datatype) for i in scalars}
    if not inputs:
        return {}
    first = inputs[0]
    size = math.prod(max(1, d) for d in first.shape[1:])
    return {first.name: [_scalar(first.datatype)] * size}


def _scalar(datatype: str) -> Any:
    if datatype == "BOOL":
        return False
    if datatype == "BYTES":
        return "x"
    if datatype.startswith(("INT", "UINT")):
        return 1
    return 1.0
