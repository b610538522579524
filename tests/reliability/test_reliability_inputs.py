"""Bad input on every transport: V1, V2 JSON, V2 binary tensor extension, gRPC V2, CloudEvents.

Each case asserts the exact status (or gRPC code) and a message naming the problem, then that the
same server still answers a good request correctly (the contract in DESIGN.md, "Errors": a client
mistake is a 4xx and the process keeps serving). One server, with small limits so the limit cases
stay cheap, is shared by the whole module; the same table runs against the iris model compiled
by `kninfer compile` (ONNX Runtime) at the end of the module. A second
serves a two-input torch.export program (x and an integer mask sharing one batch dimension of at
most 64 rows, a dict of two outputs) for the mistakes only a model of several inputs invites,
again as the program and as its compiled graph; a third the same module exported to ONNX as an
MLflow model of the onnx flavor (`--predictor mlflow` through ONNX Runtime), for the same
mistakes.
"""

from __future__ import annotations

import functools
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import orjson
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from tests.support.compiled_models import compiled_here
from tests.support.servers import ServerProcess, grpc_stub, server_env

# One shared server per module: keep the module on one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("reliability-inputs")

MAX_BODY = 65536
MAX_ELEMENTS = 2000
ROW = [5.1, 3.5, 1.4, 0.2]  # setosa: label 0
GOOD = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
V2 = "/v2/models/iris/infer"
V1 = "/v1/models/iris:predict"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("reliability-inputs")
    proc = ServerProcess(
        ["--max-body-bytes", str(MAX_BODY), "--max-tensor-elements", str(MAX_ELEMENTS)],
        server_env(tmp),
        tmp / "server.log",
    ).start(timeout=120)
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[GRPCInferenceServiceStub]:
    with grpc_stub(server.grpc_target) as stub:
        yield stub


def assert_refused(
    client: httpx.Client,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    message: str,
) -> None:
    """The request gets `status` and a JSON `{"error": ...}` holding `message`."""
    reply = client.post(path, content=body, headers=headers)
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert message in error, error


