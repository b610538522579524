"""MLflow's scoring protocol against `--predictor mlflow`, driven by MLflow's own client.

Models (saved with mlflow.pyfunc.save_model into a temp dir, as a user would):
- `mixed`: a pyfunc whose column signature has string, long, double and boolean columns and a
  params schema with a float `scale` (default 1.0) and a string `suffix`.
MLflow's `ScoringServerClient` (what `mlflow models serve` callers use) and plain HTTP against
`/invocations` (CSV, errors), tritonclient gRPC sending a Python float param (Triton's
`double_param`), each compared with the same model loaded in this process.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.servers import ServerProcess, server_env, triton_infer

pytest.importorskip("mlflow.pyfunc", reason="the mlflow extra is not installed")

MIXED_MODEL = textwrap.dedent("""
    import mlflow
    import pandas as pd


    class Mixed(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            params = params or {}
            scale = params.get("scale", 1.0)
            score = (model_input["count"] * model_input["weight"] * scale).where(
                model_input["active"], 0.0)
            return pd.DataFrame({"score": score.astype("float64"),
                                 "tag": model_input["name"] + params.get("suffix", "")})


    mlflow.models.set_model(Mixed())
""")


def frame() -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "name": ["ada", "bob", "cy"],
            "count": np.array([3, 5, 7], dtype=np.int64),
            "weight": [0.5, 1.25, 2.0],
            "active": [True, False, True],
        }
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import infer_signature

    root = tmp_path_factory.mktemp("scoring")
    code = root / "mixed_model.py"
    code.write_text(MIXED_MODEL)
    example = frame()
    output = pd.DataFrame({"score": [1.5, 0.0, 14.0], "tag": ["ada", "bob", "cy"]})
    path = root / "mixed"
    mlflow.pyfunc.save_model(
        path,
        python_model=str(code),
        pip_requirements=["pandas"],
        signature=infer_signature(example, output, params={"scale": 1.0, "suffix": ""}),
    )
    return path


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("scoring-server")
    proc = ServerProcess(
        ["--predictor", "mlflow", "--model-dir", str(model_dir), "--model-name", "mixed"],
        server_env(tmp),
        tmp / "server.log",
    )
    proc.start(timeout=180)
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> Any:
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(model_dir))


def test_scoring_client_unchanged(server: ServerProcess, loaded: Any) -> None:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    client = ScoringServerClient("127.0.0.1", server.http_port)
    client.wait_server_ready(timeout=30)
    import mlflow

    assert client.get_version() == mlflow.__version__
    expected = loaded.predict(frame()).to_dict("records")
    assert client.invoke(frame())["predictions"] == expected
    with_params = loaded.predict(frame(), params={"scale": 2.5, "suffix": "!"}).to_dict("records")
    assert (
        client.invoke(frame(), params={"scale": 2.5, "suffix": "!"})["predictions"] == with_params
    )


def test_invocations_payload_forms_and_csv(server: ServerProcess, loaded: Any) -> None:
    import json

    expected = loaded.predict(frame()).to_dict("records")
    url = f"{server.url}/invocations"
    split = json.loads(frame().to_json(orient="split", index=False))
    for body in (
        {"dataframe_split": split},
        {"dataframe_records": frame().to_dict("records")},
        {"instances": frame().to_dict("records")},
        {"inputs": {c: frame()[c].tolist() for c in frame().columns}},
    ):
        reply = httpx.post(url, json=body)
        assert reply.status_code == 200, (body, reply.text)
        assert reply.json() == {"predictions": expected}, body
    csv = httpx.post(url, content=frame().to_csv(), headers={"content-type": "text/csv"})
    assert csv.status_code == 200, csv.text
    assert csv.json() == {"predictions": expected}


@pytest.mark.parametrize(
    ("content_type", "body", "status", "fragment"),
    [
        ("application/json", b'{"dataframe_split": ', 400, "request body is not valid JSON"),
        (
            "application/json",
            b'{"rows": []}',
            400,
            "exactly one of the input fields dataframe_split, dataframe_records, instances, inputs",
        ),
        (
            "application/json",
            b'{"dataframe_records": [{"name": "a"}]}',
            400,
            "column 'count' is missing in record 0",
        ),
        (
            "application/json",
            b'{"dataframe_records": [{"name": "a", "count": 1, "weight": 1.0, '
            b'"active": true}], "params": {"scale": "big"}}',
            400,
            "scale",
        ),
        (
            "application/json",
            b'{"dataframe_records": [{"name": "a", "count": 1, "weight": 1.0, '
            b'"active": true}], "params": {"speed": 1}}',
            400,
            "unknown param(s) speed; model 'mixed' takes scale, suffix",
        ),
        (
            "text/csv",
            b"name,count,weight,active\nada,three,0.5,true\n",
            400,
            "column 'count' (INT64): 'three' is not a number",
        ),
        ("text/plain", b"name\nada\n", 415, "only supports the following content types"),
        ("application/json; charset=latin-1", b"{}", 415, "only supports UTF-8"),
    ],
)
def test_invocations_errors_as_mlflow_answers_them(
    server: ServerProcess, content_type: str, body: bytes, status: int, fragment: str
) -> None:
    reply = httpx.post(
        f"{server.url}/invocations", content=body, headers={"content-type": content_type}
    )
    assert reply.status_code == status, reply.text
    if status == 415:
        assert reply.headers["content-type"].startswith("text/plain")
        assert fragment in reply.text
    else:
        assert reply.json()["error_code"] == "BAD_REQUEST"
        assert fragment in reply.json()["message"], reply.json()


def test_metadata_states_params_schema(server: ServerProcess) -> None:
    doc = httpx.get(f"{server.url}/v2/models/mixed").json()
    assert doc["parameters"]["params"] == [
        {"name": "scale", "type": "double", "default": 1.0},
        {"name": "suffix", "type": "string", "default": ""},
    ]
    assert [(i["name"], i["datatype"]) for i in doc["inputs"]] == [
        ("name", "BYTES"),
        ("count", "INT64"),
        ("weight", "FP64"),
        ("active", "BOOL"),
    ]


def test_tritonclient_grpc_float_param_reaches_the_model(
    server: ServerProcess, loaded: Any
) -> None:
    data = frame()
    inputs = [
        {"name": "name", "datatype": "BYTES", "shape": [3], "data": data["name"].tolist()},
        {"name": "count", "datatype": "INT64", "shape": [3], "data": data["count"].tolist()},
        {"name": "weight", "datatype": "FP64", "shape": [3], "data": data["weight"].tolist()},
        {"name": "active", "datatype": "BOOL", "shape": [3], "data": data["active"].tolist()},
    ]
    expected = loaded.predict(data, params={"scale": 0.5, "suffix": "?"})
    for protocol, url in (("grpc", server.grpc_target), ("http", f"127.0.0.1:{server.http_port}")):
        answer = triton_infer(
            {
                "protocol": protocol,
                "url": url,
                "model": "mixed",
                "inputs": inputs,
                "outputs": ["score", "tag"],
                "parameters": {"scale": 0.5, "suffix": "?"},
            }
        )
        assert answer == {
            "outputs": {"score": expected["score"].tolist(), "tag": expected["tag"].tolist()}
        }, protocol
    wrong = triton_infer(
        {
            "protocol": "grpc",
            "url": server.grpc_target,
            "model": "mixed",
            "inputs": inputs,
            "outputs": ["score"],
            "parameters": {"scale": "big"},
        }
    )
    assert wrong["status"] == "StatusCode.INVALID_ARGUMENT", wrong
    assert "scale" in str(wrong["error"])


def test_scoring_client_sends_nan_for_missing_values(tmp_path: Path) -> None:
    """MLflow's client writes a DataFrame's missing values as the bare token NaN (Python's json),
    which `mlflow models serve` parses; an sklearn-flavor pipeline that imputes them answers as
    the same model does in process."""
    import math

    import mlflow.pyfunc
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(7)
    train = pd.DataFrame({"age": rng.normal(40, 10, 200), "income": rng.normal(50, 15, 200)})
    labels = (train["age"] + train["income"] > 90).astype(int)
    model = make_pipeline(SimpleImputer(), LogisticRegression()).fit(train, labels)
    path = tmp_path / "imputed"
    mlflow.sklearn.save_model(
        model, path, serialization_format="cloudpickle", signature=infer_signature(train, labels)
    )
    query = pd.DataFrame({"age": [35.0, math.nan, 61.0], "income": [math.nan, 70.0, 20.0]})
    proc = ServerProcess(
        ["--predictor", "mlflow", "--model-dir", str(path), "--model-name", "imputed"],
        server_env(tmp_path),
        tmp_path / "server.log",
    ).start(timeout=180)
    try:
        client = ScoringServerClient("127.0.0.1", proc.http_port)
        client.wait_server_ready(timeout=30)
        expected = mlflow.pyfunc.load_model(str(path)).predict(query).tolist()
        assert client.invoke(query)["predictions"] == expected
        # The body really holds the bare token (what made kninfer answer 400 before).
        body = b'{"dataframe_split": {"columns": ["age", "income"], "data": [[NaN, 70.0]]}}'
        reply = httpx.post(
            f"{proc.url}/invocations", content=body, headers={"content-type": "application/json"}
        )
        assert (reply.status_code, reply.json()) == (
            200,
            {
                "predictions": mlflow.pyfunc.load_model(str(path))
                .predict(pd.DataFrame({"age": [math.nan], "income": [70.0]}))
                .tolist()
            },
        )
        # V2 stays strict JSON: the token is a 400 there, as the docs say.
        v2 = httpx.post(
            f"{proc.url}/v2/models/imputed/infer",
            content=b'{"inputs": [{"name": '
            b'"age", "shape": [1], "datatype": "FP64", "data": [NaN]}]}',
        )
        assert v2.status_code == 400 and "not valid JSON" in v2.text, v2.text
    finally:
        assert proc.stop() == 0, proc.log()


def test_invocation_decoding_takes_pythons_non_finite_tokens() -> None:
    import math

    from kninfer.errors import InvalidInput
    from kninfer.protocol.mlflow_scoring import decode_invocation

    payload = decode_invocation(
        b'{"instances": [[NaN, Infinity, -Infinity, 1.5]]}', "application/json"
    )
    row = payload["instances"][0]
    assert math.isnan(row[0]) and row[1:] == [math.inf, -math.inf, 1.5]
    with pytest.raises(InvalidInput, match="request body is not valid JSON"):
        decode_invocation(b'{"instances": [[nan]]}', "application/json")  # not Python's token
