"""MLflow models of the `onnx` flavor through ONNX Runtime (kninfer.predictors.mlflow_onnx).

Models built here and saved by MLflow's own `mlflow.onnx.save_model`:

- `pair`: a graph with two named inputs and two named outputs (a scoring head and a total), as
  a PyTorch or TensorFlow export has them, built with onnx.helper;
- `gbm`: a scikit-learn GradientBoostingClassifier converted by skl2onnx (labels and
  probabilities, zipmap=False);
- `cols`: two named 1-D float inputs, the columns of a table (onnx.helper);
- `torch`: a PyTorch network of two inputs exported by torch.onnx.export (dynamo=False), with
  weights over 1 KB, which MLflow saves as external data files beside model.onnx; saved with a
  signature and an input example;
- `frame`: a scikit-learn DataFrame pipeline (a OneHotEncoder on a string column, a scaler, a
  GradientBoostingClassifier) converted by skl2onnx with its defaults: one [N, 1] input per
  column, and the probabilities as one {class: probability} map per row (ZipMap); saved with a
  DataFrame input example.

Each is served by a real `kninfer serve --predictor mlflow` process. Its V2 answers (over HTTP,
through tritonclient, and gRPC) and its MLflow scoring answers (through MLflow's own
`ScoringServerClient`) are compared with `mlflow.pyfunc.load_model(...).predict` and with
ONNX Runtime in this process; the `/invocations` answers are compared body for body with MLflow's
own scoring server (`mlflow.pyfunc.scoring_server.init`, in this process). Also checked: the
metadata and platform, client mistakes as 400s, `--runtime native` serving the same model
through mlflow.pyfunc, batching, and a load that imports neither MLflow nor scikit-learn. The
masked PyTorch module of tests/reliability gets the PyTorch family's bad-input cases there.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.processes import fresh_python
from tests.support.servers import ServerProcess, grpc_stub, servers_started, triton_infer

pytest.importorskip("mlflow.onnx", reason="the mlflow extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def pair_graph() -> Any:
    import onnx
    from onnx import TensorProto, helper

    weights = (np.arange(12, dtype=np.float32).reshape(4, 3) / 10).ravel().tolist()
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "W"], ["projected"]),
            helper.make_node("Mul", ["context", "two"], ["doubled"]),
            helper.make_node("Add", ["projected", "doubled"], ["scores"]),
            helper.make_node("ReduceSum", ["scores", "axes"], ["total"], keepdims=1),
        ],
        "pair",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("context", TensorProto.FLOAT, ["batch", 3]),
        ],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch", 1]),
        ],
        initializer=[
            helper.make_tensor("W", TensorProto.FLOAT, [4, 3], weights),
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def cols_graph() -> Any:
    """Two named 1-D float inputs `a` and `b`, outputs their sum `s` and product `p`."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Mul", ["a", "b"], ["p"])],
        "cols",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n"]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n"]),
        ],
        [
            helper.make_tensor_value_info("s", TensorProto.FLOAT, ["n"]),
            helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def gbm_graph() -> Any:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.ensemble import GradientBoostingClassifier

    data = load_iris()
    features = data.data.astype(np.float32)
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(features, data.target)
    return to_onnx(model, features[:1], options={"zipmap": False}, target_opset=17)


def churn_frame(rows: int = 300, seed: int = 0) -> Any:
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "plan": rng.choice(["basic", "plus", "pro"], rows),
            "age": rng.uniform(18, 80, rows).round(),
            "monthly_fee": rng.uniform(5, 90, rows).round(2),
        }
    )


def frame_graph() -> Any:
    from skl2onnx import to_onnx
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = churn_frame()
    churned = ((frame.plan == "pro") ^ (frame.monthly_fee > 50)).astype(int).to_numpy()
    pipeline = make_pipeline(
        ColumnTransformer(
            [
                ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                ("numbers", StandardScaler(), ["age", "monthly_fee"]),
            ]
        ),
        GradientBoostingClassifier(n_estimators=30, random_state=0),
    ).fit(frame, churned)
    return to_onnx(pipeline, frame[:1], target_opset={"": 17, "ai.onnx.ml": 3})