def assert_grpc_refused(
    stub: GRPCInferenceServiceStub,
    request_: pb.ModelInferRequest,
    code: grpc.StatusCode,
    fragment: str,
) -> None:
    """The gRPC call fails with `code` and details holding `fragment`."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request_, timeout=30)
    assert caught.value.code() == code, caught.value.details()
    assert fragment in (caught.value.details() or ""), caught.value.details()


def still_serving(client: httpx.Client, stub: GRPCInferenceServiceStub) -> None:
    reply = client.post(V2, json=GOOD)
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == [0]
    assert client.post(V1, json={"instances": [ROW]}).json() == {"predictions": [0]}
    answer = stub.ModelInfer(grpc_request())
    assert np.frombuffer(answer.raw_output_contents[0], dtype=np.int64).tolist() == [0]


# ---- request builders -------------------------------------------------------------------------


def tensor(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}
    base.update(overrides)
    return {"inputs": [base]}


def binary(
    doc: dict[str, object], *tensors: bytes, header_length: str | None = None
) -> tuple[dict[str, str], bytes]:
    """A V2 binary-extension body (JSON header, then raw tensors) and its headers."""
    header = orjson.dumps(doc)
    length = header_length if header_length is not None else str(len(header))
    return (
        {"inference-header-content-length": length, "content-type": "application/octet-stream"},
        header + b"".join(tensors),
    )


def binary_input(
    size: int,
    datatype: str = "FP64",
    shape: list[int] | None = None,
) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": shape or [1, 4],
                "datatype": datatype,
                "parameters": {"binary_data_size": size},
            }
        ]
    }


def f64(*values: float) -> bytes:
    return np.asarray(values, dtype=np.float64).tobytes()


def deep(depth: int) -> bytes:
    return b'{"instances": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


def http_case(
    case_id: str,
    body: object,
    status: int,
    message: str,
    *,
    path: str = V2,
    headers: dict[str, str] | None = None,
) -> object:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return pytest.param(
        path, headers if headers is not None else JSON, raw, status, message, id=case_id
    )


def binary_case(
    case_id: str, parts: tuple[dict[str, str], bytes], status: int, message: str
) -> object:
    headers, body = parts
    return pytest.param(V2, headers, body, status, message, id=case_id)


def structured_event(data: object, **attributes: object) -> bytes:
    event: dict[str, object] = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/tests",
        "type": "dev.kninfer.inference.request",
        "datacontenttype": "application/json",
        "data": data,
    }
    event.update(attributes)
    return orjson.dumps({k: v for k, v in event.items() if v is not None})


def binary_event(**overrides: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "ce-specversion": "1.0",
        "ce-id": "e-2",
        "ce-source": "/tests",
        "ce-type": "dev.kninfer.inference.request",
        "content-type": "application/json",
    }
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v is not None}


STRUCTURED = {"content-type": "application/cloudevents+json"}

# ---- the HTTP table: (path, headers, body, status, message fragment) ---------------------------

HTTP_CASES = [
    # V2 JSON: the document
    http_case(
        "v2-truncated-json",
        b'{"inputs": [{"name": "input-0", "sha',
        400,
        "request body is not valid JSON",
    ),
    http_case("v2-empty-body", b"", 400, "request body is empty"),
    http_case("v2-json-array", [ROW], 400, "request body must be a JSON object"),
    http_case("v2-json-string", "inputs", 400, "request body must be a JSON object"),
    http_case("v2-no-inputs", {"input": GOOD["inputs"]}, 400, "request has no 'inputs'"),
    http_case(
        "v2-inputs-object", {"inputs": GOOD["inputs"][0]}, 400, "'inputs' must be a non-empty list"
    ),
    http_case("v2-inputs-empty", {"inputs": []}, 400, "'inputs' must be a non-empty list"),
    http_case(
        "v2-input-not-object",
        {"inputs": [ROW]},
        400,
        "inputs[0] must be an object with name, shape, datatype",
    ),
    http_case(
        "v2-input-no-name",
        {"inputs": [{"shape": [1, 4], "datatype": "FP64", "data": ROW}]},
        400,
        "inputs[0] has no 'name'",
    ),
    http_case("v2-input-name-number", tensor(name=7), 400, "inputs[0] has no 'name'"),
    http_case(
        "v2-duplicate-input", {"inputs": GOOD["inputs"] * 2}, 400, "input 'input-0' appears twice"
    ),
    http_case("v2-id-not-string", {**GOOD, "id": 42}, 400, "'id' must be a string"),
    http_case(
        "v2-parameters-list",
        {**GOOD, "parameters": ["binary_data_output"]},
        400,
        "'parameters' must be a JSON object",
    ),
    http_case(
        "v2-input-parameters-string",
        tensor(parameters="x"),
        400,
        "input 'input-0': 'parameters' must be a JSON object",
    ),
    http_case(
        "v2-outputs-strings",
        {**GOOD, "outputs": ["predict"]},
        400,
        "'outputs' must be a list of objects with a 'name'",
    ),
    http_case(
        "v2-unknown-output",
        {**GOOD, "outputs": [{"name": "predict_log_proba"}]},
        400,
        "unknown output(s) predict_log_proba; model 'iris' has predict, predict_proba",
    ),
    # V2 JSON: shapes
    http_case(
        "v2-negative-dim",
        tensor(shape=[1, -4]),
        400,
        "input 'input-0': shape [1, -4] has a negative dimension",
    ),
    http_case(
        "v2-shape-floats",
        tensor(shape=[1.0, 4.0]),
        400,
        "input 'input-0': 'shape' must be a list of integers, got [1.0, 4.0]",
    ),
    http_case("v2-shape-bools", tensor(shape=[True, 4]), 400, "'shape' must be a list of integers"),
    http_case(
        "v2-shape-missing",
        {"inputs": [{"name": "input-0", "datatype": "FP64", "data": ROW}]},
        400,
        "input 'input-0': 'shape' must be a list of integers, got None",
    ),
    http_case(
        "v2-huge-shape",
        tensor(shape=[100_000_000, 100_000_000]),
        400,
        "input 'input-0': 'data' has 4 values but shape needs 10000000000000000",
    ),
    http_case(
        "v2-length-mismatch",
        tensor(shape=[2, 4]),
        400,
        "input 'input-0': 'data' has 4 values but shape needs 8",
    ),
    http_case(
        "v2-ragged",
        tensor(shape=[2, 4], data=[ROW, ROW[:3]]),
        400,
        "input 'input-0': 'data' is a ragged nested list",
    ),
    http_case(
        "v2-wrong-features",
        tensor(shape=[2, 2], data=ROW),
        400,
        "input 'input-0' has shape [2, 2]; expected [-1, 4] (-1 is any size)",
    ),
    http_case(
        "v2-rank-3",
        tensor(shape=[1, 1, 4]),
        400,
        "input 'input-0' has shape [1, 1, 4]; expected [-1, 4]",
    ),
    http_case(
        "v2-scalar-shape",
        tensor(shape=[], data=1.0),
        400,
        "input 'input-0' has shape []; expected [-1, 4]",
    ),
    http_case(
        "v2-too-many-elements",
        tensor(shape=[501, 4], data=[0.5] * 2004),
        413,
        "input 'input-0' has 2004 elements; the limit is 2000 (KNINFER_MAX_TENSOR_ELEMENTS)",
    ),
    # V2 JSON: datatypes and values
    http_case(
        "v2-datatype-unknown",
        tensor(datatype="FP128"),
        400,
        "input 'input-0': unsupported datatype 'FP128'; expected one of BOOL",
    ),
    http_case(
        "v2-datatype-number", tensor(datatype=64), 400, "input 'input-0': unsupported datatype 64"
    ),
    http_case(
        "v2-datatype-bytes",
        tensor(datatype="BYTES", data=["a", "b", "c", "d"]),
        400,
        "input 'input-0' has datatype BYTES; expected one of FP64, FP32, INT64, INT32",
    ),
    http_case(
        "v2-datatype-bool",
        tensor(datatype="BOOL", data=[True, False, True, False]),
        400,
        "input 'input-0' has datatype BOOL; expected one of FP64, FP32, INT64, INT32",
    ),
    http_case(
        "v2-strings-as-fp64",
        tensor(data=["5.1", "3.5", "1.4", "0.2"]),
        400,
        "input 'input-0': 'data' must be numbers for datatype FP64",
    ),
    http_case(
        "v2-null-value",
        tensor(data=[5.1, None, 1.4, 0.2]),
        400,
        "input 'input-0': 'data' must be numbers for datatype FP64",
    ),
    http_case(
        "v2-object-value",
        tensor(data=[{"v": 1}, 2, 3, 4]),
        400,
        "input 'input-0': 'data' must be numbers for datatype FP64",
    ),
    http_case(
        "v2-bools-as-fp64",
        tensor(data=[True, False, True, 0.2]),
        400,
        "input 'input-0': 'data' must be numbers for datatype FP64; found true/false",
    ),
    http_case(
        "v2-all-bools-as-fp64",
        tensor(data=[True, False, True, False]),
        400,
        "input 'input-0': 'data' must be numbers for datatype FP64; found true/false",
    ),
    http_case(
        "v2-empty-batch",
        tensor(shape=[0, 4], data=[]),
        400,
        "input 'input-0' has no rows; an empty batch is refused: send at least one row",
    ),
    http_case(
        "v2-wrong-input-name",
        tensor(name="features"),
        400,
        "unknown input 'features'; model 'iris' takes input-0",
    ),
    http_case(
        "v2-fraction-int64",
        tensor(datatype="INT64", data=[5.1, 3, 1, 0]),
        400,
        "input 'input-0': datatype INT64 needs integers; found fractional numbers",
    ),
    http_case(
        "v2-int32-overflow",
        tensor(datatype="INT32", data=[2**31, 3, 1, 0]),
        400,
        "input 'input-0': a value is out of range for INT32",
    ),
    http_case(
        "v2-int8-negative-uint",
        tensor(datatype="UINT8", data=[-1, 3, 1, 0]),
        400,
        "input 'input-0': a value is out of range for UINT8",
    ),
    http_case(
        "v2-fp32-overflow",
        tensor(datatype="FP32", data=[1e300, 3.5, 1.4, 0.2]),
        400,
        "input 'input-0': a value is out of range for FP32",
    ),
    http_case(
        "v2-bigint",
        b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": '
        b'"INT64", "data": [99999999999999999999999, 1, 2, 3]}]}',
        400,
        "input 'input-0': a value is out of range for INT64",
    ),
    http_case(
        "v2-nan-literal",
        b'{"inputs": [{"name": "input-0", "shape": [1, 4], '
        b'"datatype": "FP64", "data": [NaN, 1, 2, 3]}]}',
        400,
        "request body is not valid JSON",
    ),
    http_case(
        "v2-infinity-literal",
        b'{"inputs": [{"name": "input-0", "shape": [1, 4], '
        b'"datatype": "FP64", "data": [Infinity, 1, 2, 3]}]}',
        400,
        "request body is not valid JSON",
    ),
    http_case(
        "v2-overflow-to-inf",
        b'{"inputs": [{"name": "input-0", "shape": [1, 4], '
        b'"datatype": "FP64", "data": [1e400, 1, 2, 3]}]}',
        400,
        "request body is not valid JSON",
    ),
    http_case(
        "v2-deeply-nested",
        b'{"inputs": [{"name": "input-0", "shape": [1, 4], '
        b'"datatype": "FP64", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}]}",
        400,
        "request body is not valid JSON",
    ),
    http_case(
        "v2-non-utf8",
        b'{"inputs": [{"name": "input-\xff\xfe", "shape": [1, 4]}]}',
        400,
        "request body is not valid JSON",
    ),
    http_case(
        "v2-utf16",
        orjson.dumps(GOOD).decode().encode("utf-16"),
        400,
        "request body is not valid JSON",
    ),
    http_case(
        "v2-lone-surrogate",
        b'{"inputs": [{"name": "\\ud800", "shape": [1, 4], '
        b'"datatype": "FP64", "data": [1, 2, 3, 4]}]}',
        400,
        "request body is not valid JSON",
    ),
    # wrong content types: the body decides, and a body that is not V2 JSON is a 400
    http_case(
        "v2-form-encoded",
        b"inputs=1&shape=4",
        400,
        "request body is not valid JSON",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    http_case(
        "v2-multipart",
        b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--b--",
        400,
        "request body is not valid JSON",
        headers={"content-type": "multipart/form-data; boundary=b"},
    ),
    http_case(
        "v2-octet-stream-raw-floats",
        f64(*ROW),
        400,
        "request body is not valid JSON",
        headers={"content-type": "application/octet-stream"},
    ),
    http_case(
        "v2-pickle-body",
        b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94.",
        400,
        "request body is not valid JSON",
        headers={"content-type": "application/python-pickle"},
    ),
    # limits
    http_case(
        "v2-body-over-limit",
        b" " * (MAX_BODY + 1),
        413,
        f"request body is {MAX_BODY + 1} bytes; the limit is {MAX_BODY} (KNINFER_MAX_BODY_BYTES)",
    ),
    http_case(
        "v2-unknown-model", GOOD, 404, "model 'iris2' not found", path="/v2/models/iris2/infer"
    ),
    # V2 binary tensor extension
    binary_case(
        "bin-header-length-text",
        binary(binary_input(32), f64(*ROW), header_length="abc"),
        400,
        "Inference-Header-Content-Length must be an integer, got 'abc'",
    ),
    binary_case(
        "bin-header-length-zero",
        binary(binary_input(32), f64(*ROW), header_length="0"),
        400,
        "Inference-Header-Content-Length is 0 but the body has",
    ),
    binary_case(
        "bin-header-length-past-end",
        binary(binary_input(32), f64(*ROW), header_length="100000"),
        400,
        "Inference-Header-Content-Length is 100000 but the body has",
    ),
    binary_case(
        "bin-header-length-negative",
        binary(binary_input(32), f64(*ROW), header_length="-5"),
        400,
        "Inference-Header-Content-Length is -5 but the body has",
    ),
    binary_case(
        "bin-header-cuts-json",
        binary(binary_input(32), f64(*ROW), header_length="20"),
        400,
        "request body is not valid JSON",
    ),
    binary_case(
        "bin-truncated-tensor",
        binary(binary_input(32), f64(*ROW)[:20]),
        400,
        "input 'input-0': binary_data_size 32 runs past the end of the body",
    ),
    binary_case(
        "bin-size-mismatch-shape",
        binary(binary_input(24), f64(*ROW[:3])),
        400,
        "input 'input-0': binary_data_size is 24 bytes but shape and FP64 need 32",
    ),
    binary_case(
        "bin-trailing-bytes",
        binary(binary_input(32), f64(*ROW), b"\x00" * 8),
        400,
        "body has 8 bytes after the last binary tensor",
    ),
    binary_case(
        "bin-size-negative",
        binary(binary_input(-32), f64(*ROW)),
        400,
        "input 'input-0': binary_data_size must be a non-negative int",
    ),
    binary_case(
        "bin-size-string",
        binary(
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [1, 4],
                        "datatype": "FP64",
                        "parameters": {"binary_data_size": "32"},
                    }
                ]
            },
            f64(*ROW),
        ),
        400,
        "input 'input-0': binary_data_size must be a non-negative int",
    ),
    binary_case(
        "bin-no-size",
        binary({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64"}]}, f64(*ROW)),
        400,
        "input 'input-0' has no 'data'",
    ),
    binary_case(
        "bin-nan",
        binary(binary_input(32), f64(5.1, float("nan"), 1.4, 0.2)),
        400,
        "input 'input-0' contains NaN or infinity; LogisticRegression needs finite numbers",
    ),
    binary_case(
        "bin-inf",
        binary(binary_input(32), f64(float("inf"), 3.5, 1.4, 0.2)),
        400,
        "input 'input-0' contains NaN or infinity",
    ),
    binary_case(
        "bin-fp32-neg-inf",
        binary(binary_input(16, "FP32"), np.asarray([-np.inf, 1, 2, 3], np.float32).tobytes()),
        400,
        "input 'input-0' contains NaN or infinity",
    ),
    binary_case(
        "bin-huge-shape",
        binary(binary_input(32, shape=[2**31, 2**31]), f64(*ROW)),
        400,
        "input 'input-0': binary_data_size is 32 bytes but shape and FP64 need "
        "36893488147419103232",
    ),
    binary_case(
        "bin-bytes-malformed",
        binary(binary_input(4, "BYTES", [1]), struct.pack("<I", 1000)),
        400,
        "input 'input-0': malformed binary BYTES tensor",
    ),
    binary_case(
        "bin-bool-rejected",
        binary(binary_input(4, "BOOL"), b"\x01\x00\x01\x00"),
        400,
        "input 'input-0' has datatype BOOL; expected one of FP64, FP32, INT64, INT32",
    ),
    binary_case(
        "bin-json-non-utf8",
        ({"inference-header-content-length": "4"}, b"\xff\xfe\xfd\xfc" + f64(*ROW)),
        400,
        "request body is not valid JSON",
    ),
    # V1
    http_case(
        "v1-truncated", b'{"instances": [[5.1, 3.5', 400, "request body is not valid JSON", path=V1
    ),
    http_case("v1-empty-body", b"", 400, "request body is empty", path=V1),
    http_case("v1-array-body", [ROW], 400, "request body must be a JSON object", path=V1),
    http_case("v1-typo-field", {"instance": [ROW]}, 400, 'request has no "instances"', path=V1),
    http_case(
        "v1-instances-object",
        {"instances": {"a": 1}},
        400,
        '"instances" must be a list of rows',
        path=V1,
    ),
    http_case(
        "v1-flat-list",
        {"instances": ROW},
        400,
        "'instances' must be a list of rows (shape [-1, 4]); got a flat list",
        path=V1,
    ),
    http_case(
        "v1-wrong-features",
        {"instances": [ROW[:3]]},
        400,
        "input 'input-0' has shape [1, 3]; expected [-1, 4]",
        path=V1,
    ),
    http_case(
        "v1-ragged",
        {"instances": [ROW, ROW[:2]]},
        400,
        "'instances' must be a list of rows of 4 numbers for input 'input-0'",
        path=V1,
    ),
    http_case(
        "v1-strings",
        {"instances": [["a", "b", "c", "d"]]},
        400,
        "'instances' must be a list of rows of 4 numbers for input 'input-0'",
        path=V1,
    ),
    http_case(
        "v1-empty-instances",
        {"instances": []},
        400,
        "'instances' is empty; an empty batch is refused: send at least one row",
        path=V1,
    ),
    http_case(
        "v1-bools",
        {"instances": [[True, 3.5, 1.4, 0.2]]},
        400,
        "'instances' must be numbers for input 'input-0'; got true/false",
        path=V1,
    ),
    http_case(
        "v1-nan-literal",
        b'{"instances": [[NaN, 1, 2, 3]]}',
        400,
        "request body is not valid JSON",
        path=V1,
    ),
    http_case("v1-deeply-nested", deep(30_000), 400, "request body is not valid JSON", path=V1),
    http_case(
        "v1-non-utf8",
        b'{"instances": [["\xc3\x28"]]}',
        400,
        "request body is not valid JSON",
        path=V1,
    ),
    http_case(
        "v1-too-many-elements",
        {"instances": [ROW] * 501},
        413,
        "input 'input-0' has 2004 elements; the limit is 2000",
        path=V1,
    ),
    http_case(
        "v1-unknown-model",
        {"instances": [ROW]},
        404,
        "model 'nope' not found",
        path="/v1/models/nope:predict",
    ),
    # CloudEvents, structured mode on POST /
    http_case(
        "ce-structured-truncated",
        b'{"specversion": "1.0", "id": "e',
        400,
        "structured CloudEvent is not valid JSON",
        path="/",
        headers=STRUCTURED,
    ),
    http_case(
        "ce-structured-array",
        [GOOD],
        400,
        "structured CloudEvent must be a JSON object",
        path="/",
        headers=STRUCTURED,
    ),
    http_case(
        "ce-structured-no-id",
        structured_event(GOOD, id=None),
        400,
        "CloudEvent is missing required attribute(s) id",
        path="/",
        headers=STRUCTURED,
    ),
    http_case(
        "ce-structured-no-source",
        structured_event(GOOD, source=None),
        400,
        "CloudEvent is missing required attribute(s) source",
        path="/",
        headers=STRUCTURED,
    ),
    http_case(
        "ce-structured-specversion",
        structured_event(GOOD, specversion="0.3"),
        400,
        "CloudEvent specversion is '0.3'; kninfer accepts '1.0'",
        path="/",
        headers=STRUCTURED,
    ),
    http_case(
        "ce-structured-specversion-object",
        structured_event(GOOD, specversion={}),
        400,
        "CloudEvent specversion is {}; kninfer accepts '1.0'",
        path="/",
        headers=STRUCTURED,
    ),
    http_case(
        "ce-structured-no-data",
        structured_event(None),
        400,
        "CloudEvent has no data; its data must be a V2 inference request",
        path="/",
        headers=STRUCTURED,
    ),
    http_case(
        "ce-structured-bad-tensor",
        structured_event(tensor(shape=[-1, 4])),
        400,
        "CloudEvent data: input 'input-0': shape [-1, 4] has a negative dimension",
        path="/",
        headers=STRUCTURED,
    ),
    http_case(
        "ce-structured-data-not-request",
        structured_event([1, 2, 3]),
        400,
        "CloudEvent data: request body must be a JSON object",
        path="/",
        headers=STRUCTURED,
    ),
    http_case(
        "ce-structured-unknown-model",
        structured_event(GOOD, kninfermodel="nope"),
        400,
        "CloudEvent extension kninfermodel='nope' names a model this server does not "
        "serve; it serves: iris",
        path="/",
        headers=STRUCTURED,
    ),
    http_case(
        "ce-structured-non-utf8",
        b'{"specversion": "1.0", "id": "\xff"}',
        400,
        "structured CloudEvent is not valid JSON",
        path="/",
        headers=STRUCTURED,
    ),
    http_case(
        "ce-batch-mode",
        orjson.dumps([orjson.loads(structured_event(GOOD))]),
        415,
        "batched CloudEvents (application/cloudevents-batch+json) are not supported",
        path="/",
        headers={"content-type": "application/cloudevents-batch+json"},
    ),
    # CloudEvents, binary mode
    http_case(
        "ce-binary-no-id",
        GOOD,
        400,
        "CloudEvent is missing required attribute(s) ce-id",
        path="/",
        headers=binary_event(**{"ce-id": None}),
    ),
    http_case(
        "ce-binary-no-type",
        GOOD,
        400,
        "CloudEvent is missing required attribute(s) ce-type",
        path="/",
        headers=binary_event(**{"ce-type": None}),
    ),
    http_case(
        "ce-binary-no-specversion",
        GOOD,
        400,
        "CloudEvent is missing required attribute(s) ce-specversion",
        path="/",
        headers=binary_event(**{"ce-specversion": None}),
    ),
    http_case(
        "ce-binary-empty-body",
        b"",
        400,
        "CloudEvent has no data; its data must be a V2 inference request",
        path="/",
        headers=binary_event(),
    ),
    http_case(
        "ce-binary-truncated-data",
        b'{"inputs": [{"na',
        400,
        "CloudEvent data: request body is not valid JSON",
        path="/",
        headers=binary_event(),
    ),
    http_case(
        "ce-binary-wrong-features",
        tensor(shape=[1, 3], data=ROW[:3]),
        400,
        "input 'input-0' has shape [1, 3]; expected [-1, 4]",
        path="/",
        headers=binary_event(),
    ),
    http_case(
        "ce-binary-on-v2-route-bad-datatype",
        tensor(datatype="FP128"),
        400,
        "CloudEvent data: input 'input-0': unsupported datatype 'FP128'",
        headers=binary_event(),
    ),
    http_case(
        "ce-binary-over-limit",
        b" " * (MAX_BODY + 1),
        413,
        f"the limit is {MAX_BODY} (KNINFER_MAX_BODY_BYTES)",
        path="/",
        headers=binary_event(),
    ),
    http_case("ce-plain-json-on-root", GOOD, 415, "POST / takes CloudEvents only", path="/"),
]


@pytest.mark.parametrize(("path", "headers", "body", "status", "message"), HTTP_CASES)
def test_http_bad_input(
    client: httpx.Client,
    stub: GRPCInferenceServiceStub,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    message: str,
) -> None:
    assert_refused(client, path, headers, body, status, message)
    still_serving(client, stub)


def test_chunked_body_over_limit_is_413(
    client: httpx.Client, stub: GRPCInferenceServiceStub
) -> None:
    """No Content-Length (chunked upload): the limit holds while the body streams in."""

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    reply = client.post(V2, content=chunks(), headers=JSON)
    assert reply.status_code == 413
    assert reply.json() == {
        "error": f"request body exceeds the limit of {MAX_BODY} bytes (KNINFER_MAX_BODY_BYTES)"
    }
    still_serving(client, stub)


# ---- gRPC V2 ----------------------------------------------------------------------------------


def grpc_request(
    rows: list[list[float]] | None = None,
    *,
    model: str = "iris",
    name: str = "input-0",
    datatype: str = "FP64",
    shape: list[int] | None = None,
    raw: list[bytes] | None = None,
    outputs: tuple[str, ...] = (),
) -> pb.ModelInferRequest:
    rows = [ROW] if rows is None else rows
    tensor_ = pb.ModelInferRequest.InferInputTensor(
        name=name,
        datatype=datatype,
        shape=shape if shape is not None else [len(rows), len(rows[0]) if rows else 0],
    )
    if raw is None:
        flat = [v for row in rows for v in row]
        if datatype == "FP64":
            tensor_.contents.fp64_contents.extend(flat)
        elif datatype == "FP32":
            tensor_.contents.fp32_contents.extend(flat)
        elif datatype in ("INT64", "INT32"):
            getattr(tensor_.contents, f"{datatype.lower()}_contents").extend(int(v) for v in flat)
        elif datatype == "BYTES":
            tensor_.contents.bytes_contents.extend(str(v).encode() for v in flat)
        elif datatype == "BOOL":
            tensor_.contents.bool_contents.extend(bool(v) for v in flat)
    return pb.ModelInferRequest(
        model_name=model,
        id="g-1",
        inputs=[tensor_],
        raw_input_contents=raw or [],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=o) for o in outputs],
    )


INVALID = grpc.StatusCode.INVALID_ARGUMENT

GRPC_CASES = [
    pytest.param(grpc_request(model="nope"), grpc.StatusCode.NOT_FOUND, "nope", id="unknown-model"),
    pytest.param(
        grpc_request([ROW[:3]]),
        INVALID,
        "input 'input-0' has shape [1, 3]; expected [-1, 4]",
        id="wrong-features",
    ),
    pytest.param(grpc_request(shape=[2, 4]), INVALID, "input 'input-0'", id="length-mismatch"),
    pytest.param(
        grpc_request(shape=[1, -4]),
        INVALID,
        "input 'input-0': shape [1, -4] has a negative dimension",
        id="negative-dim",
    ),
    pytest.param(grpc_request(shape=[2**40, 2**40]), INVALID, "input 'input-0'", id="huge-shape"),
    pytest.param(grpc_request(datatype="BYTES"), INVALID, "input 'input-0'", id="bytes-datatype"),
    pytest.param(
        grpc_request([[1, 0, 1, 0]], datatype="BOOL"),
        INVALID,
        "input 'input-0' has datatype BOOL; expected one of FP64, FP32, INT64, INT32",
        id="bool-datatype",
    ),
    pytest.param(
        grpc_request(datatype="FP128", raw=[f64(*ROW)]),
        INVALID,
        "input 'input-0': unsupported datatype 'FP128'; expected one of BOOL",
        id="unknown-datatype",
    ),
    pytest.param(
        grpc_request(outputs=("nope",)),
        INVALID,
        "unknown output(s) nope; model 'iris' has predict, predict_proba",
        id="unknown-output",
    ),
    pytest.param(
        grpc_request(raw=[f64(*ROW)[:12]]), INVALID, "input 'input-0'", id="raw-truncated"
    ),
    pytest.param(
        grpc_request(raw=[f64(*ROW), f64(*ROW)]),
        INVALID,
        "the number of inputs (1) does not match the expected number of raw input contents (2)",
        id="raw-count-mismatch",
    ),
    pytest.param(
        grpc_request(raw=[f64(5.1, float("nan"), 1.4, 0.2)]),
        INVALID,
        "input 'input-0' contains NaN or infinity",
        id="raw-nan",
    ),
    pytest.param(
        grpc_request(raw=[f64(float("inf"), 3.5, 1.4, 0.2)]),
        INVALID,
        "input 'input-0' contains NaN or infinity",
        id="raw-inf",
    ),
    pytest.param(
        grpc_request([[0.5] * 4] * 501),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "input 'input-0' has 2004 elements; the limit is 2000",
        id="too-many-elements",
    ),
    pytest.param(pb.ModelInferRequest(model_name="iris"), INVALID, "input", id="no-inputs"),
    pytest.param(
        grpc_request(name="features"),
        INVALID,
        "unknown input 'features'; model 'iris' takes input-0",
        id="wrong-name",
    ),
    pytest.param(
        grpc_request([], shape=[0, 4]),
        INVALID,
        "input 'input-0' has no rows; an empty batch is refused",
        id="empty-batch",
    ),
]


@pytest.mark.parametrize(("request_", "code", "fragment"), GRPC_CASES)
def test_grpc_bad_input(
    client: httpx.Client,
    stub: GRPCInferenceServiceStub,
    request_: pb.ModelInferRequest,
    code: grpc.StatusCode,
    fragment: str,
) -> None:
    assert_grpc_refused(stub, request_, code, fragment)
    still_serving(client, stub)


# ---- a two-input torch.export program ----------------------------------------------------------

MASKED_V2 = "/v2/models/masked/infer"
MASKED_V1 = "/v1/models/masked:predict"
X_ROW = [0.5, -1.0, 2.0, 0.0, 1.5, -0.25, 3.0, 1.0]
MASK_ROW = [1, 1, 0, 1, 0, 1, 1, 0]


@pytest.fixture(scope="module")
def masked_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-input program, exported into a fresh directory (torch_models)."""
    pytest.importorskip("torch")
    from tests.support.torch_models import masked_module, save_masked_export

    tmp = tmp_path_factory.mktemp("reliability-masked-model")
    return save_masked_export(masked_module(tmp / "src"), tmp / "model")


