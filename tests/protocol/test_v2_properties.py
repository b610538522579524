"""Property-based tests (hypothesis) of kninfer.protocol, the V2 REST wire format.

- Requests: any tensor of any V2 datatype and shape, sent as JSON `data` (flat or row-major nested)
  or through the binary tensor extension, decodes to exactly the array that was sent.
- Responses: any output array encodes (JSON or binary, as the request asks) to something a client
  decodes back to exactly that array.
- Robustness: whatever bytes or JSON document arrives, decoding either succeeds or raises
  kninfer.errors.InvalidInput (a 400), never anything else (a 500).

Open Inference Protocol REST, "Tensor Data" (row-major flattening) and Triton's binary tensor data
extension (binary_data.md) are the specs.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from kserve import InferRequest, InferResponse
from kserve.protocol.infer_type import RequestedOutput, serialize_byte_tensor

from kninfer.errors import InvalidInput
from kninfer.protocol.tensor import V2_TO_NUMPY
from kninfer.protocol.v1 import decode_v1_request
from kninfer.protocol.v2 import BINARY_HEADER, decode_v2_request, encode_v2_response, to_output

NUMERIC = [d for d in V2_TO_NUMPY if d != "BYTES"]
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


@st.composite
def tensors(draw: st.DrawFn, finite: bool) -> tuple[str, np.ndarray]:
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES"]))
    shape = draw(shapes)
    if datatype == "BYTES":
        size = int(np.prod(shape))
        values = draw(st.lists(st.text(max_size=8), min_size=size, max_size=size))
        array = np.empty(size, dtype=object)
        array[:] = [v.encode() for v in values]
        return datatype, array.reshape(shape)
    dtype = np.dtype(V2_TO_NUMPY[datatype])
    elements = None
    if dtype.kind == "f":
        elements = hnp.from_dtype(dtype, allow_nan=not finite, allow_infinity=not finite)
    return datatype, draw(hnp.arrays(dtype, shape, elements=elements))


def json_data(array: np.ndarray, nested: bool) -> Any:
    if array.dtype == object:
        flat = [v.decode() for v in array.reshape(-1)]
        return np.asarray(flat, dtype=object).reshape(array.shape).tolist() if nested else flat
    return array.tolist() if nested and array.ndim else array.reshape(-1).tolist()


def as_list(array: np.ndarray) -> list[Any]:
    return (
        [bytes(v) for v in array.reshape(-1)]
        if array.dtype == object
        else array.reshape(-1).tolist()
    )


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and as_list(a) == as_list(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def raw_bytes(datatype: str, array: np.ndarray) -> bytes:
    if datatype == "BYTES":
        serialized = serialize_byte_tensor(array.reshape(-1))
        return bytes(serialized.item()) if serialized.size else b""
    return np.ascontiguousarray(array).tobytes()


@SETTINGS
@given(tensors(finite=True), st.booleans())
def test_json_request_round_trip(tensor: tuple[str, np.ndarray], nested: bool) -> None:
    datatype, array = tensor
    doc = {
        "inputs": [
            {
                "name": "x",
                "shape": list(array.shape),
                "datatype": datatype,
                "data": json_data(array, nested),
            }
        ]
    }
    request = decode_v2_request(orjson.dumps(doc), {}, "m")
    (decoded,) = request.inputs
    assert decoded.datatype == datatype and decoded.shape == list(array.shape)
    assert same(decoded.data, array)


@SETTINGS
@given(st.lists(tensors(finite=False), min_size=1, max_size=3))
def test_binary_request_round_trip(items: list[tuple[str, np.ndarray]]) -> None:
    """NaN and infinity travel bit-exactly through the binary extension."""
    inputs, chunks = [], []
    for n, (datatype, array) in enumerate(items):
        raw = raw_bytes(datatype, array)
        inputs.append(
            {
                "name": f"x{n}",
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        chunks.append(raw)
    header = orjson.dumps({"inputs": inputs})
    request = decode_v2_request(header + b"".join(chunks), {BINARY_HEADER: str(len(header))}, "m")
    assert [i.name for i in request.inputs] == [f"x{n}" for n in range(len(items))]
    for decoded, (_, array) in zip(request.inputs, items, strict=True):
        assert same(decoded.data, array)


def _client_decode(payload: bytes, headers: dict[str, str]) -> dict[str, np.ndarray]:
    """What a V2 client does with a response (JSON, or JSON header + binary tensors)."""
    length = int(headers.get(BINARY_HEADER, len(payload)))
    doc = orjson.loads(payload[:length])
    offset, arrays = length, {}
    for output in doc["outputs"]:
        shape, datatype = output["shape"], output["datatype"]
        if "data" in output:
            if datatype == "BYTES":
                flat = np.empty(len(output["data"]), dtype=object)
                flat[:] = [v.encode() for v in output["data"]]
            else:
                flat = np.asarray(output["data"], dtype=V2_TO_NUMPY[datatype])
            arrays[output["name"]] = flat.reshape(shape)
            continue
        size = output["parameters"]["binary_data_size"]
        raw = payload[offset : offset + size]
        offset += size
        if datatype == "BYTES":
            from kserve.protocol.infer_type import deserialize_bytes_tensor

            arrays[output["name"]] = deserialize_bytes_tensor(raw).reshape(shape)
        else:
            arrays[output["name"]] = np.frombuffer(raw, V2_TO_NUMPY[datatype]).reshape(shape)
    assert offset == len(payload)
    return arrays


@SETTINGS
@given(st.lists(tensors(finite=True), min_size=1, max_size=3), st.booleans(), st.booleans())
def test_response_round_trip(
    items: list[tuple[str, np.ndarray]], binary_all: bool, binary_first: bool
) -> None:
    outputs = [to_output(f"y{n}", array) for n, (_, array) in enumerate(items)]
    requested = [RequestedOutput(name="y0", parameters={"binary_data": binary_first})]
    request = InferRequest(
        model_name="m",
        infer_inputs=[],
        request_id="r-1",
        parameters={"binary_data_output": binary_all},
        request_outputs=requested,
    )
    response = InferResponse(response_id="r-1", model_name="m", infer_outputs=outputs)
    payload, headers = encode_v2_response(response, request)
    decoded = _client_decode(payload, headers)
    # Per-output `binary_data` overrides the request-wide `binary_data_output` (binary_data.md).
    assert (BINARY_HEADER in headers) == (binary_first or (binary_all and len(items) > 1))
    for n, (_, array) in enumerate(items):
        assert same(decoded[f"y{n}"], array)


# ---- robustness: arbitrary input is a 400 or a success, never another exception -----------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def assert_well_formed(request: InferRequest) -> None:
    """A request the codec accepts carries, for each input, an array of its declared shape and
    datatype: model code never sees a malformed tensor."""
    assert request.inputs
    for infer_input in request.inputs:
        array = infer_input.data
        assert isinstance(array, np.ndarray)
        assert array.shape == tuple(infer_input.shape)
        assert all(d >= 0 for d in infer_input.shape)
        assert array.dtype == np.dtype(V2_TO_NUMPY[infer_input.datatype])


@st.composite
def mutated_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid-looking V2 request with some fields replaced by arbitrary JSON."""
    tensor: dict[str, Any] = {
        "name": "x",
        "datatype": draw(st.sampled_from([*V2_TO_NUMPY, "FP128"])),
        "shape": draw(st.lists(st.integers(-3, 6), max_size=3)),
        "data": draw(st.lists(json_values, max_size=6)),
    }
    for key in draw(st.sets(st.sampled_from(["name", "datatype", "shape", "data", "parameters"]))):
        tensor[key] = draw(json_values)
    doc: dict[str, Any] = {"inputs": [tensor]}
    for key in draw(st.sets(st.sampled_from(["id", "parameters", "outputs", "inputs"]))):
        doc[key] = draw(json_values)
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_requests())
def test_decoding_any_document_is_success_or_invalid_input(doc: dict[str, Any]) -> None:
    try:
        request = decode_v2_request(json.dumps(doc).encode(), {}, "m")
    except InvalidInput:
        return
    assert_well_formed(request)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=200),
    st.one_of(st.none(), st.integers(-5, 250).map(str), st.text(max_size=4)),
)
def test_decoding_any_bytes_is_success_or_invalid_input(body: bytes, header: str | None) -> None:
    headers = {} if header is None else {BINARY_HEADER: header}
    try:
        assert_well_formed(decode_v2_request(body, headers, "m"))
    except InvalidInput:
        pass
    try:
        assert isinstance(decode_v1_request(body), dict)
    except InvalidInput:
        pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_requests(), st.binary(max_size=64))
def test_decoding_any_binary_body_is_success_or_invalid_input(
    doc: dict[str, Any], tail: bytes
) -> None:
    header = json.dumps(doc).encode()  # stdlib: it writes integers beyond 64 bits too
    try:
        request = decode_v2_request(header + tail, {BINARY_HEADER: str(len(header))}, "m")
    except InvalidInput:
        return
    assert_well_formed(request)