class TwoInputNet:
    """A PyTorch network of two inputs and two outputs, built on first use (torch is imported
    lazily), with weights over 1 KB so that MLflow saves them as external data."""

    @staticmethod
    def build() -> Any:
        import torch

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.features = torch.nn.Linear(16, 64)
                self.context = torch.nn.Linear(2, 64)
                self.head = torch.nn.Linear(64, 3)

            def forward(self, features: Any, context: Any) -> Any:
                hidden = torch.relu(self.features(features) + self.context(context))
                scores = self.head(hidden)
                return scores, scores.sum(dim=1, keepdim=True)

        torch.manual_seed(7)
        return Net().eval()


def torch_rows(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "features": rng.normal(size=(rows, 16)).astype(np.float32),
        "context": rng.normal(size=(rows, 2)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def torch_net() -> Any:
    pytest.importorskip("torch")
    return TwoInputNet.build()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory, torch_net: Any) -> dict[str, Path]:
    import mlflow.onnx
    import torch
    from mlflow.models import infer_signature

    from tests.support.torch_models import onnx_export

    root = tmp_path_factory.mktemp("mlflow-onnx")
    dirs = {name: root / name for name in ("pair", "gbm", "cols", "torch", "frame")}
    mlflow.onnx.save_model(pair_graph(), str(dirs["pair"]))
    mlflow.onnx.save_model(gbm_graph(), str(dirs["gbm"]))
    mlflow.onnx.save_model(cols_graph(), str(dirs["cols"]))
    example = torch_rows(2, seed=1)
    graph = onnx_export(
        torch_net,
        (torch.zeros(1, 16), torch.zeros(1, 2)),
        ["features", "context"],
        ["scores", "total"],
    )
    with torch.inference_mode():
        answer = torch_net(*(torch.as_tensor(v) for v in example.values()))
    signature = infer_signature(example, {"scores": answer[0].numpy(), "total": answer[1].numpy()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.onnx.save_model(
            graph, str(dirs["torch"]), signature=signature, input_example=example
        )
        mlflow.onnx.save_model(
            frame_graph(), str(dirs["frame"]), input_example=churn_frame(2, seed=1)
        )
    return dirs


@pytest.fixture(scope="module")
def servers(
    model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("mlflow-onnx-servers")
    commands = {
        name: ["--predictor", "mlflow", "--model-dir", str(path), "--model-name", name]
        for name, path in model_dirs.items()
    }
    commands["gbm-native"] = [*commands["gbm"], "--runtime", "native"]
    commands["torch"].append("--batching")
    with servers_started(commands, tmp) as started:
        yield started


def pyfunc(model_dir: Path) -> Any:
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(model_dir))


def onnx_runtime(model_dir: Path, feed: dict[str, np.ndarray]) -> dict[str, Any]:
    """What ONNX Runtime itself answers for `feed` (outputs by name)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_dir / "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))


PAIR = {
    "features": np.array([[1, 2, 3, 4], [5, 6, 7, 8], [0.5, -1, 2, 0]], dtype=np.float32),
    "context": np.array([[1, 1, 1], [0, 0, 0], [-2, 3, 0.25]], dtype=np.float32),
}
IRIS_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def v2(
    server: ServerProcess, name: str, inputs: dict[str, np.ndarray], datatype: str = "FP32"
) -> dict[str, Any]:
    body = {
        "inputs": [
            {"name": k, "shape": list(v.shape), "datatype": datatype, "data": v.ravel().tolist()}
            for k, v in inputs.items()
        ]
    }
    reply = httpx.post(f"{server.url}/v2/models/{name}/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return {o["name"]: o for o in reply.json()["outputs"]}


def test_metadata_is_the_graphs(servers: dict[str, ServerProcess]) -> None:
    doc = httpx.get(f"{servers['pair'].url}/v2/models/pair").json()
    assert doc["platform"] == "kninfer-mlflow-onnx"
    assert doc["inputs"] == [
        {"name": "features", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "context", "datatype": "FP32", "shape": [-1, 3]},
    ]
    assert doc["outputs"] == [
        {"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "total", "datatype": "FP32", "shape": [-1, 1]},
    ]
    frame = httpx.get(f"{servers['frame'].url}/v2/models/frame").json()
    assert frame["inputs"] == [
        {"name": "plan", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "age", "datatype": "FP64", "shape": [-1, 1]},
        {"name": "monthly_fee", "datatype": "FP64", "shape": [-1, 1]},
    ]
    assert frame["outputs"] == [
        {"name": "output_label", "datatype": "INT64", "shape": [-1]},
        {"name": "output_probability", "datatype": "BYTES", "shape": [-1]},
    ]
    native = httpx.get(f"{servers['gbm-native'].url}/v2/models/gbm").json()
    assert native["platform"] == "kninfer-mlflow"
    assert "through ONNX Runtime" in servers["pair"].log()


def test_v2_answers_what_mlflow_answers(
    servers: dict[str, ServerProcess], model_dirs: dict[str, Path]
) -> None:
    expected = pyfunc(model_dirs["pair"]).predict(PAIR)
    got = v2(servers["pair"], "pair", PAIR)
    for name in ("scores", "total"):
        assert got[name]["shape"] == list(expected[name].shape)
        np.testing.assert_allclose(got[name]["data"], expected[name].ravel(), **TOLERANCE)
    # FP64, as JSON clients and numpy's default send it: cast to the graph's FP32 as MLflow's
    # onnx pyfunc casts it.
    as_fp64 = v2(
        servers["pair"], "pair", {k: v.astype(np.float64) for k, v in PAIR.items()}, "FP64"
    )
    np.testing.assert_allclose(as_fp64["scores"]["data"], expected["scores"].ravel(), **TOLERANCE)
    rows = {"X": IRIS_ROWS.astype(np.float32)}
    expected = pyfunc(model_dirs["gbm"]).predict(rows)
    got = v2(servers["gbm"], "gbm", rows)
    assert got["label"]["data"] == expected["label"].tolist()
    np.testing.assert_allclose(
        got["probabilities"]["data"], expected["probabilities"].ravel(), **TOLERANCE
    )


def test_grpc_answers_what_mlflow_answers(
    servers: dict[str, ServerProcess], model_dirs: dict[str, Path]
) -> None:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name="pair")
    for name, values in PAIR.items():
        tensor = request.inputs.add(name=name, datatype="FP32", shape=list(values.shape))
        tensor.contents.fp32_contents.extend(values.ravel().tolist())
    with grpc_stub(servers["pair"].grpc_target) as stub:
        reply = stub.ModelInfer(request, timeout=30)
    expected = pyfunc(model_dirs["pair"]).predict(PAIR)
    for output, raw in zip(reply.outputs, reply.raw_output_contents, strict=True):
        got = np.frombuffer(raw, dtype=np.float32).reshape(list(output.shape))
        np.testing.assert_allclose(got, expected[output.name], **TOLERANCE)


def test_mlflow_scoring_client_gets_every_output(
    servers: dict[str, ServerProcess], model_dirs: dict[str, Path]
) -> None:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    client = ScoringServerClient("127.0.0.1", servers["pair"].http_port)
    client.wait_server_ready(timeout=30)
    answer = client.invoke(PAIR)["predictions"]
    expected = pyfunc(model_dirs["pair"]).predict(PAIR)
    assert set(answer) == {"scores", "total"}
    for name in answer:
        np.testing.assert_allclose(answer[name], expected[name], **TOLERANCE)


def test_pytorch_export_with_external_weights(
    servers: dict[str, ServerProcess], model_dirs: dict[str, Path], torch_net: Any
) -> None:
    """A network exported by torch.onnx.export, whose weights MLflow wrote beside the graph,
    answers over tritonclient HTTP (binary) and gRPC as ONNX Runtime, MLflow and torch do."""
    import torch

    model_dir = model_dirs["torch"]
    standard = {"MLmodel", "model.onnx", "conda.yaml", "python_env.yaml", "requirements.txt"}
    assert [p for p in model_dir.iterdir() if p.name not in standard and p.suffix != ".json"]
    rows = torch_rows(5)
    direct = onnx_runtime(model_dir, rows)
    mlflow_answer = pyfunc(model_dir).predict(rows)
    with torch.inference_mode():
        eager = torch_net(*(torch.as_tensor(v) for v in rows.values()))
    np.testing.assert_allclose(direct["scores"], eager[0].numpy(), rtol=1e-4, atol=1e-5)
    server = servers["torch"]
    for protocol, url in (
        ("http", f"127.0.0.1:{server.http_port}"),
        ("grpc", server.grpc_target),
    ):
        answer = triton_infer(
            {
                "protocol": protocol,
                "url": url,
                "model": "torch",
                "inputs": [
                    {"name": k, "datatype": "FP32", "shape": list(v.shape), "data": v.tolist()}
                    for k, v in rows.items()
                ],
                "outputs": ["scores", "total"],
            }
        )
        assert "error" not in answer, answer
        outputs: dict[str, Any] = answer["outputs"]  # type: ignore[assignment]
        for name in ("scores", "total"):
            np.testing.assert_allclose(outputs[name], direct[name], **TOLERANCE)
            np.testing.assert_allclose(outputs[name], mlflow_answer[name], **TOLERANCE)
    # The warm-up ran on the saved serving example (the input example MLflow wrote).
    assert "warming up on zeros" not in server.log()


def test_batched_requests_answer_each_their_own(
    servers: dict[str, ServerProcess], model_dirs: dict[str, Path]
) -> None:
    """With --batching, concurrent requests of different rows share calls of the graph and
    each gets its own rows' answer."""
    server = servers["torch"]
    requests = [torch_rows(1 + i % 3, seed=10 + i) for i in range(16)]

    def send(rows: dict[str, np.ndarray]) -> dict[str, Any]:
        return v2(server, "torch", rows)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, requests))
    for rows, got in zip(requests, answers, strict=True):
        want = onnx_runtime(model_dirs["torch"], rows)
        assert got["scores"]["shape"] == list(want["scores"].shape)
        np.testing.assert_allclose(got["scores"]["data"], want["scores"].ravel(), **TOLERANCE)


def test_dataframe_pipeline_over_every_transport(
    servers: dict[str, ServerProcess], model_dirs: dict[str, Path]
) -> None:
    """A skl2onnx DataFrame pipeline (one [N, 1] input per column, ZipMap probabilities): a
    DataFrame through MLflow's ScoringServerClient, and V2 through tritonclient, answer as ONNX
    Runtime and MLflow's pyfunc do on the same columns."""
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    model_dir, server = model_dirs["frame"], servers["frame"]
    frame = churn_frame(6, seed=3)
    feed = {
        "plan": frame[["plan"]].to_numpy().astype(object),
        "age": frame[["age"]].to_numpy(),
        "monthly_fee": frame[["monthly_fee"]].to_numpy(),
    }
    direct = onnx_runtime(model_dir, feed)
    labels = direct["output_label"].tolist()
    maps = [{str(k): v for k, v in row.items()} for row in direct["output_probability"]]
    mlflow_answer = pyfunc(model_dir).predict(feed)
    assert mlflow_answer["output_label"].tolist() == labels

    client = ScoringServerClient("127.0.0.1", server.http_port)
    records = client.invoke(frame)["predictions"]
    assert [r["output_label"] for r in records] == labels
    for record, want in zip(records, maps, strict=True):
        assert record["output_probability"] == pytest.approx(want, rel=1e-6)

    answer = triton_infer(
        {
            "protocol": "http",
            "url": f"127.0.0.1:{server.http_port}",
            "model": "frame",
            "inputs": [
                {
                    "name": "plan",
                    "datatype": "BYTES",
                    "shape": [6, 1],
                    "data": feed["plan"].tolist(),
                },
                # a column as [N], as the other families take it, or as the graph's [N, 1]
                {"name": "age", "datatype": "FP64", "shape": [6], "data": frame["age"].tolist()},
                {
                    "name": "monthly_fee",
                    "datatype": "FP64",
                    "shape": [6, 1],
                    "data": feed["monthly_fee"].tolist(),
                },
            ],
            "outputs": ["output_label", "output_probability"],
        }
    )
    assert "error" not in answer, answer
    outputs: dict[str, Any] = answer["outputs"]  # type: ignore[assignment]
    assert outputs["output_label"] == labels
    for text, want in zip(outputs["output_probability"], maps, strict=True):
        assert json.loads(text) == pytest.approx(want, rel=1e-6)
    assert "warming up on zeros" not in server.log()


# ---- /invocations, body for body against MLflow's own scoring server --------------------------

GBM_ROW = [5.1, 3.5, 1.4, 0.2]
FRAME_SPLIT = {
    "columns": ["plan", "age", "monthly_fee"],
    "data": [["basic", 30.0, 20.5], ["pro", 61.0, 75.0]],
}
FRAME_TENSORS = {
    "plan": [["basic"], ["pro"]],
    "age": [[30.0], [61.0]],
    "monthly_fee": [[20.5], [75.0]],
}
# (model, body, how kninfer's answer relates to MLflow's):
# - "same": the same status, and for a 200 the same predictions (where MLflow's server answers
#   a client mistake with a 500, as for rows sent to a graph of two inputs, kninfer's is a 400);
# - a body dict: MLflow's server refuses the body, kninfer answers it as MLflow answers this
#   other body (the same values as floats, or as tensors: for a table, one record per row);
# - "refused": MLflow's server answers, kninfer refuses (a client mistake it names).
SCORING_CASES = [
    pytest.param("gbm", {"inputs": [GBM_ROW]}, "same", id="one-input-rows"),
    pytest.param("gbm", {"instances": [GBM_ROW, GBM_ROW]}, "same", id="one-input-instances"),
    pytest.param("gbm", {"inputs": {"X": [GBM_ROW]}}, "same", id="one-input-by-name"),
    pytest.param("gbm", {"instances": [{"X": GBM_ROW}]}, "same", id="one-input-records"),
    pytest.param(
        "gbm",
        {"inputs": [[5, 3, 1, 0]]},
        {"inputs": [[5.0, 3.0, 1.0, 0.0]]},
        id="integers-into-float-input",
    ),
    pytest.param("gbm", {"inputs": [GBM_ROW[:3]]}, "same", id="one-input-wrong-width"),
    pytest.param("gbm", {"inputs": {"Y": [GBM_ROW]}}, "same", id="unknown-input"),
    pytest.param(
        "gbm",
        {"dataframe_split": {"data": [GBM_ROW]}},
        {"inputs": [GBM_ROW]},
        id="rows-as-table",
    ),
    pytest.param(
        "pair",
        {"inputs": {k: v.tolist() for k, v in PAIR.items()}},
        "same",
        id="two-inputs-by-name",
    ),
    pytest.param(
        "pair",
        {"instances": [{k: v[i].tolist() for k, v in PAIR.items()} for i in range(3)]},
        "same",
        id="two-inputs-records",
    ),
    pytest.param("pair", {"inputs": PAIR["features"].tolist()}, "same", id="two-inputs-rows"),
    pytest.param(
        "pair", {"inputs": {"features": PAIR["features"].tolist()}}, "same", id="missing-input"
    ),
    pytest.param("cols", {"inputs": {"a": [1.5, 2.5], "b": [2.0, 3.0]}}, "same", id="columns"),
    pytest.param(
        "cols",
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2.0], [2.5, 3.0]]}},
        "same",
        id="table-by-column",
    ),
    pytest.param(
        "cols",
        {"dataframe_split": {"columns": ["b", "a"], "data": [[1.5, 2.0], [2.5, 3.0]]}},
        "same",
        id="table-columns-reordered",
    ),
    pytest.param(
        "cols",
        {"dataframe_records": [{"a": 1.5, "b": 2.0}, {"a": 2.5, "b": 3.0}]},
        "same",
        id="table-records",
    ),
    pytest.param("cols", "a,b\n1.5,2.0\n2.5,3.0\n", "same", id="csv"),
    pytest.param(
        "cols",
        {"inputs": {"a": [1.5, 2.5], "b": [2.0]}},
        "refused",
        id="batch-mismatch-not-broadcast",
    ),
    pytest.param(
        "gbm",
        {"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [GBM_ROW, GBM_ROW]}},
        {"inputs": [GBM_ROW, GBM_ROW]},
        id="table-of-an-output-of-several-values-per-row",
    ),
    pytest.param("frame", {"inputs": FRAME_TENSORS}, "same", id="pipeline-tensors"),
    pytest.param(
        "frame",
        {"dataframe_split": FRAME_SPLIT},
        {"inputs": FRAME_TENSORS},
        id="pipeline-table-into-n-by-1-inputs",
    ),
]