@pytest.fixture(scope="module", params=["program", "compiled"])
def masked_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, masked_dir: Path
) -> Iterator[ServerProcess]:
    """The program served by torch, and the same program compiled by `kninfer compile` and
    served by ONNX Runtime (kninfer.predictors.pytorch_onnx): the same table for both."""
    tmp = tmp_path_factory.mktemp("reliability-masked")
    model_dir, runtime = masked_dir, "native"
    if request.param == "compiled":
        pytest.importorskip("onnxscript", reason="the compile extra is not installed")
        compiled_dir = tmp / "compiled"
        shutil.copytree(masked_dir, compiled_dir)
        compiled_here(compiled_dir)
        model_dir, runtime = compiled_dir, "onnx"
    proc = ServerProcess(
        ["--predictor", "pytorch", "--model-name", "masked", "--model-dir", str(model_dir)]
        + ["--runtime", runtime],
        server_env(tmp),
        tmp / "server.log",
    ).start(timeout=180)
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def masked_client(masked_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=masked_server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def masked_stub(masked_server: ServerProcess) -> Iterator[GRPCInferenceServiceStub]:
    with grpc_stub(masked_server.grpc_target) as stub:
        yield stub


def masked(
    x_rows: int = 1,
    mask_rows: int = 1,
    *,
    x: dict[str, object] | None = None,
    mask: dict[str, object] | None = None,
    **extra: object,
) -> dict[str, object]:
    """A V2 request for the masked program: x and mask of the given rows, fields overridden."""
    inputs = [
        {
            "name": "x",
            "shape": [x_rows, 8],
            "datatype": "FP32",
            "data": [X_ROW] * x_rows,
            **(x or {}),
        },
        {
            "name": "mask",
            "shape": [mask_rows, 8],
            "datatype": "INT64",
            "data": [MASK_ROW] * mask_rows,
            **(mask or {}),
        },
    ]
    return {**extra, "inputs": [i for i in inputs if i.get("name")]}


def records(count: int = 1, **overrides: object) -> dict[str, object]:
    """V1 `instances` keyed by input name, each record overridden (None drops a key)."""
    record = {"x": X_ROW, "mask": MASK_ROW, **overrides}
    return {"instances": [{k: v for k, v in record.items() if v is not None}] * count}


@functools.cache
def masked_answer(model_dir: Path) -> dict[str, np.ndarray]:
    """What the program itself answers for the good row (loaded once)."""
    from tests.support.torch_models import program_outputs

    answer: dict[str, np.ndarray] = program_outputs(
        model_dir, np.asarray([X_ROW], np.float32), np.asarray([MASK_ROW], np.int64)
    )
    return answer


def masked_still_serving(
    model_dir: Path, client: httpx.Client, stub: GRPCInferenceServiceStub
) -> None:
    """A good request on each transport answers what the program itself does."""
    want = masked_answer(model_dir)
    reply = client.post(MASKED_V2, json=masked())
    assert reply.status_code == 200, reply.text
    for output in reply.json()["outputs"]:
        np.testing.assert_allclose([output["data"]], want[output["name"]], rtol=1e-5, atol=1e-6)
    v1 = client.post(MASKED_V1, json=records())
    assert v1.status_code == 200, v1.text
    np.testing.assert_allclose(v1.json()["predictions"], want["logits"], rtol=1e-5, atol=1e-6)
    answer = stub.ModelInfer(masked_grpc())
    assert [o.name for o in answer.outputs] == ["logits", "probs"]
    np.testing.assert_allclose(
        np.frombuffer(answer.raw_output_contents[1], dtype=np.float32),
        want["probs"][0],
        rtol=1e-5,
        atol=1e-6,
    )


MISMATCH = (
    "input 'x' has shape [2, 8] but input 'mask' has shape [3, 8]; the model takes the "
    "same size in dimension 0"
)


def masked_case(
    case_id: str,
    body: object,
    status: int,
    message: str,
    *,
    path: str = MASKED_V2,
    headers: dict[str, str] | None = None,
) -> object:
    return http_case(case_id, body, status, message, path=path, headers=headers)


MASKED_BINARY = binary(
    {
        "inputs": [
            {
                "name": "x",
                "shape": [2, 8],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 64},
            },
            {
                "name": "mask",
                "shape": [3, 8],
                "datatype": "INT64",
                "parameters": {"binary_data_size": 192},
            },
        ]
    },
    np.asarray([X_ROW] * 2, np.float32).tobytes(),
    np.asarray([MASK_ROW] * 3, np.int64).tobytes(),
)

