"""MLflow predictor: real MLflow models saved into a temp dir, served by real `kninfer serve`
processes, answered over V2 REST, V1 REST and gRPC, compared with the same models loaded in-process.

Models (all saved with mlflow.*.save_model, as a user would):
- `columns`: scikit-learn Pipeline (scaler + one-hot) with a column-based signature;
- `tensor`:  scikit-learn LogisticRegression with a tensor-based input signature (float32
             [-1, 4]) and no output schema (outputs are read off the warm-up prediction);
- `custom`:  a pyfunc PythonModel ("models from code") with string, integer and datetime columns
             and an integer param `times` (default 1);
- `nosig`:   the LogisticRegression saved without any signature.
Each server is started once for the module (mlflow's import dominates start-up).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from tests.support.servers import (
    ServerProcess,
    grpc_stub,
    served_version,
    server_env,
    servers_started,
)

pytest.importorskip("mlflow.pyfunc", reason="the mlflow extra is not installed")

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2, "north"], [6.7, 3.0, 5.2, 2.3, "south"], [5.9, 3.0, 4.2, 1.5, "x"]]

CUSTOM_MODEL = textwrap.dedent('''
    import mlflow
    import pandas as pd


    class Words(mlflow.pyfunc.PythonModel):
        """Length of `text` times `repeat` (times the `times` param), `text` upper-cased, and
        the year of `stamp`."""

        def predict(self, context, model_input, params=None):
            times = (params or {}).get("times", 1)
            return pd.DataFrame({
                "length": model_input["text"].str.len() * model_input["repeat"] * times,
                "shout": model_input["text"].str.upper(),
                "year": model_input["stamp"].dt.year.astype("int64"),
            })


    mlflow.models.set_model(Words())
''')


def save_models(root: Path) -> dict[str, Path]:
    import mlflow.pyfunc
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    # pip_requirements given: otherwise save_model infers them in a subprocess (~10 s each).
    reqs = ["scikit-learn", "pandas"]
    frame, target = load_iris(return_X_y=True, as_frame=True)
    frame.columns = FEATURES
    frame["site"] = np.where(np.arange(len(frame)) % 2, "north", "south")
    pipeline = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), FEATURES),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["site"]),
            ]
        ),
        LogisticRegression(max_iter=1000),
    ).fit(frame, target)
    paths = {name: root / name for name in ("columns", "tensor", "custom", "nosig")}
    mlflow.sklearn.save_model(
        pipeline,
        paths["columns"],
        pip_requirements=reqs,
        signature=infer_signature(frame, pipeline.predict(frame)),
    )

    matrix = frame[FEATURES].to_numpy(np.float32)
    logistic = LogisticRegression(max_iter=1000).fit(matrix, target)
    # MLflow 3 saves scikit-learn models with skops by default (the `columns` model above);
    # these two use cloudpickle, the other format users have, which also keeps the suite fast:
    # importing skops.io walks every sklearn module, and that imports torch when it is installed.
    mlflow.sklearn.save_model(
        logistic,
        paths["tensor"],
        pip_requirements=reqs,
        serialization_format="cloudpickle",
        signature=infer_signature(matrix),
    )  # inputs only
    mlflow.sklearn.save_model(
        logistic, paths["nosig"], pip_requirements=reqs, serialization_format="cloudpickle"
    )

    code = root / "words_model.py"
    code.write_text(CUSTOM_MODEL)
    example = pd.DataFrame(
        {
            "text": ["a", "bc"],
            "repeat": np.array([1, 2], dtype=np.int64),
            "stamp": pd.to_datetime(["2024-05-01", "1999-12-31T23:59:00"], format="ISO8601"),
        }
    )
    output = pd.DataFrame(
        {
            "length": np.array([1, 4], dtype=np.int64),
            "shout": ["A", "BC"],
            "year": np.array([2024, 1999], dtype=np.int64),
        }
    )
    mlflow.pyfunc.save_model(
        paths["custom"],
        python_model=str(code),
        pip_requirements=reqs,
        signature=infer_signature(example, output, params={"times": 1}),
        input_example=example,
    )
    return paths


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return save_models(tmp_path_factory.mktemp("mlflow-models"))


@pytest.fixture(scope="module")
def servers(
    model_paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("mlflow-servers")
    # Started together: mlflow's import is the slow part of each.
    commands = {
        name: ["--predictor", "mlflow", "--model-dir", str(path), "--model-name", name]
        for name, path in model_paths.items()
    }
    with servers_started(commands, tmp, timeout=180) as started:
        yield started


@pytest.fixture(scope="module")
def loaded(model_paths: dict[str, Path]) -> dict[str, Any]:
    """The same models loaded in this process: the reference every answer is compared with."""
    import mlflow.pyfunc

    return {name: mlflow.pyfunc.load_model(str(path)) for name, path in model_paths.items()}


def url(servers: dict[str, ServerProcess], name: str, path: str) -> str:
    return f"{servers[name].url}{path}"


def infer(servers: dict[str, ServerProcess], name: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url(servers, name, f"/v2/models/{name}/infer"), json=body, timeout=30)


def predict_v1(
    servers: dict[str, ServerProcess], name: str, body: dict[str, Any]
) -> httpx.Response:
    return httpx.post(url(servers, name, f"/v1/models/{name}:predict"), json=body, timeout=30)


def column_inputs(rows: list[list[Any]] = ROWS) -> list[dict[str, Any]]:
    inputs = [
        {"name": name, "datatype": "FP64", "shape": [len(rows)], "data": [row[i] for row in rows]}
        for i, name in enumerate(FEATURES)
    ]
    inputs.append(
        {
            "name": "site",
            "datatype": "BYTES",
            "shape": [len(rows)],
            "data": [row[4] for row in rows],
        }
    )
    return inputs


def rows_frame(rows: list[list[Any]] = ROWS) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=[*FEATURES, "site"])


# ---- column-based signature (scikit-learn Pipeline) -------------------------------------------


def test_column_metadata_from_signature(servers):
    reply = httpx.get(url(servers, "columns", "/v2/models/columns"))
    assert reply.status_code == 200
    assert reply.json() == {
        "name": "columns",
        "versions": [served_version(servers["columns"])],
        "platform": "kninfer-mlflow",
        "inputs": [{"name": n, "datatype": "FP64", "shape": [-1]} for n in FEATURES]
        + [{"name": "site", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
        "parameters": {"signature": "column"},
    }


def test_column_v2_matches_loaded_model(servers, loaded):
    expected = loaded["columns"].predict(rows_frame()).tolist()
    inputs = column_inputs()
    inputs[1]["shape"] = [3, 1]  # a column may come as [-1, 1]
    inputs[3]["datatype"] = "FP32"  # FP32 into a double column: a safe cast MLflow accepts
    reply = infer(servers, "columns", {"id": "r1", "inputs": inputs})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "model_name": "columns",
        "id": "r1",
        "model_version": served_version(servers["columns"]),
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [3], "data": expected}],
    }


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda inputs: inputs.pop(1), "missing input(s) sepal_width for model 'columns'"),
        (
            lambda inputs: inputs[4].update(datatype="FP64", data=[1, 2, 3]),
            "input 'site' has datatype FP64; expected one of BYTES",
        ),
        (
            lambda inputs: inputs[0].update(datatype="INT64", data=[5, 6, 7]),
            "input does not match the model's MLflow signature: Incompatible input types for "
            "column sepal_length. Can not safely convert int64 to float64.",
        ),
        (
            lambda inputs: inputs[2].update(shape=[2], data=[1.4, 5.2]),
            "columns must have the same number of rows: 'sepal_length' has 3, 'sepal_width' has 3, "
            "'petal_length' has 2, 'petal_width' has 3, 'site' has 3",
        ),
        (
            lambda inputs: inputs[3].update(shape=[1, 3]),
            "input 'petal_width' is a column: shape must be [-1] or [-1, 1]; got [1, 3]",
        ),
        (
            lambda inputs: inputs.append(
                {"name": "colour", "datatype": "FP64", "shape": [3], "data": [1, 2, 3]}
            ),
            "unknown input 'colour'; model 'columns' takes the columns sepal_length, sepal_width, "
            "petal_length, petal_width, site",
        ),
    ],
    ids=[
        "missing-column",
        "wrong-datatype",
        "mlflow-enforcement",
        "ragged",
        "not-a-column",
        "unknown-column",
    ],
)
def test_column_v2_client_mistakes_are_400(servers, change, error):
    inputs = column_inputs()
    change(inputs)
    reply = infer(servers, "columns", {"inputs": inputs})
    assert reply.status_code == 400
    assert reply.json() == {"error": error}


def test_column_v1_rows_records_and_mlflow_payloads(servers, loaded):
    expected = loaded["columns"].predict(rows_frame()).tolist()
    records = [dict(zip([*FEATURES, "site"], row, strict=True)) for row in ROWS]
    columns = [*FEATURES, "site"]
    for body in (
        {"instances": ROWS},
        {"instances": records},
        {"dataframe_records": records},
        {"dataframe_split": {"columns": columns, "data": ROWS}},
    ):
        reply = predict_v1(servers, "columns", body)
        assert reply.status_code == 200, (body, reply.text)
        assert reply.json() == {"predictions": expected}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {
                "instances": [
                    {**dict(zip(FEATURES, ROWS[0][:4], strict=True)), "site": "n", "colour": 1}
                ]
            },
            "unknown column(s) colour; model 'columns' takes sepal_length, sepal_width, "
            "petal_length, petal_width, site",
        ),
        (
            {"instances": [[5.1, 3.5, 1.4, "north"]]},
            "row 0 must be a list of 5 values (columns sepal_length, sepal_width, petal_length, "
            "petal_width, site)",
        ),
        (
            {"instances": [["a", 3.5, 1.4, 0.2, "north"]]},
            "input does not match the model's MLflow signature: Failed to convert column "
            "sepal_length from type object to DataType.double.",
        ),
        (
            {"instances": [dict(zip(FEATURES, ROWS[0][:4], strict=True))]},
            "column 'site' is missing in record 0",
        ),
        (
            {"dataframe_split": {"columns": FEATURES}},
            '\'dataframe_split\' must be {"columns": [...], "data": [[...], ...]}',
        ),
        ({"rows": []}, 'request has no "instances"; expected {"instances": [[...], ...]}'),
    ],
    ids=[
        "unknown-column",
        "short-row",
        "bad-value",
        "missing-column",
        "split-without-data",
        "no-instances",
    ],
)
def test_column_v1_client_mistakes_are_400(servers, body, error):
    reply = predict_v1(servers, "columns", body)
    assert reply.status_code == 400
    assert reply.json() == {"error": error}


# ---- tensor-based signature ---------------------------------------------------------------


def test_tensor_metadata_and_predictions(servers, loaded):
    meta = httpx.get(url(servers, "tensor", "/v2/models/tensor")).json()
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]
    # No output schema: stated from the warm-up prediction on zeros.
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
    assert meta["parameters"] == {"signature": "tensor"}

    matrix = np.asarray([row[:4] for row in ROWS], dtype=np.float32)
    expected = loaded["tensor"].predict(matrix).tolist()
    for datatype in ("FP32", "FP16"):  # FP16 is cast up: numpy calls that cast safe
        body = {
            "inputs": [
                {
                    "name": "input-0",
                    "datatype": datatype,
                    "shape": [3, 4],
                    "data": matrix.ravel().tolist(),
                }
            ]
        }
        reply = infer(servers, "tensor", body)
        assert reply.status_code == 200, reply.text
        assert reply.json()["outputs"] == [
            {"name": "predict", "datatype": "INT64", "shape": [3], "data": expected}
        ]
    reply = predict_v1(servers, "tensor", {"instances": matrix.tolist()})
    assert reply.status_code == 200
    assert reply.json() == {"predictions": expected}
    reply = predict_v1(servers, "tensor", {"instances": [[1.0, 2.0]]})
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "input 'input-0' has shape [1, 2]; expected [-1, 4] (-1 is any size)"
    }


@pytest.mark.parametrize(
    ("tensor", "error"),
    [
        (
            {"datatype": "FP64", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]},
            "input 'input-0' has datatype FP64; expected one of FP32, FP16, INT16, INT8, "
            "UINT16, UINT8",
        ),
        (
            {"datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]},
            "input 'input-0' has shape [2, 2]; expected [-1, 4] (-1 is any size)",
        ),
    ],
    ids=["narrowing-datatype", "wrong-shape"],
)
def test_tensor_client_mistakes_are_400(servers, tensor, error):
    reply = infer(servers, "tensor", {"inputs": [{"name": "input-0", **tensor}]})
    assert reply.status_code == 400
    assert reply.json() == {"error": error}


# ---- custom PythonModel (models from code) ------------------------------------------------


def test_custom_model_metadata(servers):
    meta = httpx.get(url(servers, "custom", "/v2/models/custom")).json()
    assert meta["inputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
        {"name": "repeat", "datatype": "INT64", "shape": [-1]},
        {"name": "stamp", "datatype": "BYTES", "shape": [-1]},
    ]
    assert meta["outputs"] == [
        {"name": "length", "datatype": "INT64", "shape": [-1]},
        {"name": "shout", "datatype": "BYTES", "shape": [-1]},
        {"name": "year", "datatype": "INT64", "shape": [-1]},
    ]


def test_custom_model_v2_strings_and_requested_outputs(servers, loaded):
    import pandas as pd

    stamps = ["2031-02-03T04:05:06", "1970-01-01T00:00:00"]
    frame = pd.DataFrame(
        {
            "text": ["héllo", "ab"],
            "repeat": np.array([2, 3], dtype=np.int64),
            "stamp": pd.to_datetime(stamps),
        }
    )
    expected = loaded["custom"].predict(frame)
    inputs = [
        {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["héllo", "ab"]},
        {"name": "repeat", "datatype": "INT64", "shape": [2], "data": [2, 3]},
        {"name": "stamp", "datatype": "BYTES", "shape": [2], "data": stamps},
    ]
    reply = infer(servers, "custom", {"inputs": inputs})
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"] == [
        {"name": "length", "datatype": "INT64", "shape": [2], "data": expected["length"].tolist()},
        {"name": "shout", "datatype": "BYTES", "shape": [2], "data": ["HÉLLO", "AB"]},
        {"name": "year", "datatype": "INT64", "shape": [2], "data": [2031, 1970]},
    ]
    assert expected["year"].tolist() == [2031, 1970]
    reply = infer(servers, "custom", {"inputs": inputs, "outputs": [{"name": "shout"}]})
    assert [o["name"] for o in reply.json()["outputs"]] == ["shout"]

    inputs[2].update(data=["2031-02-03", "yesterday"])
    reply = infer(servers, "custom", {"inputs": inputs})
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "column 'stamp' must hold ISO-8601 datetimes (Time data "
        "yesterday is not ISO8601 format, at position 1)"
    }

    inputs[2].update(data=stamps)
    inputs[1].update(datatype="FP64", data=[2.5, 3.0])
    reply = infer(servers, "custom", {"inputs": inputs})
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "input does not match the model's MLflow signature: "
        "Incompatible input types for column repeat. Can not safely "
        "convert float64 to int64."
    }


def test_custom_model_v1_answers_records(servers):
    reply = predict_v1(
        servers,
        "custom",
        {
            "instances": [
                {"text": "hi", "repeat": 3, "stamp": "2020-06-01"},
                {"text": "yo", "repeat": 1, "stamp": "2021-06-01T12:00:00"},
            ]
        },
    )
    assert reply.status_code == 200
    assert reply.json() == {
        "predictions": [
            {"length": 6, "shout": "HI", "year": 2020},
            {"length": 2, "shout": "YO", "year": 2021},
        ]
    }


def test_custom_model_over_grpc(servers):
    with grpc_stub(servers["custom"].grpc_target) as stub:
        text = pb.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[2])
        text.contents.bytes_contents.extend([b"grpc", b"ok"])
        repeat = pb.ModelInferRequest.InferInputTensor(name="repeat", datatype="INT64", shape=[2])
        repeat.contents.int64_contents.extend([1, 2])
        stamp = pb.ModelInferRequest.InferInputTensor(name="stamp", datatype="BYTES", shape=[2])
        stamp.contents.bytes_contents.extend([b"2001-01-01", b"2002-02-02"])
        reply = stub.ModelInfer(
            pb.ModelInferRequest(model_name="custom", inputs=[text, repeat, stamp])
        )
        assert [o.name for o in reply.outputs] == ["length", "shout", "year"]
        assert np.frombuffer(reply.raw_output_contents[0], dtype=np.int64).tolist() == [4, 4]
        # BYTES raw contents: each element is a 4-byte little-endian length, then the bytes.
        assert reply.raw_output_contents[1] == b"\x04\x00\x00\x00GRPC\x02\x00\x00\x00OK"
        assert np.frombuffer(reply.raw_output_contents[2], dtype=np.int64).tolist() == [2001, 2002]

        repeat.contents.int64_contents[:] = [1]
        repeat.shape[:] = [1]
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(pb.ModelInferRequest(model_name="custom", inputs=[text, repeat, stamp]))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == (
            "columns must have the same number of rows: 'text' has 2, 'repeat' has 1, 'stamp' has 2"
        )


def test_custom_model_params_from_v2_parameters_v1_params_and_grpc(servers, loaded):
    """MLflow params (the signature's ParamSchema) come from V2 `parameters` (REST and gRPC) and
    from V1 `params` (as MLflow's scoring server takes them); absent, the default applies."""
    inputs = [
        {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["ab", "c"]},
        {"name": "repeat", "datatype": "INT64", "shape": [2], "data": [1, 2]},
        {"name": "stamp", "datatype": "BYTES", "shape": [2], "data": ["2001-01-01", "2002-02-02"]},
    ]
    frame = {"text": ["ab", "c"], "repeat": [1, 2], "stamp": ["2001-01-01", "2002-02-02"]}

    def lengths(reply: httpx.Response) -> list[int]:
        assert reply.status_code == 200, reply.text
        return next(o["data"] for o in reply.json()["outputs"] if o["name"] == "length")

    assert lengths(infer(servers, "custom", {"inputs": inputs})) == [2, 2]
    # Other V2 parameters (not params of the model) are left alone.
    body = {"inputs": inputs, "parameters": {"times": 3, "content_type": "pd"}}
    assert lengths(infer(servers, "custom", body)) == [6, 6]
    import pandas as pd

    reference = loaded["custom"].predict(
        pd.DataFrame({**frame, "stamp": pd.to_datetime(frame["stamp"])}), params={"times": 3}
    )
    assert reference["length"].tolist() == [6, 6]

    reply = predict_v1(
        servers,
        "custom",
        {
            "dataframe_split": {
                "columns": list(frame),
                "data": [list(r) for r in zip(*frame.values(), strict=True)],
            },
            "params": {"times": 5},
        },
    )
    assert reply.status_code == 200, reply.text
    assert [row["length"] for row in reply.json()["predictions"]] == [10, 10]

    reply = predict_v1(
        servers,
        "custom",
        {
            "dataframe_records": [{"text": "ab", "repeat": 1, "stamp": "2001-01-01"}],
            "params": {"times": 2, "speed": 9},
        },
    )
    assert reply.status_code == 400
    assert reply.json() == {"error": "unknown param(s) speed; model 'custom' takes times"}

    reply = infer(servers, "custom", {"inputs": inputs, "parameters": {"times": "many"}})
    assert reply.status_code == 400
    # The reason is MLflow's own text (here: "Invalid parameters found: {('times', "Failed to
    # validate type and shape for 'times': long (default: 1), error: Can not safely convert
    # `<class 'str'>` to `DataType.long` for value `many`")}"); its wording is MLflow's to change.
    error = reply.json()["error"]
    assert error.startswith(
        "input does not match the model's MLflow signature: Invalid parameters found: {('times', "
    )
    assert "`many`" in error

    with grpc_stub(servers["custom"].grpc_target) as stub:
        tensors = []
        for item in inputs:
            tensor = pb.ModelInferRequest.InferInputTensor(
                name=item["name"], datatype=item["datatype"], shape=[2]
            )
            if item["datatype"] == "INT64":
                tensor.contents.int64_contents.extend(item["data"])
            else:
                tensor.contents.bytes_contents.extend(v.encode() for v in item["data"])
            tensors.append(tensor)
        request = pb.ModelInferRequest(model_name="custom", inputs=tensors)
        request.parameters["times"].int64_param = 4
        reply = stub.ModelInfer(request)
        assert np.frombuffer(reply.raw_output_contents[0], dtype=np.int64).tolist() == [8, 8]


# ---- no signature -------------------------------------------------------------------------


def test_model_without_signature_serves_and_says_so(servers, loaded):
    meta = httpx.get(url(servers, "nosig", "/v2/models/nosig")).json()
    assert meta["inputs"] == []
    assert meta["parameters"]["signature"] == "none"
    assert "no signature" in meta["parameters"]["note"]
    # Inputs are unknown, so the warm-up had nothing to run: outputs are named by the reply.
    assert meta["outputs"] == []

    matrix = [row[:4] for row in ROWS]
    expected = loaded["nosig"].predict(np.asarray(matrix)).tolist()
    body = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [3, 4], "data": matrix}]}
    reply = infer(servers, "nosig", body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [3], "data": expected}
    ]
    reply = predict_v1(servers, "nosig", {"instances": matrix})
    assert reply.json() == {"predictions": expected}

    body["inputs"][0].update(shape=[3, 3], data=[row[:3] for row in matrix])
    reply = infer(servers, "nosig", body)
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "model rejected the input: X has 3 features, but "
        "LogisticRegression is expecting 4 features as input."
    }
    # The process keeps serving after any client mistake.
    assert httpx.get(url(servers, "nosig", "/v2/health/ready")).status_code == 200


# ---- loading ------------------------------------------------------------------------------


def test_directory_without_mlmodel_fails_to_start(tmp_path):
    (tmp_path / "empty").mkdir()
    server = ServerProcess(
        ["--predictor", "mlflow", "--model-dir", str(tmp_path / "empty"), "--model-name", "broken"],
        server_env(tmp_path),
        tmp_path / "log",
    )
    server.start(wait=False)
    assert server.process is not None
    assert server.process.wait(timeout=60) == 1
    server.stop()
    assert (
        f"model failed to load: no MLflow model in {tmp_path / 'empty'}: expected an "
        "MLmodel file (the directory mlflow.<flavor>.save_model writes)"
    ) in server.log()