@pytest.fixture(scope="module")
def mlflow_servers(model_dirs: dict[str, Path]) -> dict[str, Any]:
    """MLflow's own scoring app (what `mlflow models serve` runs) per model, in this process."""
    from mlflow.pyfunc import scoring_server

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient

    return {
        name: TestClient(scoring_server.init(pyfunc(model_dirs[name])))
        for name in ("gbm", "pair", "cols", "frame")
    }


def invoke(post: Any, url: str, body: Any) -> Any:
    if isinstance(body, str):
        return post(url, content=body, headers={"content-type": "text/csv"})
    return post(url, json=body)


def assert_same(got: Any, want: Any) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (got, want)
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (got, want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), (got, want)
    else:
        assert got == want


@pytest.mark.parametrize(("model", "body", "relation"), SCORING_CASES)
def test_scoring_answers_as_mlflow_serves(
    servers: dict[str, ServerProcess],
    mlflow_servers: dict[str, Any],
    model: str,
    body: Any,
    relation: Any,
) -> None:
    ours = invoke(httpx.post, f"{servers[model].url}/invocations", body)
    theirs = invoke(mlflow_servers[model].post, "/invocations", body)
    if relation == "same":
        if theirs.status_code == 200:
            assert ours.status_code == 200, ours.text
            assert_same(ours.json(), theirs.json())
        else:
            assert theirs.status_code in (400, 500), theirs.text[:300]
            assert ours.status_code == 400, ours.text
            assert ours.json()["error_code"] == "BAD_REQUEST"
    elif relation == "refused":
        assert theirs.status_code == 200, theirs.text[:300]
        assert ours.status_code == 400, ours.text
        assert "the model takes the same size in dimension 0" in ours.json()["message"]
    else:
        assert theirs.status_code == 400, theirs.text[:300]
        columns = invoke(mlflow_servers[model].post, "/invocations", relation).json()["predictions"]
        want = columns
        if isinstance(body, str) or "inputs" not in body and "instances" not in body:
            rows = len(next(iter(columns.values())))
            want = [{name: values[i] for name, values in columns.items()} for i in range(rows)]
        assert ours.status_code == 200, ours.text
        assert_same(ours.json(), {"predictions": want})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"inputs": [{"name": "nope", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]},
            "unknown input 'nope'",
        ),
        (
            {
                "inputs": [
                    {"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1] * 3},
                    {"name": "context", "shape": [1, 3], "datatype": "FP32", "data": [1] * 3},
                ]
            },
            "input 'features' has shape [1, 3]; expected [-1, 4]",
        ),
        (
            {
                "inputs": [
                    {"name": "features", "shape": [1, 4], "datatype": "BYTES", "data": ["a"] * 4},
                    {"name": "context", "shape": [1, 3], "datatype": "FP32", "data": [1] * 3},
                ]
            },
            "input 'features' has datatype BYTES; expected one of FP32, FP64, FP16",
        ),
        (
            {
                "inputs": [
                    {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}
                ]
            },
            "missing input(s) context",
        ),
        (
            {
                "inputs": [
                    {"name": "features", "shape": [2, 4], "datatype": "FP32", "data": [1] * 8},
                    {"name": "context", "shape": [1, 3], "datatype": "FP32", "data": [1] * 3},
                ]
            },
            "input 'features' has shape [2, 4] but input 'context' has shape [1, 3]; the model "
            "takes the same size in dimension 0",
        ),
        (
            {
                "inputs": [
                    {"name": "features", "shape": [1, 4], "datatype": "FP64", "data": [1e39] * 4},
                    {"name": "context", "shape": [1, 3], "datatype": "FP32", "data": [1] * 3},
                ]
            },
            "input 'features': a value is out of range for the model, which computes in float32",
        ),
    ],
)
def test_client_mistakes_are_400s(
    servers: dict[str, ServerProcess], body: dict[str, Any], message: str
) -> None:
    server = servers["pair"]
    reply = httpx.post(f"{server.url}/v2/models/pair/infer", json=body, timeout=30)
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]
    frame = {"dataframe_split": {"columns": ["features"], "data": [[1]]}}
    reply = httpx.post(f"{server.url}/invocations", json=frame, timeout=30)
    assert reply.status_code == 400 and "missing input(s) context" in reply.json()["message"]
    assert v2(server, "pair", PAIR)["total"]["shape"] == [3, 1]  # and it keeps serving