MASKED_HTTP_CASES = [
    # V2 JSON
    masked_case("masked-v2-batch-mismatch", masked(2, 3), 400, MISMATCH),
    masked_case(
        "masked-v2-past-batch-range",
        masked(65, 65),
        400,
        "input 'x' has shape [65, 8]; the model takes at most 64 in dimension 0",
    ),
    masked_case(
        "masked-v2-missing-mask",
        masked(mask={"name": None}),
        400,
        "missing input(s) mask for model 'masked'",
    ),
    masked_case(
        "masked-v2-mask-wrong-width",
        masked(mask={"shape": [1, 7], "data": MASK_ROW[:7]}),
        400,
        "input 'mask' has shape [1, 7]; expected [-1, 8] (-1 is any size)",
    ),
    masked_case(
        "masked-v2-mask-fractional",
        masked(mask={"datatype": "FP64", "data": [0.5] * 8}),
        400,
        "input 'mask' has datatype FP64; expected one of INT64",
    ),
    masked_case(
        "masked-v2-positional-output-name",
        masked(outputs=[{"name": "output-0"}]),
        400,
        "unknown output(s) output-0; model 'masked' has logits, probs",
    ),
    # V2 binary tensor extension: the same mismatch, tensors as raw bytes
    masked_case(
        "masked-bin-batch-mismatch", MASKED_BINARY[1], 400, MISMATCH, headers=MASKED_BINARY[0]
    ),
    # V1: rows cannot say which input they feed; records keyed by input name can
    masked_case(
        "masked-v1-rows",
        {"instances": [X_ROW]},
        400,
        "model 'masked' takes 2 inputs (x, mask): send each instance as an object "
        'keyed by input name, {"instances": [{"x": [...], "mask": [...]}]}',
        path=MASKED_V1,
    ),
    masked_case(
        "masked-v1-missing-key",
        records(mask=None),
        400,
        "instances[0] has no input 'mask'; each instance needs x, mask",
        path=MASKED_V1,
    ),
    masked_case(
        "masked-v1-unknown-key",
        records(attention=MASK_ROW),
        400,
        "instances[0] has unknown input 'attention'; the model takes x, mask",
        path=MASKED_V1,
    ),
    masked_case(
        "masked-v1-row-among-records",
        {"instances": [{"x": X_ROW, "mask": MASK_ROW}, X_ROW]},
        400,
        "instances[1] is not an object; the model takes named inputs (x, mask)",
        path=MASKED_V1,
    ),
    masked_case(
        "masked-v1-ragged",
        {"instances": [{"x": X_ROW, "mask": MASK_ROW}, {"x": X_ROW[:5], "mask": MASK_ROW}]},
        400,
        "'instances': the values of input 'x' are ragged; each must have shape [8]",
        path=MASKED_V1,
    ),
    masked_case(
        "masked-v1-columnar-missing-input",
        {"inputs": {"x": [X_ROW]}},
        400,
        "'inputs' has no input 'mask'; the model takes x, mask",
        path=MASKED_V1,
    ),
    masked_case(
        "masked-v1-columnar-batch-mismatch",
        {"inputs": {"x": [X_ROW] * 2, "mask": [MASK_ROW] * 3}},
        400,
        MISMATCH,
        path=MASKED_V1,
    ),
    masked_case(
        "masked-v1-wrong-width",
        records(x=X_ROW[:7]),
        400,
        "input 'x' has shape [1, 7]; expected [-1, 8] (-1 is any size)",
        path=MASKED_V1,
    ),
    masked_case(
        "masked-v1-mask-fractional",
        records(mask=[0.5] * 8),
        400,
        "'instances': input 'mask' takes integers (INT64); found fractional numbers",
        path=MASKED_V1,
    ),
    masked_case(
        "masked-v1-bools",
        records(x=[True] * 8),
        400,
        "'instances': input 'x' takes numbers (FP32)",
        path=MASKED_V1,
    ),
    masked_case(
        "masked-v1-fp32-overflow",
        records(x=[1e39] * 8),
        400,
        "input 'x': a value is out of range for the model, which computes in float32",
        path=MASKED_V1,
    ),
    masked_case(
        "masked-v1-past-batch-range",
        records(65),
        400,
        "input 'x' has shape [65, 8]; the model takes at most 64 in dimension 0",
        path=MASKED_V1,
    ),
    # CloudEvents, binary mode: the same mismatch in an event's data
    masked_case(
        "masked-ce-batch-mismatch",
        masked(2, 3),
        400,
        MISMATCH,
        path="/",
        headers={**binary_event(), "ce-kninfermodel": "masked"},
    ),
]


