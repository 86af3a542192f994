"""Protocol adapters: how a payload becomes a request body, and how a response is judged.

- `inferdeck`: `POST /predict` with `{client_id, model, input_payload, request_id}`; a good answer
  is a JSON object with `outputs`.
- `oip`: `POST /v2/models/{m}/infer` with `inputs` built from the model's metadata
  (`GET /v2/models/{m}`: name, datatype, shape); a good answer is a JSON object with `outputs`.
- `json`: `POST` to the base URL with the target's body template (`{{payload}}` replaced by the
  payload's JSON), or the payload itself; a good answer is any JSON document.

Bodies are built once per payload, before the run: `Prepared` is the body split around the
request ID (the `inferdeck` body carries it), so per request only bytes are joined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from engine.remote.classify import classify, describe
from engine.remote.client import TargetClient
from engine.remote.credentials import redact_url, scrub
from engine.remote.payloads import Payload
from engine.remote.targets import Target, predict_path

# (head, tail): the body is `head` when tail is None, else head + request ID + tail.
Prepared = tuple[bytes, bytes | None]
PLACEHOLDER = "{{payload}}"


class ProtocolError(ValueError):
    """A payload or a target's metadata cannot make a request of this protocol."""


@dataclass(frozen=True, slots=True)
class OipInput:
    """One input tensor of an OIP model's metadata (`parse_oip_metadata`)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


class Adapter:
    """The `json` protocol, and the base of the others."""

    required_key: str | None = None

    def __init__(self, target: Target) -> None:
        self.target = target
        self.url = target.url(predict_path(target))

    def prepare(self, payload: Payload) -> Prepared:
        template = self.target.body_template
        if template is None:
            return orjson.dumps(payload), None
        if PLACEHOLDER not in template:
            return template.encode(), None
        return template.replace(PLACEHOLDER, orjson.dumps(payload).decode()).encode(), None

    def check(self, body: bytes) -> str | None:
        """None when `body` is a good answer, otherwise why not."""
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return "not JSON"
        key = self.required_key
        if key is not None and (not isinstance(value, dict) or key not in value):
            return f"no {key!r} in the answer"
        return None


class InferDeckAdapter(Adapter):
    """This project's `POST /predict` (the body carries the request ID and the caller)."""

    required_key = "outputs"

    def __init__(self, target: Target, client_id: str = "load") -> None:
        super().__init__(target)
        if not target.model:
            raise ProtocolError("an inferdeck target needs a model")
        self.client_id = client_id

    def prepare(self, payload: Payload) -> Prepared:
        head = orjson.dumps(
            {"client_id": self.client_id, "model": self.target.model, "input_payload": payload}
        )
        return head[:-1] + b',"request_id":"', b'"}'


class OipAdapter(Adapter):
    """OIP v2 `infer`: payloads become tensors by the model's metadata."""

    required_key = "outputs"

    def __init__(self, target: Target, inputs: list[OipInput]) -> None:
        super().__init__(target)
        if not inputs:
            raise ProtocolError(f"model {target.model!r} declares no inputs")
        self.inputs = inputs

    def prepare(self, payload: Payload) -> Prepared:
        if isinstance(payload.get("inputs"), list):
            return orjson.dumps(payload), None  # already an OIP body
        # Servers may list alternatives (one tensor per field and a combined one), so the
        # payload's keys pick the tensors; the server says if one it needs is missing.
        named = [spec for spec in self.inputs if spec.name in payload]
        if named:
            tensors = [self._tensor(spec, _flatten(payload[spec.name])) for spec in named]
            return orjson.dumps({"inputs": tensors}), None
        # Otherwise one tensor holds the payload's values in their order (e.g. `input` [-1, 4]).
        values = _flatten(list(payload.values()))
        for spec in self.inputs:
            if len(self.inputs) == 1 or spec.shape[1:] == (len(values),):
                return orjson.dumps({"inputs": [self._tensor(spec, values)]}), None
        names = ", ".join(spec.name for spec in self.inputs)
        raise ProtocolError(f"the payload names none of the model's inputs ({names})")

    def _tensor(self, spec: OipInput, data: list[Any]) -> dict[str, Any]:
        row = list(spec.shape[1:])
        shape = [1, *row] if row and -1 not in row and math.prod(row) == len(data) else None
        return {
            "name": spec.name,
            "datatype": spec.datatype,
            "shape": shape or [1, len(data)],
            "data": data,
        }


def make_adapter(target: Target, client_id: str, oip_inputs: list[OipInput] | None) -> Adapter:
    """The adapter of the target's protocol; an OIP target's needs its model's inputs (read
    with `fetch_oip_inputs`). `client_id` is what an `inferdeck` body names as its caller."""
    if target.protocol == "oip":
        if oip_inputs is None:
            raise ProtocolError("an OIP target's inputs (its metadata) are needed first")
        return OipAdapter(target, oip_inputs)
    if target.protocol == "inferdeck":
        return InferDeckAdapter(target, client_id)
    return Adapter(target)


def oip_metadata_path(model: str) -> str:
    return f"/v2/models/{quote(model, safe='')}"


async def fetch_oip_inputs(client: TargetClient) -> list[OipInput]:
    """The inputs of the target's model, from its `GET /v2/models/{m}`; `ProtocolError` says
    why not."""
    target = client.target
    if target.protocol != "oip" or not target.model:
        raise ProtocolError("only an OIP target with a model has metadata to read")
    path = oip_metadata_path(target.model)
    shown = redact_url(target.url(path))  # messages reach the terminal: never the credentials
    try:
        status, body = await client.get(path)  # capped in bytes (decoded) and in time
    except Exception as exc:
        text = scrub(f"{classify(exc)}: {describe(exc)}", target.secret_values())
        raise ProtocolError(f"cannot read {shown}: {text}") from exc
    if status != 200:
        raise ProtocolError(f"{shown} answered {status}; is the model loaded?")
    return parse_oip_metadata(body)


def parse_oip_metadata(body: bytes) -> list[OipInput]:
    """The inputs of a `GET /v2/models/{m}` answer."""
    try:
        value = orjson.loads(body)
        inputs = value["inputs"]
        return [
            OipInput(str(i["name"]), str(i["datatype"]), tuple(int(d) for d in i["shape"]))
            for i in inputs
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"model metadata is not OIP v2: {type(exc).__name__} {exc}") from exc


def _flatten(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    flat: list[Any] = []
    for item in value:
        flat.extend(_flatten(item))
    return flat


def make_body(prepared: Prepared, request_id: str) -> bytes:
    head, tail = prepared
    return head if tail is None else head + request_id.encode() + tail