def test_v1_mistakes_are_400s(servers: dict[str, ServerProcess]) -> None:
    url = f"{servers['frame'].url}/v1/models/frame:predict"
    for body, message in (
        (
            {"dataframe_records": [{"plan": 3, "age": 30, "monthly_fee": 20.5}]},
            "input 'plan' takes strings (BYTES); row 0 is 3",
        ),
        (
            {"dataframe_records": [{"plan": "pro", "age": "old", "monthly_fee": 20.5}]},
            "'instances': input 'age' takes numbers (FP64)",
        ),
        (
            {"dataframe_records": [{"plan": "pro", "age": 30, "fee": 20.5}]},
            "unknown input 'fee' for model 'frame'",
        ),
        (
            {
                "instances": [{"plan": ["pro"], "age": [30], "monthly_fee": [20.5]}],
                "params": {"k": 2},
            },
            "unknown param(s) k; model 'frame' takes no params",
        ),
    ):
        reply = httpx.post(url, json=body, timeout=30)
        assert reply.status_code == 400, reply.text
        assert message in reply.json()["error"], reply.text


NO_MLFLOW = """
import sys
from pathlib import Path
from kninfer.predictors import predictor_class
from kninfer.settings import ServeSettings

for model_dir in sys.argv[1:]:
    settings = ServeSettings(model_dir=Path(model_dir), predictor="mlflow")
    cls = predictor_class("mlflow", settings.model_dir, settings)
    predictor = cls("m", settings.model_dir, settings)
    predictor.load()
    names = [spec.name for spec in predictor.outputs]
    answer = predictor.run(predictor.warmup_inputs(), names)
    print(cls.__name__, predictor.warmup_guessed, [answer[n].shape[0] for n in names])
print(sorted(m for m in ("mlflow", "sklearn", "scipy", "onnx", "torch")
             if m in sys.modules))
"""