@pytest.mark.parametrize(("path", "headers", "body", "status", "message"), MASKED_HTTP_CASES)
def test_masked_http_bad_input(
    masked_dir: Path,
    masked_client: httpx.Client,
    masked_stub: GRPCInferenceServiceStub,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    message: str,
) -> None:
    assert_refused(masked_client, path, headers, body, status, message)
    masked_still_serving(masked_dir, masked_client, masked_stub)


def masked_grpc(x_rows: int = 1, mask_rows: int | None = 1) -> pb.ModelInferRequest:
    """A gRPC request for the masked program; mask_rows None leaves mask out."""
    x = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[x_rows, 8])
    x.contents.fp32_contents.extend(X_ROW * x_rows)
    inputs = [x]
    if mask_rows is not None:
        mask = pb.ModelInferRequest.InferInputTensor(
            name="mask", datatype="INT64", shape=[mask_rows, 8]
        )
        mask.contents.int64_contents.extend(MASK_ROW * mask_rows)
        inputs.append(mask)
    return pb.ModelInferRequest(model_name="masked", id="g-m", inputs=inputs)


MASKED_GRPC_CASES = [
    pytest.param(masked_grpc(2, 3), INVALID, MISMATCH, id="masked-batch-mismatch"),
    pytest.param(
        masked_grpc(65, 65),
        INVALID,
        "input 'x' has shape [65, 8]; the model takes at most 64 in dimension 0",
        id="masked-past-batch-range",
    ),
    pytest.param(
        masked_grpc(1, None),
        INVALID,
        "missing input(s) mask for model 'masked'",
        id="masked-missing-mask",
    ),
]


@pytest.mark.parametrize(("request_", "code", "fragment"), MASKED_GRPC_CASES)
def test_masked_grpc_bad_input(
    masked_dir: Path,
    masked_client: httpx.Client,
    masked_stub: GRPCInferenceServiceStub,
    request_: pb.ModelInferRequest,
    code: grpc.StatusCode,
    fragment: str,
) -> None:
    assert_grpc_refused(masked_stub, request_, code, fragment)
    masked_still_serving(masked_dir, masked_client, masked_stub)


# ---- the same module as an MLflow model of the onnx flavor --------------------------------------
#
# The masked module exported by torch.onnx.export and saved by mlflow.onnx.save_model, served by
# `--predictor mlflow` through ONNX Runtime (kninfer.predictors.mlflow_onnx) under the same model
# name: every masked case gets the same status and message, except the batch range, which the
# graph does not declare (its batch dimension is a free symbol). Its good answers are the
# torch.export program's.

MASKED_ONNX_SKIPPED = {"masked-v2-past-batch-range", "masked-v1-past-batch-range"}


@pytest.fixture(scope="module")
def masked_onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("mlflow.onnx")
    pytest.importorskip("onnxruntime")
    from tests.support.torch_models import masked_module, save_masked_mlflow_onnx

    tmp = tmp_path_factory.mktemp("reliability-masked-onnx-model")
    return save_masked_mlflow_onnx(masked_module(tmp / "src"), tmp / "model")


