"""MLflow models of the `sklearn` flavor compiled by `kninfer compile`, served by `--predictor
mlflow` through ONNX Runtime (kninfer.predictors.mlflow_compiled).

Models built here and saved by MLflow's own `mlflow.sklearn.save_model`, then compiled by a
real `kninfer compile` process:

- `churn`: a DataFrame pipeline (a OneHotEncoder on a string column, a scaler, a
  GradientBoostingClassifier with string labels), saved with the signature and input example
  MLflow infers, an integer column among them (`long` in the signature);
- `iris`: a LogisticRegression fitted on a numpy matrix (a tensor signature), with an input
  example, whose rows `kninfer compile` verifies the graph on.

Each is served twice by real `kninfer serve --predictor mlflow` processes: as it is (`--runtime
auto` finds model.onnx) and with `--runtime native` (mlflow.pyfunc). The compiled server must
state the same inputs, answer V2 (HTTP, tritonclient, gRPC), V1 and MLflow's scoring client
as the native one does, and as `mlflow.pyfunc.load_model(...).predict` does in this process,
and refuse the same client mistakes with a 400.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.compiled_models import compiled_here, save_mlflow_iris
from tests.support.processes import fresh_python
from tests.support.servers import (
    ServerProcess,
    both_runtimes,
    grpc_stub,
    servers_started,
    triton_infer,
)

pytest.importorskip("mlflow.sklearn", reason="the mlflow extra is not installed")
pytest.importorskip("skl2onnx", reason="the compile extra is not installed")

PLANS = ("basic", "pro", "max")


def churn_frame(rows: int, seed: int) -> Any:
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, rows).astype("int64"),
            "charges": rng.normal(70, 20, rows),
            "plan": rng.choice(PLANS, rows),
        }
    )


def save_churn(path: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = churn_frame(400, seed=0)
    labels = np.where((frame.tenure < 12) & (frame.plan == "basic"), "churn", "stay")
    prep = ColumnTransformer(
        [
            ("num", StandardScaler(), ["tenure", "charges"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    pipeline = Pipeline([("prep", prep), ("gbm", GradientBoostingClassifier(n_estimators=25))])
    pipeline.fit(frame, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(
            pipeline,
            str(path),
            signature=infer_signature(frame, pipeline.predict(frame)),
            input_example=frame.head(3),
            serialization_format="cloudpickle",
        )


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mlflow-compiled")
    dirs = {"churn": root / "churn", "iris": root / "iris"}
    save_churn(dirs["churn"])
    save_mlflow_iris(dirs["iris"])
    for path in dirs.values():
        compiled_here(path)
    return dirs


@pytest.fixture(scope="module")
def servers(
    model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProcess]]:
    commands = both_runtimes("mlflow", model_dirs)
    with servers_started(commands, tmp_path_factory.mktemp("mlflow-compiled-servers")) as started:
        yield started


def pyfunc_predict(model_dir: Path, data: Any) -> np.ndarray:
    import mlflow.pyfunc

    return np.asarray(mlflow.pyfunc.load_model(str(model_dir)).predict(data))


def metadata(server: ServerProcess, name: str) -> dict[str, Any]:
    reply = httpx.get(f"{server.url}/v2/models/{name}", timeout=30)
    assert reply.status_code == 200, reply.text
    doc: dict[str, Any] = reply.json()
    return doc


def frame_inputs(frame: Any) -> list[dict[str, Any]]:
    datatypes = {"tenure": "INT64", "charges": "FP64", "plan": "BYTES"}
    return [
        {"name": c, "datatype": datatypes[c], "shape": [len(frame)], "data": frame[c].tolist()}
        for c in frame.columns
    ]


def v2_infer(server: ServerProcess, name: str, inputs: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{name}/infer", json={"inputs": inputs}, timeout=30)


def test_the_compiled_model_states_the_native_contract(
    servers: dict[str, ServerProcess],
) -> None:
    for name in ("churn", "iris"):
        compiled = metadata(servers[name], name)
        native = metadata(servers[f"{name}-native"], name)
        assert compiled["platform"] == "kninfer-mlflow-onnx"
        assert native["platform"] == "kninfer-mlflow"
        assert compiled["inputs"] == native["inputs"]
        # `predict` as the pyfunc answers it; the probabilities only when asked for by name.
        assert compiled["outputs"][0] == native["outputs"][0]
        assert [o["name"] for o in compiled["outputs"]] == ["predict", "predict_proba"]
        assert compiled["versions"] == native["versions"]
    churn = metadata(servers["churn"], "churn")
    assert [(i["name"], i["datatype"]) for i in churn["inputs"]] == [
        ("tenure", "INT64"),
        ("charges", "FP64"),
        ("plan", "BYTES"),
    ]
    assert churn["parameters"]["signature"] == "column"
    assert set(churn["parameters"]["datatype_sources"].values()) == {"mlflow signature"}


def test_v2_answers_what_the_pyfunc_answers(
    servers: dict[str, ServerProcess], model_dirs: dict[str, Path]
) -> None:
    frame = churn_frame(200, seed=7)
    expected = pyfunc_predict(model_dirs["churn"], frame)
    assert len(set(expected)) == 2  # both labels are in the rows compared
    for name in ("churn", "churn-native"):
        reply = v2_infer(servers[name], "churn", frame_inputs(frame))
        assert reply.status_code == 200, reply.text
        (output,) = reply.json()["outputs"]
        assert output["name"] == "predict"
        assert output["data"] == expected.tolist()


def test_tritonclient_and_grpc_answer_alike(
    servers: dict[str, ServerProcess], model_dirs: dict[str, Path]
) -> None:
    frame = churn_frame(20, seed=3)
    expected = pyfunc_predict(model_dirs["churn"], frame).tolist()
    server = servers["churn"]
    for protocol, url in (("http", f"127.0.0.1:{server.http_port}"), ("grpc", server.grpc_target)):
        answer = triton_infer(
            {
                "protocol": protocol,
                "url": url,
                "model": "churn",
                "inputs": frame_inputs(frame),
                "outputs": ["predict", "predict_proba"],
            }
        )
        outputs: Any = answer["outputs"]
        assert [v.decode() if isinstance(v, bytes) else v for v in outputs["predict"]] == expected
        probabilities = np.asarray(outputs["predict_proba"])
        assert probabilities.shape == (20, 2)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    iris = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[3, 4])
    tensor.contents.fp64_contents.extend(iris.ravel().tolist())
    with grpc_stub(servers["iris"].grpc_target) as stub:
        reply = stub.ModelInfer(request, timeout=30)
    labels = np.frombuffer(reply.raw_output_contents[0], dtype=np.int64)
    assert labels.tolist() == pyfunc_predict(model_dirs["iris"], iris).tolist()


def test_mlflow_scoring_client_and_v1(
    servers: dict[str, ServerProcess], model_dirs: dict[str, Path]
) -> None:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    frame = churn_frame(30, seed=11)
    expected = pyfunc_predict(model_dirs["churn"], frame).tolist()
    for name in ("churn", "churn-native"):
        client = ScoringServerClient("127.0.0.1", servers[name].http_port)
        client.wait_server_ready(timeout=30)
        assert client.invoke(frame)["predictions"] == expected
        records = frame.to_dict(orient="records")
        reply = httpx.post(
            f"{servers[name].url}/v1/models/churn:predict", json={"instances": records}
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["predictions"] == expected


def test_client_mistakes_are_400s_on_both_runtimes(servers: dict[str, ServerProcess]) -> None:
    frame = churn_frame(2, seed=1)
    fractional = frame_inputs(frame)
    fractional[0] = {**fractional[0], "datatype": "FP64", "data": [1.5, 2.0]}
    missing = frame_inputs(frame)[1:]
    for name in ("churn", "churn-native"):
        for inputs, words in ((fractional, "tenure"), (missing, "tenure")):
            reply = v2_infer(servers[name], "churn", inputs)
            assert reply.status_code == 400, reply.text
            assert words in reply.json()["error"]


NO_MLFLOW = """
import sys
from pathlib import Path
from kninfer.predictors import predictor_class
from kninfer.settings import ServeSettings