def test_the_graph_loads_without_mlflow_or_scikit_learn(model_dirs: dict[str, Path]) -> None:
    """A graph of any origin loads and runs its warm-up (the saved example where there is one)
    with neither MLflow, scikit-learn, scipy, the onnx package nor torch imported (pandas is,
    by kserve, in every kninfer process)."""
    done = fresh_python(NO_MLFLOW, *(str(model_dirs[name]) for name in ("pair", "torch", "frame")))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "OnnxMlflowPredictor False [1, 1]",
        "OnnxMlflowPredictor False [2, 2]",
        "OnnxMlflowPredictor False [2, 2]",
        "[]",
    ]


def test_runtime_onnx_refuses_another_flavor(tmp_path: Path) -> None:
    """--runtime onnx: a scikit-learn model not yet compiled is told to compile; a model of
    another flavor is told which it can be."""
    import mlflow.pyfunc
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    from kninfer.errors import ModelLoadError
    from kninfer.predictors import predictor_class
    from kninfer.settings import ServeSettings

    class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return model_input * 2

    lr, custom = tmp_path / "lr", tmp_path / "custom"
    mlflow.sklearn.save_model(LogisticRegression().fit(IRIS_ROWS, [0, 1, 1]), str(lr))
    mlflow.pyfunc.save_model(str(custom), python_model=Doubler())
    for model_dir, words in (
        (lr, "compile it first"),
        (custom, "serves an MLflow model of the onnx flavor, or one of the sklearn flavor"),
    ):
        settings = ServeSettings(model_dir=model_dir, predictor="mlflow", runtime="onnx")
        cls = predictor_class("mlflow", model_dir, settings)
        with pytest.raises(ModelLoadError, match=words):
            cls("m", model_dir, settings).load()
        auto = ServeSettings(model_dir=model_dir, predictor="mlflow")
        assert predictor_class("mlflow", model_dir, auto).__name__ == "MlflowPredictor"