@pytest.fixture(scope="module")
def masked_onnx_server(
    tmp_path_factory: pytest.TempPathFactory, masked_onnx_dir: Path
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("reliability-masked-onnx")
    proc = ServerProcess(
        ["--predictor", "mlflow", "--model-name", "masked", "--model-dir", str(masked_onnx_dir)],
        server_env(tmp),
        tmp / "server.log",
    ).start(timeout=180)
    assert "through ONNX Runtime" in proc.log()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def masked_onnx_client(masked_onnx_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=masked_onnx_server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def masked_onnx_stub(masked_onnx_server: ServerProcess) -> Iterator[GRPCInferenceServiceStub]:
    with grpc_stub(masked_onnx_server.grpc_target) as stub:
        yield stub


def masked_onnx_still_serving(
    masked_dir: Path, client: httpx.Client, stub: GRPCInferenceServiceStub
) -> None:
    """A good request on each transport answers what the torch.export program does; V1 answers
    every output by name, as MLflow's scoring server answers its onnx pyfunc."""
    want = masked_answer(masked_dir)
    reply = client.post(MASKED_V2, json=masked())
    assert reply.status_code == 200, reply.text
    for output in reply.json()["outputs"]:
        np.testing.assert_allclose([output["data"]], want[output["name"]], rtol=1e-5, atol=1e-6)
    v1 = client.post(MASKED_V1, json=records())
    assert v1.status_code == 200, v1.text
    predictions = v1.json()["predictions"]
    for name in ("logits", "probs"):
        np.testing.assert_allclose(predictions[name], want[name], rtol=1e-5, atol=1e-6)
    answer = stub.ModelInfer(masked_grpc())
    assert [o.name for o in answer.outputs] == ["logits", "probs"]
    np.testing.assert_allclose(
        np.frombuffer(answer.raw_output_contents[1], dtype=np.float32),
        want["probs"][0],
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "message"),
    [case for case in MASKED_HTTP_CASES if case.id not in MASKED_ONNX_SKIPPED],
)
def test_masked_onnx_http_bad_input(
    masked_dir: Path,
    masked_onnx_client: httpx.Client,
    masked_onnx_stub: GRPCInferenceServiceStub,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    message: str,
) -> None:
    assert_refused(masked_onnx_client, path, headers, body, status, message)
    masked_onnx_still_serving(masked_dir, masked_onnx_client, masked_onnx_stub)


@pytest.mark.parametrize(
    ("request_", "code", "fragment"),
    [case for case in MASKED_GRPC_CASES if case.id != "masked-past-batch-range"],
)
def test_masked_onnx_grpc_bad_input(
    masked_dir: Path,
    masked_onnx_client: httpx.Client,
    masked_onnx_stub: GRPCInferenceServiceStub,
    request_: pb.ModelInferRequest,
    code: grpc.StatusCode,
    fragment: str,
) -> None:
    assert_grpc_refused(masked_onnx_stub, request_, code, fragment)
    masked_onnx_still_serving(masked_dir, masked_onnx_client, masked_onnx_stub)


# ---- a text pipeline: one BYTES input of strings -----------------------------------------------

TEXT_V2 = "/v2/models/text/infer"
TEXT_V1 = "/v1/models/text:predict"
TEXTS = ["a good film", "an awful plot"]


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pipeline(TfidfVectorizer, LogisticRegression) fitted on a list of strings, as saved."""
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    docs = ["a good film", "great plot, good cast", "an awful plot", "bad and boring film"]
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(docs, [1, 1, 0, 0])
    model_dir = tmp_path_factory.mktemp("reliability-text-model")
    joblib.dump(model, model_dir / "model.joblib")
    return model_dir


@pytest.fixture(scope="module")
def text_server(
    tmp_path_factory: pytest.TempPathFactory, text_dir: Path
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("reliability-text")
    proc = ServerProcess(
        [
            "--predictor",
            "sklearn",
            "--model-name",
            "text",
            "--model-dir",
            str(text_dir),
            "--max-body-bytes",
            str(MAX_BODY),
            "--max-tensor-elements",
            str(MAX_ELEMENTS),
        ],
        server_env(tmp),
        tmp / "server.log",
    ).start(timeout=120)
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def text_client(text_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=text_server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def text_stub(text_server: ServerProcess) -> Iterator[GRPCInferenceServiceStub]:
    with grpc_stub(text_server.grpc_target) as stub:
        yield stub


@functools.cache
def text_answer(model_dir: Path) -> list[int]:
    """What the pipeline itself predicts for TEXTS (loaded once)."""
    import joblib

    labels: list[int] = joblib.load(model_dir / "model.joblib").predict(TEXTS).tolist()
    return labels


def text_grpc(
    values: list[bytes] | None = None,
    *,
    datatype: str = "BYTES",
    shape: list[int] | None = None,
    raw: list[bytes] | None = None,
) -> pb.ModelInferRequest:
    values = [t.encode() for t in TEXTS] if values is None else values
    tensor_ = pb.ModelInferRequest.InferInputTensor(
        name="input-0", datatype=datatype, shape=shape if shape is not None else [len(values)]
    )
    if raw is None and datatype == "BYTES":
        tensor_.contents.bytes_contents.extend(values)
    elif raw is None:
        tensor_.contents.fp64_contents.extend(float(i) for i in range(len(values)))
    return pb.ModelInferRequest(model_name="text", inputs=[tensor_], raw_input_contents=raw or [])


def text_still_serving(
    model_dir: Path, client: httpx.Client, stub: GRPCInferenceServiceStub
) -> None:
    """V2 JSON strings, V1 strings and gRPC bytes answer what the pipeline itself does."""
    want = text_answer(model_dir)
    reply = client.post(TEXT_V2, json=text_tensor())
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == want
    assert client.post(TEXT_V1, json={"instances": TEXTS}).json() == {"predictions": want}
    answer = stub.ModelInfer(text_grpc())
    assert np.frombuffer(answer.raw_output_contents[0], dtype=np.int64).tolist() == want


def text_tensor(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "input-0",
        "shape": [len(TEXTS)],
        "datatype": "BYTES",
        "data": TEXTS,
    }
    base.update(overrides)
    return {"inputs": [base]}


def raw_bytes(*values: bytes) -> bytes:
    """A BYTES tensor's binary form: each value a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def text_binary(*values: bytes) -> tuple[dict[str, str], bytes]:
    raw = raw_bytes(*values)
    return binary(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [len(values)],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        },
        raw,
    )


def text_case(
    case_id: str,
    body: object,
    status: int,
    message: str,
    *,
    path: str = TEXT_V2,
    headers: dict[str, str] | None = None,
) -> object:
    return http_case(case_id, body, status, message, path=path, headers=headers)


def text_binary_case(
    case_id: str, parts: tuple[dict[str, str], bytes], status: int, message: str
) -> object:
    headers, body = parts
    return text_case(case_id, body, status, message, headers=headers)


TEXT_HTTP_CASES = [
    # V2 JSON: numbers and shapes the text input cannot take
    text_case(
        "text-v2-numbers",
        text_tensor(datatype="FP64", shape=[2, 1], data=[1.0, 2.0]),
        400,
        "input 'input-0' has datatype FP64; expected one of BYTES",
    ),
    text_case(
        "text-v2-integers",
        text_tensor(datatype="INT64", data=[1, 2]),
        400,
        "input 'input-0' has datatype INT64; expected one of BYTES",
    ),
    text_case(
        "text-v2-numbers-as-bytes",
        text_tensor(data=[1, 2]),
        400,
        "input 'input-0': BYTES data must be strings, got 1",
    ),
    text_case(
        "text-v2-wrong-shape",
        text_tensor(shape=[2, 2], data=TEXTS * 2),
        400,
        "input 'input-0' has shape [2, 2]; expected [-1] (-1 is any size)",
    ),
    text_case(
        "text-v2-rank-3",
        text_tensor(shape=[2, 1, 1]),
        400,
        "input 'input-0' has shape [2, 1, 1]; expected [-1] (-1 is any size)",
    ),
    text_case(
        "text-v2-empty-batch",
        text_tensor(shape=[0], data=[]),
        400,
        "input 'input-0' has no rows; an empty batch is refused: send at least one row",
    ),
    text_case(
        "text-v2-wrong-name",
        text_tensor(name="text"),
        400,
        "unknown input 'text'; model 'text' takes input-0",
    ),
    text_case(
        "text-v2-too-many-elements",
        text_tensor(shape=[2001], data=["a"] * 2001),
        413,
        "input 'input-0' has 2001 elements; the limit is 2000 (KNINFER_MAX_TENSOR_ELEMENTS)",
    ),
    # V2 binary tensor extension: text that is not UTF-8
    text_binary_case(
        "text-bin-non-utf8",
        text_binary(b"a good film", b"caf\xe9"),
        400,
        "input 'input-0': row 1 is not UTF-8 text",
    ),
    text_binary_case(
        "text-bin-malformed",
        binary(
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 4},
                    }
                ]
            },
            struct.pack("<I", 1000),
        ),
        400,
        "input 'input-0': malformed binary BYTES tensor",
    ),
    # V1
    text_case(
        "text-v1-numbers",
        {"instances": [[1.0], [2.0]]},
        400,
        "input 'input-0' takes strings (BYTES); row 0 is 1.0",
        path=TEXT_V1,
    ),
    text_case(
        "text-v1-bools",
        {"instances": [True]},
        400,
        "input 'input-0' takes strings (BYTES); row 0 is True",
        path=TEXT_V1,
    ),
    text_case(
        "text-v1-null",
        {"instances": ["a good film", None]},
        400,
        "input 'input-0' takes strings (BYTES); row 1 is None",
        path=TEXT_V1,
    ),
    text_case(
        "text-v1-rows-of-two",
        {"instances": [TEXTS]},
        400,
        "'instances' must be a list of strings for input 'input-0' (BYTES, one text per instance)",
        path=TEXT_V1,
    ),
    text_case(
        "text-v1-records",
        {"dataframe_records": [{"text": "a good film"}]},
        400,
        "model 'text' takes text, not records keyed by column name",
        path=TEXT_V1,
    ),
    text_case(
        "text-v1-empty-instances",
        {"instances": []},
        400,
        "'instances' is empty; an empty batch is refused: send at least one row",
        path=TEXT_V1,
    ),
    # CloudEvents, binary mode: the same checks on the event's data
    text_case(
        "text-ce-numbers",
        text_tensor(datatype="FP64", shape=[2, 1], data=[1.0, 2.0]),
        400,
        "input 'input-0' has datatype FP64; expected one of BYTES",
        path="/",
        headers=binary_event(),
    ),
]


