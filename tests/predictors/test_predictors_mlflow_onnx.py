"""MLflow models of the `onnx` flavor through ONNX Runtime (kninfer.predictors.mlflow_onnx).

Two models are built here and saved by MLflow's own `mlflow.onnx.save_model`:

- `pair`: a graph with two named inputs and two named outputs (a scoring head and a total), as
  a PyTorch or TensorFlow export has them, built with onnx.helper;
- `gbm`: a scikit-learn GradientBoostingClassifier converted by skl2onnx (labels and
  probabilities).

Each is served by a real `kninfer serve --predictor mlflow` process. Its V2 answers (over HTTP
and gRPC), and its MLflow scoring answers through MLflow's own `ScoringServerClient`, are
compared with `mlflow.pyfunc.load_model(...).predict` in this process. Also checked: the
metadata and platform, client mistakes as 400s, `--runtime native` serving the same model
through mlflow.pyfunc, and a load that imports neither MLflow nor scikit-learn.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.paths import ROOT
from tests.support.servers import ServerProcess, grpc_stub, servers_started

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


def gbm_graph() -> Any:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.ensemble import GradientBoostingClassifier

    data = load_iris()
    features = data.data.astype(np.float32)
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(features, data.target)
    return to_onnx(model, features[:1], options={"zipmap": False}, target_opset=17)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import mlflow.onnx

    root = tmp_path_factory.mktemp("mlflow-onnx")
    dirs = {"pair": root / "pair", "gbm": root / "gbm"}
    mlflow.onnx.save_model(pair_graph(), str(dirs["pair"]))
    mlflow.onnx.save_model(gbm_graph(), str(dirs["gbm"]))
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
    with servers_started(commands, tmp) as started:
        yield started


def pyfunc(model_dir: Path) -> Any:
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(model_dir))


PAIR = {
    "features": np.array([[1, 2, 3, 4], [5, 6, 7, 8], [0.5, -1, 2, 0]], dtype=np.float32),
    "context": np.array([[1, 1, 1], [0, 0, 0], [-2, 3, 0.25]], dtype=np.float32),
}
IRIS_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def v2(server: ServerProcess, name: str, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    body = {
        "inputs": [
            {"name": k, "shape": list(v.shape), "datatype": "FP32", "data": v.ravel().tolist()}
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
            "input 'features'",
        ),
        (
            {
                "inputs": [
                    {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}
                ]
            },
            "missing input(s) context",
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
    assert reply.status_code == 400 and "takes tensors" in reply.json()["message"]
    assert v2(server, "pair", PAIR)["total"]["shape"] == [3, 1]  # and it keeps serving


NO_MLFLOW = """
import sys
from pathlib import Path
import numpy as np
from kninfer.predictors import predictor_class
from kninfer.settings import ServeSettings

settings = ServeSettings(model_dir=Path(sys.argv[1]), predictor="mlflow")
cls = predictor_class("mlflow", settings.model_dir, settings)
predictor = cls("m", settings.model_dir, settings)
predictor.load()
answer = predictor.run(predictor.warmup_inputs(), ["total"])
print(cls.__name__, answer["total"].shape,
      sorted(m for m in ("mlflow", "sklearn", "scipy", "onnx") if m in sys.modules))
"""


def test_the_graph_loads_without_mlflow_or_scikit_learn(model_dirs: dict[str, Path]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_MLFLOW, str(model_dirs["pair"])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["OnnxMlflowPredictor", "(1,", "1)", "[]"]


def test_runtime_onnx_refuses_another_flavor(tmp_path: Path) -> None:
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    from kninfer.errors import ModelLoadError
    from kninfer.predictors import predictor_class
    from kninfer.settings import ServeSettings

    model_dir = tmp_path / "lr"
    mlflow.sklearn.save_model(LogisticRegression().fit(IRIS_ROWS, [0, 1, 1]), str(model_dir))
    settings = ServeSettings(model_dir=model_dir, predictor="mlflow", runtime="onnx")
    cls = predictor_class("mlflow", model_dir, settings)
    with pytest.raises(ModelLoadError, match="serves the onnx flavor only"):
        cls("m", model_dir, settings).load()
    auto = ServeSettings(model_dir=model_dir, predictor="mlflow")
    assert predictor_class("mlflow", model_dir, auto).__name__ == "MlflowPredictor"


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