def test_an_output_v2_cannot_carry_is_refused_at_load(tmp_path: Path) -> None:
    """A graph returning a sequence of tensors does not start; the message names the output and
    the runtime that serves it."""
    import mlflow.onnx
    from onnx import TensorProto, helper

    from kninfer.errors import ModelLoadError
    from kninfer.predictors.mlflow_onnx import OnnxMlflowPredictor
    from kninfer.settings import ServeSettings

    graph = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x", "x"], ["parts"])],
        "parts",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_sequence_value_info("parts", TensorProto.FLOAT, ["n", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    mlflow.onnx.save_model(model, str(tmp_path / "parts"))
    settings = ServeSettings(model_dir=tmp_path / "parts", predictor="mlflow")
    with pytest.raises(ModelLoadError, match=r"output 'parts' is seq\(tensor\(float\)\).*native"):
        OnnxMlflowPredictor("m", tmp_path / "parts", settings).load()


def test_warm_up_on_a_guess_and_a_fixed_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a saved example, a zero row for a text input is a guess: an encoder refusing ""
    fails the warm-up, which is logged, and the model serves. A graph of a fixed batch size caps
    the batches built for it at that size."""
    import mlflow.onnx
    from onnx import TensorProto, helper
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from kninfer.predictors.mlflow_onnx import OnnxMlflowPredictor
    from kninfer.settings import ServeSettings

    frame = churn_frame(50)[["plan"]]
    strict = make_pipeline(OneHotEncoder(handle_unknown="error"), LogisticRegression())
    strict.fit(frame, (frame.plan == "pro").astype(int))
    mlflow.onnx.save_model(
        to_onnx(strict, frame[:1], options={"zipmap": False}, target_opset=17),
        str(tmp_path / "strict"),
    )
    settings = ServeSettings(model_dir=tmp_path / "strict", predictor="mlflow")
    predictor = OnnxMlflowPredictor("strict", tmp_path / "strict", settings)
    assert predictor.load()
    assert predictor.warmup_guessed
    assert "the warm-up prediction on a guessed row failed" in caplog.text

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    mlflow.onnx.save_model(model, str(tmp_path / "fixed"))
    settings = ServeSettings(model_dir=tmp_path / "fixed", predictor="mlflow")
    predictor = OnnxMlflowPredictor("fixed", tmp_path / "fixed", settings)
    assert predictor.load()
    assert predictor.batch_cap() == 1


def test_without_onnx_runtime_the_load_says_what_to_install(
    model_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kninfer.errors import ModelLoadError
    from kninfer.predictors.mlflow_onnx import OnnxMlflowPredictor
    from kninfer.settings import ServeSettings

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as where it is not installed
    settings = ServeSettings(model_dir=model_dirs["pair"], predictor="mlflow")
    with pytest.raises(ModelLoadError, match=r"pip install 'kninfer\[onnx\]'"):
        OnnxMlflowPredictor("m", model_dirs["pair"], settings).load()