@pytest.mark.parametrize(("path", "headers", "body", "status", "message"), TEXT_HTTP_CASES)
def test_text_http_bad_input(
    text_dir: Path,
    text_client: httpx.Client,
    text_stub: GRPCInferenceServiceStub,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    message: str,
) -> None:
    assert_refused(text_client, path, headers, body, status, message)
    text_still_serving(text_dir, text_client, text_stub)


TEXT_GRPC_CASES = [
    pytest.param(
        text_grpc([b"a good film", b"\xff\xfe"]),
        INVALID,
        "input 'input-0': row 1 is not UTF-8 text",
        id="text-non-utf8",
    ),
    pytest.param(
        text_grpc(raw=[raw_bytes(b"caf\xe9", b"film")]),
        INVALID,
        "input 'input-0': row 0 is not UTF-8 text",
        id="text-raw-non-utf8",
    ),
    pytest.param(
        text_grpc(datatype="FP64"),
        INVALID,
        "input 'input-0' has datatype FP64; expected one of BYTES",
        id="text-numbers",
    ),
    pytest.param(
        text_grpc([b"a"] * 4, shape=[2, 2]),
        INVALID,
        "input 'input-0' has shape [2, 2]; expected [-1] (-1 is any size)",
        id="text-wrong-shape",
    ),
]


@pytest.mark.parametrize(("request_", "code", "fragment"), TEXT_GRPC_CASES)
def test_text_grpc_bad_input(
    text_dir: Path,
    text_client: httpx.Client,
    text_stub: GRPCInferenceServiceStub,
    request_: pb.ModelInferRequest,
    code: grpc.StatusCode,
    fragment: str,
) -> None:
    assert_grpc_refused(text_stub, request_, code, fragment)
    text_still_serving(text_dir, text_client, text_stub)


# ---- a compiled model (model.onnx through ONNX Runtime) ----------------------------------------
#
# `kninfer compile` writes model.onnx beside a scikit-learn model, and `kninfer serve` then runs
# the graph instead (kninfer.predictors.sklearn_onnx); a client must not tell the difference.
# The iris model the module's first server serves, compiled, gets every case of HTTP_CASES and
# GRPC_CASES with the same statuses and messages. A column model with an imputed and an
# unimputed numeric column and an encoder that refuses unknown categories is served by both
# runtimes side by side; each case states both messages where they differ, and why.


@pytest.fixture(scope="module")
def compiled_iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded iris model (trained as the default server trains it) and its model.onnx,
    verified on the iris rows."""
    from sklearn.datasets import load_iris

    from kninfer.iris import ensure_iris_model

    tmp = tmp_path_factory.mktemp("reliability-compiled-iris")
    model_dir = ensure_iris_model(tmp / "cache")
    np.savetxt(tmp / "iris.csv", load_iris().data, delimiter=",")
    compiled_here(model_dir, "--sample", str(tmp / "iris.csv"))
    return model_dir


@pytest.fixture(scope="module")
def compiled_server(
    tmp_path_factory: pytest.TempPathFactory, compiled_iris_dir: Path
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("reliability-compiled")
    proc = ServerProcess(
        [
            "--predictor",
            "sklearn",
            "--model-name",
            "iris",
            "--model-dir",
            str(compiled_iris_dir),
            "--max-body-bytes",
            str(MAX_BODY),
            "--max-tensor-elements",
            str(MAX_ELEMENTS),
        ],
        server_env(tmp),
        tmp / "server.log",
    ).start(timeout=120)
    assert "serving model.onnx through ONNX Runtime" in proc.log()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def compiled_client(compiled_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=compiled_server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def compiled_stub(compiled_server: ServerProcess) -> Iterator[GRPCInferenceServiceStub]:
    with grpc_stub(compiled_server.grpc_target) as stub:
        yield stub


def test_compiled_iris_states_its_runtime(compiled_client: httpx.Client) -> None:
    doc = compiled_client.get("/v2/models/iris").json()
    assert doc["platform"] == "kninfer-sklearn-onnx"
    assert doc["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]


@pytest.mark.parametrize(("path", "headers", "body", "status", "message"), HTTP_CASES)
def test_compiled_http_bad_input(
    compiled_client: httpx.Client,
    compiled_stub: GRPCInferenceServiceStub,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    message: str,
) -> None:
    assert_refused(compiled_client, path, headers, body, status, message)
    still_serving(compiled_client, compiled_stub)


@pytest.mark.parametrize(("request_", "code", "fragment"), GRPC_CASES)
def test_compiled_grpc_bad_input(
    compiled_client: httpx.Client,
    compiled_stub: GRPCInferenceServiceStub,
    request_: pb.ModelInferRequest,
    code: grpc.StatusCode,
    fragment: str,
) -> None:
    assert_grpc_refused(compiled_stub, request_, code, fragment)
    still_serving(compiled_client, compiled_stub)


# A DataFrame model: `age` scaled (no imputer), `fee` imputed then scaled, `city` one-hot
# encoded with handle_unknown="error"; LogisticRegression, labels 0/1.
CLINIC_V2 = "/v2/models/clinic/infer"
CLINIC_V1 = "/v1/models/clinic:predict"
CLINIC_RECORD = {"age": 50.0, "city": "Oslo", "fee": 30.0}
RUNTIMES = ("native", "onnx")


@pytest.fixture(scope="module")
def clinic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, 300),
            "city": rng.choice(["Lyon", "Oslo"], 300),
            "fee": rng.normal(30, 8, 300),
        }
    )
    frame.loc[rng.random(300) < 0.1, "fee"] = np.nan
    model = make_pipeline(
        ColumnTransformer(
            [
                ("age", StandardScaler(), ["age"]),
                ("fee", make_pipeline(SimpleImputer(), StandardScaler()), ["fee"]),
                ("city", OneHotEncoder(handle_unknown="error"), ["city"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, (frame.age > 45).astype(int))
    model_dir = tmp_path_factory.mktemp("reliability-clinic-model")
    joblib.dump(model, model_dir / "model.joblib")
    compiled_here(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def clinic_servers(
    tmp_path_factory: pytest.TempPathFactory, clinic_dir: Path
) -> Iterator[dict[str, ServerProcess]]:
    """The same directory (joblib and model.onnx) served by each runtime."""
    from tests.support.servers import servers_started

    base = ["--predictor", "sklearn", "--model-name", "clinic", "--model-dir", str(clinic_dir)]
    commands = {"native": [*base, "--runtime", "native"], "onnx": base}
    with servers_started(commands, tmp_path_factory.mktemp("reliability-clinic")) as started:
        yield started


@pytest.fixture(scope="module")
def clinic_clients(clinic_servers: dict[str, ServerProcess]) -> Iterator[dict[str, httpx.Client]]:
    clients = {
        name: httpx.Client(base_url=server.url, timeout=30)
        for name, server in clinic_servers.items()
    }
    yield clients
    for http in clients.values():
        http.close()


@functools.cache
def clinic_answer(model_dir: Path, fee: float = 30.0) -> list[int]:
    import joblib
    import pandas as pd

    row = pd.DataFrame([{**CLINIC_RECORD, "fee": fee}])
    labels: list[int] = joblib.load(model_dir / "model.joblib").predict(row).tolist()
    return labels


def clinic_still_serving(model_dir: Path, client: httpx.Client) -> None:
    reply = client.post(CLINIC_V1, json={"instances": [CLINIC_RECORD]})
    assert reply.json() == {"predictions": clinic_answer(model_dir)}, reply.text


def clinic_columns(**changes: object) -> dict[str, object]:
    """A one-row V2 request, each column's data replaced by `changes` (None drops it)."""
    inputs = []
    for name, value in {**CLINIC_RECORD, **changes}.items():
        if value is None:
            continue
        data = value if isinstance(value, list) else [value]
        datatype = "BYTES" if isinstance((data or [CLINIC_RECORD.get(name)])[0], str) else "FP64"
        inputs.append({"name": name, "shape": [len(data)], "datatype": datatype, "data": data})
    return {"inputs": inputs}


