"""Client mistakes are 4xx with an `{"error": ...}` that says what was wrong and what was expected.

KServe 0.21's documented custom-model pattern answers most of these with 500; every case here
also checks that the server keeps answering correctly afterwards.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

GOOD = {
    "inputs": [
        {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
    ]
}


def tensor(**overrides):
    base = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}
    base.update(overrides)
    return {"inputs": [base]}


def raw(value) -> bytes:
    return value if isinstance(value, bytes) else orjson.dumps(value)


NOT_FOUND = "model 'nope' not found; GET /v1/models lists the served models"
EXPECTED = (
    'expected a V2 inference request: {"inputs": [{"name": ..., "shape": [...], '
    '"datatype": "FP32", "data": [...]}]}'
)

V2_CASES = [
    (
        "malformed-json",
        b'{"inputs": [',
        400,
        "request body is not valid JSON (unexpected end of data: line 1 column 13 (char 12))",
    ),
    ("empty-body", b"", 400, f"request body is empty; {EXPECTED}"),
    ("not-an-object", [1, 2, 3], 400, f"request body must be a JSON object; {EXPECTED}"),
    ("missing-inputs", {"outputs": []}, 400, f"request has no 'inputs'; {EXPECTED}"),
    (
        "inputs-not-list",
        {"inputs": {"name": "x"}},
        400,
        f"'inputs' must be a non-empty list; {EXPECTED}",
    ),
    ("empty-inputs", {"inputs": []}, 400, f"'inputs' must be a non-empty list; {EXPECTED}"),
    (
        "wrong-feature-count",
        tensor(shape=[1, 3], data=[1, 2, 3]),
        400,
        "input 'input-0' has shape [1, 3]; expected [-1, 4] (-1 is any size)",
    ),
    (
        "one-dimensional",
        tensor(shape=[4]),
        400,
        "input 'input-0' has shape [4]; expected [-1, 4] (-1 is any size)",
    ),
    (
        "length-mismatch",
        tensor(shape=[2, 4]),
        400,
        "input 'input-0': 'data' has 4 values but shape needs 8",
    ),
    (
        "non-numeric",
        tensor(data=["a", "b", "c", "d"]),
        400,
        "input 'input-0': 'data' must be numbers for datatype FP64; found non-numeric values",
    ),
    (
        "null-values",
        tensor(data=[1, None, 3, 4]),
        400,
        "input 'input-0': 'data' must be numbers for datatype FP64; found non-numeric values",
    ),
    (
        "ragged",
        tensor(shape=[2, 2], data=[[1, 2], [3]]),
        400,
        "input 'input-0': 'data' is a "
        "ragged nested list; expected "
        "4 values in a flat or "
        "row-major nested list",
    ),
    (
        "unknown-datatype",
        tensor(datatype="FP128"),
        400,
        "input 'input-0': unsupported datatype 'FP128'; expected one of BOOL, UINT8, UINT16, "
        "UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES",
    ),
    (
        "bytes-datatype",
        tensor(datatype="BYTES", data=["a", "b", "c", "d"]),
        400,
        "input 'input-0' has datatype BYTES; expected one of FP64, FP32, INT64, INT32",
    ),
    (
        "fraction-for-int",
        tensor(datatype="INT64", data=[1.5, 2, 3, 4]),
        400,
        "input 'input-0': datatype INT64 needs integers; found fractional numbers",
    ),
    (
        "int32-overflow",
        tensor(datatype="INT32", data=[2**40, 2, 3, 4]),
        400,
        "input 'input-0': a value is out of range for INT32",
    ),
    (
        "negative-dim",
        tensor(shape=[-1, 4]),
        400,
        "input 'input-0': shape [-1, 4] has a negative dimension",
    ),
    (
        "shape-not-ints",
        tensor(shape=["1", 4]),
        400,
        "input 'input-0': 'shape' must be a list of integers, got ['1', 4]",
    ),
    (
        "missing-data",
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64"}]},
        400,
        "input 'input-0' has no 'data' (and no binary_data_size with an "
        "Inference-Header-Content-Length header)",
    ),
    (
        "missing-name",
        {"inputs": [{"shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]},
        400,
        "inputs[0] has no 'name'",
    ),
    (
        "unknown-extra-input",
        {
            "inputs": [
                GOOD["inputs"][0],
                {"name": "extra", "shape": [1], "datatype": "FP64", "data": [1.0]},
            ]
        },
        400,
        "unknown input 'extra'; model 'iris' takes input-0",
    ),
    (
        "duplicate-input",
        {"inputs": [GOOD["inputs"][0], GOOD["inputs"][0]]},
        400,
        "input 'input-0' appears twice",
    ),
    (
        "unknown-output",
        {**GOOD, "outputs": [{"name": "nope"}]},
        400,
        "unknown output(s) nope; model 'iris' has predict, predict_proba",
    ),
    (
        "outputs-not-list",
        {**GOOD, "outputs": "predict"},
        400,
        "'outputs' must be a list of objects with a 'name'",
    ),
    (
        "parameters-not-object",
        {**GOOD, "parameters": [1]},
        400,
        "'parameters' must be a JSON object",
    ),
    (
        "bad-binary-header",
        GOOD,
        400,
        "Inference-Header-Content-Length must be an integer, got 'abc'",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "message"), V2_CASES, ids=[c[0] for c in V2_CASES]
)
def test_v2_client_mistakes(iris_server, case, body, status, message):
    headers = {"content-type": "application/json"}
    if case == "bad-binary-header":
        headers["inference-header-content-length"] = "abc"
    reply = httpx.post(
        f"{iris_server.url}/v2/models/iris/infer", content=raw(body), headers=headers
    )
    assert reply.status_code == status, reply.text
    assert reply.json() == {"error": message}
    after = httpx.post(f"{iris_server.url}/v2/models/iris/infer", json=GOOD)
    assert after.status_code == 200 and after.json()["outputs"][0]["data"] == [0]


V1_CASES = [
    (
        "malformed-json",
        b"{",
        400,
        "request body is not valid JSON (unexpected end of data: line 1 column 2 (char 1))",
    ),
    (
        "no-instances",
        {"rows": [[1, 2, 3, 4]]},
        400,
        'request has no "instances"; expected {"instances": [[...], ...]}',
    ),
    (
        "instances-not-list",
        {"instances": "x"},
        400,
        '"instances" must be a list of rows (or "inputs" an object of named tensors)',
    ),
    (
        "strings",
        {"instances": [["a", "b", "c", "d"]]},
        400,
        "'instances' must be a list of rows of 4 numbers for input 'input-0'",
    ),
    (
        "flat-list",
        {"instances": [1, 2, 3, 4]},
        400,
        "'instances' must be a list of rows (shape [-1, 4]); got a flat list",
    ),
    (
        "wrong-features",
        {"instances": [[1, 2, 3]]},
        400,
        "input 'input-0' has shape [1, 3]; expected [-1, 4] (-1 is any size)",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "message"), V1_CASES, ids=[c[0] for c in V1_CASES]
)
def test_v1_client_mistakes(iris_server, case, body, status, message):
    reply = httpx.post(f"{iris_server.url}/v1/models/iris:predict", content=raw(body))
    assert reply.status_code == status, reply.text
    assert reply.json() == {"error": message}
    after = httpx.post(
        f"{iris_server.url}/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
    )
    assert after.json() == {"predictions": [0]}


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("POST", "/v2/models/nope/infer", 404, NOT_FOUND),
        ("GET", "/v2/models/nope", 404, NOT_FOUND),
        ("GET", "/v2/models/nope/ready", 404, NOT_FOUND),
        ("POST", "/v1/models/nope:predict", 404, NOT_FOUND),
        ("GET", "/v2/models/iris/infer", 405, "method not allowed: GET /v2/models/iris/infer"),
        ("GET", "/v3/anything", 404, "no such route: GET /v3/anything"),
    ],
)
def test_routing_errors_are_json(iris_server, method, path, status, message):
    reply = httpx.request(method, f"{iris_server.url}{path}", json=GOOD)
    assert reply.status_code == status
    assert reply.json() == {"error": message}
    after = httpx.post(f"{iris_server.url}/v2/models/iris/infer", json=GOOD)
    assert after.status_code == 200 and after.json()["outputs"][0]["data"] == [0]


def test_nan_via_binary_extension_is_rejected(iris_server):
    import numpy as np

    features = np.array([[1.0, float("nan"), 3.0, 4.0]], dtype=np.float64)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 32},
                }
            ]
        }
    )
    reply = httpx.post(
        f"{iris_server.url}/v2/models/iris/infer",
        content=header + features.tobytes(),
        headers={"inference-header-content-length": str(len(header))},
    )
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "input 'input-0' contains NaN or infinity; LogisticRegression needs finite numbers"
    }