settings = ServeSettings(model_dir=Path(sys.argv[1]), predictor="mlflow")
cls = predictor_class("mlflow", settings.model_dir, settings)
predictor = cls("m", settings.model_dir, settings)
predictor.load()
print(cls.__name__, predictor.warmup_guessed, predictor.inline_max_rows > 0)
print(sorted(m for m in ("mlflow", "sklearn", "scipy", "onnx") if m in sys.modules))
"""


def test_the_compiled_model_loads_without_mlflow_or_scikit_learn(
    model_dirs: dict[str, Path],
) -> None:
    done = fresh_python(NO_MLFLOW, str(model_dirs["churn"]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["CompiledMlflowPredictor False True", "[]"]


def test_a_pyfunc_answering_otherwise_is_not_served_from_the_graph(tmp_path: Path) -> None:
    """An MLflow model whose pyfunc answers with predict_proba: the graph's `predict` would not
    be its answer. `auto` serves it through mlflow.pyfunc; `--runtime onnx` says why not."""
    from kninfer.errors import ModelLoadError
    from kninfer.predictors import predictor_class
    from kninfer.settings import ServeSettings

    model_dir = tmp_path / "proba"
    save_mlflow_iris(model_dir, pyfunc_predict_fn="predict_proba")
    compiled_here(model_dir)
    auto = ServeSettings(model_dir=model_dir, predictor="mlflow")
    assert predictor_class("mlflow", model_dir, auto).__name__ == "MlflowPredictor"
    forced = ServeSettings(model_dir=model_dir, predictor="mlflow", runtime="onnx")
    cls = predictor_class("mlflow", model_dir, forced)
    with pytest.raises(ModelLoadError, match="its pyfunc answers with predict_proba, not predict"):
        cls("m", model_dir, forced).load()


def test_a_retrained_model_does_not_start_on_its_old_graph(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """The pickled model changed after the compile: the graph is refused at start-up, as the
    sklearn family refuses it."""
    import shutil

    from kninfer.errors import ModelLoadError
    from kninfer.predictors import predictor_class
    from kninfer.settings import ServeSettings

    model_dir = tmp_path / "iris"
    shutil.copytree(model_dirs["iris"], model_dir)
    source = json.loads((model_dir / "compile.json").read_text())["source"]["file"]
    (model_dir / source).write_bytes((model_dir / source).read_bytes() + b"\n")
    settings = ServeSettings(model_dir=model_dir, predictor="mlflow")
    cls = predictor_class("mlflow", model_dir, settings)
    with pytest.raises(ModelLoadError, match=f"was compiled from {source} with sha256"):
        cls("m", model_dir, settings).load()