def clinic_case(
    case_id: str,
    body: object,
    status: int,
    message: str,
    onnx_message: str | None = None,
    *,
    path: str = CLINIC_V2,
    headers: dict[str, str] | None = None,
) -> object:
    """One bad request for both runtimes: the status both answer, the message the native
    runtime gives and the compiled one's where it differs."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return pytest.param(
        path,
        headers if headers is not None else JSON,
        raw,
        status,
        {"native": message, "onnx": onnx_message or message},
        id=case_id,
    )


UNKNOWN_CITY = "model rejected the input: Found unknown categories ['Paris']"
CLINIC_INF = binary(
    {
        "inputs": [
            {"name": "age", "shape": [1], "datatype": "FP64", "data": [50.0]},
            {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["Oslo"]},
            {
                "name": "fee",
                "shape": [1],
                "datatype": "FP64",
                "parameters": {"binary_data_size": 8},
            },
        ]
    },
    f64(float("inf")),
)

CLINIC_CASES = [
    # The encoder refuses a category it never saw. The graph's OneHotEncoder would refuse it
    # too, naming neither value nor column; the compiled runtime checks the fitted categories
    # it reads from the graph first and words the refusal as scikit-learn's encoder does.
    clinic_case("clinic-v2-unknown-category", clinic_columns(city="Paris"), 400, UNKNOWN_CITY),
    clinic_case(
        "clinic-v1-unknown-category",
        {"instances": [{**CLINIC_RECORD, "city": "Paris"}]},
        400,
        UNKNOWN_CITY,
        path=CLINIC_V1,
    ),
    clinic_case(
        "clinic-invocations-unknown-category",
        {"dataframe_records": [{**CLINIC_RECORD, "city": "Paris"}]},
        400,
        UNKNOWN_CITY,
        path="/invocations",
    ),
    # A missing string: scikit-learn's encoder reads it as an unknown category; an ONNX string
    # tensor cannot hold one, so the compiled runtime refuses it before the graph is asked.
    clinic_case(
        "clinic-v1-null-string",
        {"instances": [{**CLINIC_RECORD, "city": None}]},
        400,
        "model rejected the input: Found unknown categories [None]",
        "input 'city' has a missing value (null) in row 0; the compiled model takes a "
        "string in every row",
        path=CLINIC_V1,
    ),
    # NaN where no imputer fills it: scikit-learn refuses it inside the pipeline
    # (LogisticRegression's input check, after the scaler let it through). The graph has no
    # such check (the NaN would reach the answer), so the compiled runtime refuses it up front,
    # naming the column.
    clinic_case(
        "clinic-v1-null-unimputed",
        {"instances": [{**CLINIC_RECORD, "age": None}]},
        400,
        "model rejected the input: Input X contains NaN",
        "input 'age' contains NaN; Pipeline needs a number there (model.onnx fills no "
        "missing value in this column)",
        path=CLINIC_V1,
    ),
    clinic_case(
        "clinic-bin-infinity",
        CLINIC_INF[1],
        400,
        "input 'fee' contains infinity; Pipeline needs finite numbers",
        headers=CLINIC_INF[0],
    ),
    clinic_case(
        "clinic-v1-number-in-string",
        {"instances": [{**CLINIC_RECORD, "city": 7}]},
        400,
        "column 'city' takes strings (BYTES); row 0 is 7",
        path=CLINIC_V1,
    ),
    clinic_case(
        "clinic-v1-missing-column",
        {"instances": [{"age": 50.0, "city": "Oslo"}]},
        400,
        "column 'fee' is missing in record 0",
        path=CLINIC_V1,
    ),
    clinic_case(
        "clinic-v2-missing-column",
        clinic_columns(fee=None),
        400,
        "missing input(s) fee for model 'clinic'",
    ),
    clinic_case(
        "clinic-v2-lengths-differ",
        clinic_columns(age=[50.0, 60.0]),
        400,
        "columns must have the same number of rows",
    ),
    clinic_case(
        "clinic-v2-string-in-number",
        clinic_columns(age="fifty"),
        400,
        "input 'age' has datatype BYTES; expected one of FP64",
    ),
    clinic_case(
        "clinic-v2-number-in-string",
        clinic_columns(city=7.0),
        400,
        "input 'city' has datatype FP64; expected one of BYTES",
    ),
    clinic_case(
        "clinic-v2-unknown-input",
        clinic_columns(colour="red"),
        400,
        "unknown input 'colour'; model 'clinic' takes the columns age, city, fee",
    ),
    clinic_case(
        "clinic-v2-empty-batch",
        clinic_columns(age=[], city=[], fee=[]),
        400,
        "has no rows; an empty batch is refused",
    ),
    clinic_case(
        "clinic-v2-matrix-for-string-model",
        {
            "inputs": [
                {"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [50.0, 1.0, 30.0]}
            ]
        },
        400,
        "unknown input 'input-0'",
    ),
]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(("path", "headers", "body", "status", "messages"), CLINIC_CASES)
def test_compiled_column_model_bad_input(
    clinic_dir: Path,
    clinic_clients: dict[str, httpx.Client],
    runtime: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    messages: dict[str, str],
) -> None:
    client = clinic_clients[runtime]
    reply = client.post(path, content=body, headers=headers)
    assert reply.status_code == status, reply.text
    doc = reply.json()
    error = doc["message"] if path == "/invocations" else doc["error"]
    assert messages[runtime] in error, error
    clinic_still_serving(clinic_dir, client)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_compiled_column_model_grpc_unknown_category(
    clinic_dir: Path,
    clinic_servers: dict[str, ServerProcess],
    clinic_clients: dict[str, httpx.Client],
    runtime: str,
) -> None:
    tensors = []
    for name, value in {**CLINIC_RECORD, "city": "Paris"}.items():
        tensor_ = pb.ModelInferRequest.InferInputTensor(
            name=name, datatype="BYTES" if isinstance(value, str) else "FP64", shape=[1]
        )
        if isinstance(value, str):
            tensor_.contents.bytes_contents.append(value.encode())
        else:
            tensor_.contents.fp64_contents.append(value)
        tensors.append(tensor_)
    with (
        grpc_stub(clinic_servers[runtime].grpc_target) as stub,
        pytest.raises(grpc.RpcError) as caught,
    ):
        stub.ModelInfer(pb.ModelInferRequest(model_name="clinic", inputs=tensors), timeout=30)
    assert caught.value.code() == INVALID, caught.value.details()
    assert UNKNOWN_CITY in (caught.value.details() or "")
    clinic_still_serving(clinic_dir, clinic_clients[runtime])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_compiled_column_model_fills_the_imputed_column(
    clinic_dir: Path, clinic_clients: dict[str, httpx.Client], runtime: str
) -> None:
    """No mistake: NaN (V1 null, V2 binary NaN) in the column the imputer fills is answered by
    both runtimes, as the pipeline itself answers it."""
    want = clinic_answer(clinic_dir, float("nan"))
    client = clinic_clients[runtime]
    v1 = client.post(CLINIC_V1, json={"instances": [{**CLINIC_RECORD, "fee": None}]})
    assert v1.json() == {"predictions": want}, v1.text
    headers, body = binary(
        orjson.loads(CLINIC_INF[1][: int(CLINIC_INF[0]["inference-header-content-length"])]),
        f64(float("nan")),
    )
    v2 = client.post(CLINIC_V2, content=body, headers=headers)
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == want


def test_compiled_column_model_refuses_what_float32_cannot_hold(
    clinic_clients: dict[str, httpx.Client],
) -> None:
    """Not a mistake to the native runtime, which computes the pipeline in float64; the graph
    computes in float32 from its inputs on (compile.json: numeric inputs converted as FP32, as
    ONNX Runtime has no double Imputer), where 1e39 is infinity: refused, not answered from
    infinity."""
    body = {"instances": [{**CLINIC_RECORD, "age": 1e39}]}
    assert clinic_clients["native"].post(CLINIC_V1, json=body).status_code == 200
    reply = clinic_clients["onnx"].post(CLINIC_V1, json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json() == {
        "error": "input 'age': a value is out of range for Pipeline, which computes in float32"
    }
