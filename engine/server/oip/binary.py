"""OIP's binary tensor data extension, both ways, as Triton's clients speak it.

A request may carry tensors as raw bytes after its JSON: the `Inference-Header-Content-Length`
header says where the JSON ends, and each binary input says its byte count in
`parameters.binary_data_size`, in the order the inputs are listed. Numbers are little-endian;
BOOL is one byte each; BYTES elements are each a 4-byte little-endian length and the bytes.
`with_binary_inputs` turns such a body into the JSON form (`data` lists), so the rest of the
request path is the one JSON requests take.

An answer is binary for the outputs the caller asked so for (`parameters.binary_data_output`
on the request, or `binary_data` on one output): `binary_response` moves their `data` after the
JSON in the same way. Everything else stays JSON, as before.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from engine.server.errors import Refusal
from engine.server.oip.tensors import element_count, shown

HEADER = "inference-header-content-length"
# Element types of fixed size, little-endian as the extension specifies.
_NUMPY_TYPES = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")


class BinaryError(Refusal):
    """A binary body or tensor that cannot be read; the message goes to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__("oip", message, 400)


def _header_length(value: str, body_length: int) -> int:
    # Digits only: `int()` would also take " 13", "+13", "1_3" and other scripts' digits.
    if not (value.isascii() and value.isdigit()):
        raise BinaryError(f"Inference-Header-Content-Length {shown(value)} is not a number")
    length = int(value)
    if not 0 < length <= body_length:
        raise BinaryError(
            f"Inference-Header-Content-Length {length} is outside the body ({body_length} bytes)"
        )
    return length


def _decode_bytes(raw: bytes, where: str) -> list[str]:
    """BYTES elements: each a 4-byte length, then that many bytes (UTF-8 text here)."""
    found: list[str] = []
    at = 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise BinaryError(f"{where}: a BYTES element's length is cut off")
        (size,) = _LENGTH.unpack_from(raw, at)
        at += 4
        if at + size > len(raw):
            raise BinaryError(f"{where}: a BYTES element is longer than its data")
        try:
            found.append(raw[at : at + size].decode())
        except UnicodeDecodeError:
            raise BinaryError(f"{where}: a BYTES element is not UTF-8 text") from None
        at += size
    return found


def _decode(raw: bytes, datatype: Any, shape: Any, where: str) -> list[Any]:
    if datatype == "BYTES":
        return _decode_bytes(raw, where)
    dtype = _NUMPY_TYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise BinaryError(f"{where}: datatype {str(datatype)[:20]!r} cannot be sent as binary")
    if len(raw) % dtype.itemsize:
        raise BinaryError(f"{where}: {len(raw)} bytes is not a whole number of {datatype} values")
    array = np.frombuffer(raw, dtype=dtype)
    if dtype.kind == "f" and not np.isfinite(array).all():
        # (JSON has no NaN or infinity either; no field of a model takes them)
        raise BinaryError(f"{where}: NaN and infinite values are not accepted")
    values: list[Any] = array.tolist()
    if isinstance(shape, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        # Counted with an early stop: a product of hundreds of huge dimensions is slow to
        # make and too long to print.
        expected = element_count(shape, len(values))
        if expected != len(values):
            holds = f"more than {len(values)}" if expected is None else str(expected)
            raise BinaryError(
                f"{where}: shape {shown(shape)} holds {holds} elements, "
                f"the binary data {len(values)}"
            )
    return values


def with_binary_inputs(body: bytes, header: str | None) -> bytes:
    """The request body in the JSON form: `body` as it came when `header` is None, else its
    JSON part with every binary input's `data` read from the bytes after it."""
    if header is None:
        return body
    length = _header_length(header, len(body))
    try:
        value = orjson.loads(body[:length])
    except orjson.JSONDecodeError as exc:
        raise BinaryError(f"the JSON before the binary data is not valid: {exc}") from None
    inputs = value.get("inputs") if isinstance(value, dict) else None
    at = length
    for index, tensor in enumerate(inputs if isinstance(inputs, list) else []):
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
            continue
        size = parameters.pop("binary_data_size")
        where = f"input {tensor.get('name', index)!r}"
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BinaryError(f"{where}: binary_data_size must be a non-negative integer")
        if at + size > len(body):
            raise BinaryError(f"{where}: binary_data_size {size} runs past the end of the body")
        tensor["data"] = _decode(
            body[at : at + size], tensor.get("datatype"), tensor.get("shape"), where
        )
        at += size
    if at != len(body):
        raise BinaryError(f"{len(body) - at} bytes after the JSON belong to no input")
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # (orjson reads deeper nesting than it writes)
        raise BinaryError("the JSON before the binary data is nested too deeply") from None


def _encode(output: dict[str, Any]) -> bytes:
    if output["datatype"] == "BYTES":
        parts = []
        for text in output["data"]:
            raw = str(text).encode()
            parts += [_LENGTH.pack(len(raw)), raw]
        return b"".join(parts)
    return np.asarray(output["data"], dtype=_NUMPY_TYPES[output["datatype"]]).tobytes()


def binary_response(body: dict[str, Any], binary: set[str]) -> tuple[bytes, dict[str, str]]:
    """An infer answer with the outputs named in `binary` as raw bytes after the JSON, and the
    headers that say so; the plain JSON answer when `binary` names none of its outputs."""
    chunks: list[bytes] = []
    for output in body["outputs"]:
        if output["name"] in binary:
            raw = _encode(output)
            del output["data"]
            output["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
    head = orjson.dumps(body)
    if not chunks:
        return head, {}
    return head + b"".join(chunks), {
        HEADER: str(len(head)),
        "content-type": "application/octet-stream",
    }
