"""The sklearn family's ONNX runtime (kninfer.predictors.sklearn_onnx) against its native one.

Three models are trained here and compiled by the real `kninfer compile` (subprocesses):

- `iris`: LogisticRegression on an array (INT64 labels), verified on the iris rows (--sample);
- `forest`: RandomForestClassifier on an array with string labels;
- `churn`: Pipeline(ColumnTransformer(OneHotEncoder on a string column, StandardScaler on two
  numeric ones), GradientBoostingClassifier), fitted on a DataFrame, string labels.

Each directory then holds the joblib file and model.onnx, and is served twice by real
`kninfer serve --predictor sklearn --model-dir DIR` processes: as is (`--runtime auto`: ONNX
Runtime) and with `--runtime native` (the joblib). The answers over V2 JSON and binary, V1,
gRPC, MLflow's /invocations and CloudEvents are compared with the estimator in this process:
labels exactly, probabilities to 1e-5; metadata with the native server's.

Also: choosing the runtime (--runtime, the --model-sha256 pin, refusals at start-up), that a
compiled model is loaded, served and run without scikit-learn or scipy (in sys.modules of the
real start-up path, and in the memory map of a running server), the session's thread count
from the cgroup CPU limit, and what is read of the graph without the onnx package.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from tests.support.compiled_models import compiled_here
from tests.support.paths import ROOT
from tests.support.processes import fresh_python
from tests.support.servers import ServerProcess, grpc_stub, server_env, servers_started

MODELS = ("iris", "forest", "churn")
CITIES = ["Lyon", "Oslo", "Porto"]
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


@dataclass
class Built:
    dirs: dict[str, Path]
    estimators: dict[str, Any]
    rows: dict[str, Any]  # what each model is asked about: an array, or a DataFrame


def churn_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.uniform(18, 80, n),
            "city": rng.choice(CITIES, n),
            "income": rng.normal(40_000, 12_000, n),
        }
    )


def build(root: Path) -> Built:
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    iris = load_iris()
    species = np.asarray(iris.target_names)[iris.target]
    frame = churn_frame(400, 0)
    labels = np.where((frame.age > 40) & (frame.city != "Oslo"), "leave", "stay")
    estimators = {
        "iris": LogisticRegression(max_iter=1000).fit(iris.data, iris.target),
        "forest": RandomForestClassifier(n_estimators=25, random_state=0).fit(iris.data, species),
        "churn": make_pipeline(
            ColumnTransformer(
                [
                    ("num", StandardScaler(), ["age", "income"]),
                    ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                ]
            ),
            GradientBoostingClassifier(n_estimators=30, random_state=0),
        ).fit(frame, labels),
    }
    dirs = {name: root / name for name in MODELS}
    for name, estimator in estimators.items():
        dirs[name].mkdir()
        joblib.dump(estimator, dirs[name] / "model.joblib")
    sample = root / "iris.csv"
    np.savetxt(sample, iris.data, delimiter=",")  # a linear model's rows cannot be made up
    with ThreadPoolExecutor(3) as pool:  # each compile imports scikit-learn and skl2onnx
        jobs = [
            pool.submit(compiled_here, dirs["iris"], "--sample", str(sample)),
            pool.submit(compiled_here, dirs["forest"]),
            pool.submit(compiled_here, dirs["churn"]),
        ]
        for job in jobs:
            job.result()
    rng = np.random.default_rng(3)
    rows = iris.data[::15] + rng.normal(0, 0.05, iris.data[::15].shape)
    return Built(dirs, estimators, {"iris": rows, "forest": rows, "churn": churn_frame(8, 7)})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("onnx-models"))


@pytest.fixture(scope="module")
def servers(
    built: Built, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProcess]]:
    """`NAME-onnx` (as is: model.onnx is there) and `NAME-native` for each model; the iris
    graph also batches concurrent requests."""
    tmp = tmp_path_factory.mktemp("onnx-servers")
    commands: dict[str, list[str]] = {}
    for name, model_dir in built.dirs.items():
        base = ["--predictor", "sklearn", "--model-dir", str(model_dir), "--model-name", name]
        commands[f"{name}-onnx"] = base + (
            ["--batching", "--max-latency-ms", "20"] if name == "iris" else []
        )
        commands[f"{name}-native"] = [*base, "--runtime", "native"]
    with servers_started(commands, tmp, timeout=180) as started:
        yield started
    for server in started.values():
        assert server.process is not None and server.process.returncode == 0, server.log()


# ---- requests -------------------------------------------------------------------------------


def v2_body(
    name: str,
    rows: Any,
    outputs: tuple[str, ...] = ("predict", "predict_proba"),
) -> dict[str, Any]:
    if isinstance(rows, pd.DataFrame):
        inputs = [
            {
                "name": c,
                "shape": [len(rows)],
                "datatype": "BYTES" if rows[c].dtype == object else "FP64",
                "data": rows[c].tolist(),
            }
            for c in rows.columns
        ]
    else:
        inputs = [
            {
                "name": "input-0",
                "shape": list(rows.shape),
                "datatype": "FP64",
                "data": rows.reshape(-1).tolist(),
            }
        ]
    return {"inputs": inputs, "outputs": [{"name": o} for o in outputs]}


def expected(built: Built, name: str, rows: Any = None) -> tuple[list[Any], np.ndarray]:
    rows = built.rows[name] if rows is None else rows
    estimator = built.estimators[name]
    return estimator.predict(rows).tolist(), estimator.predict_proba(rows)


def grpc_request(name: str, rows: Any) -> pb.ModelInferRequest:
    tensors = []
    if isinstance(rows, pd.DataFrame):
        for column in rows.columns:
            strings = rows[column].dtype == object
            tensor = pb.ModelInferRequest.InferInputTensor(
                name=column, datatype="BYTES" if strings else "FP64", shape=[len(rows)]
            )
            if strings:
                tensor.contents.bytes_contents.extend(v.encode() for v in rows[column])
            else:
                tensor.contents.fp64_contents.extend(rows[column].tolist())
            tensors.append(tensor)
    else:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="input-0", datatype="FP64", shape=list(rows.shape)
        )
        tensor.contents.fp64_contents.extend(rows.reshape(-1).tolist())
        tensors.append(tensor)
    wanted = [
        pb.ModelInferRequest.InferRequestedOutputTensor(name=o)
        for o in ("predict", "predict_proba")
    ]
    return pb.ModelInferRequest(model_name=name, inputs=tensors, outputs=wanted)


def raw_strings(raw: bytes) -> list[str]:
    """A BYTES tensor's raw form: each value a 4-byte little-endian length, then its bytes."""
    values, at = [], 0
    while at < len(raw):
        (size,) = struct.unpack_from("<I", raw, at)
        values.append(raw[at + 4 : at + 4 + size].decode())
        at += 4 + size
    return values


# ---- the served contract --------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_metadata_is_the_native_metadata_but_the_platform(
    servers: dict[str, ServerProcess], name: str
) -> None:
    onnx = httpx.get(f"{servers[f'{name}-onnx'].url}/v2/models/{name}").json()
    native = httpx.get(f"{servers[f'{name}-native'].url}/v2/models/{name}").json()
    assert (onnx.pop("platform"), native.pop("platform")) == (
        "kninfer-sklearn-onnx",
        "kninfer-sklearn",
    )
    assert onnx == native
    log = servers[f"{name}-onnx"].log()
    assert "serving model.onnx through ONNX Runtime" in log
    # The warm-up ran, on a row the graph takes: no warning about it.
    assert "warm-up" not in log
    breakdown = json.loads(log.split("cold start ", 1)[1].splitlines()[0])
    assert breakdown["warmup_ms"] > 0


@pytest.mark.parametrize("name", MODELS)
def test_v2_json_answers_what_the_estimator_does(
    built: Built, servers: dict[str, ServerProcess], name: str
) -> None:
    reply = httpx.post(
        f"{servers[f'{name}-onnx'].url}/v2/models/{name}/infer",
        json=v2_body(name, built.rows[name]),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    labels, proba = expected(built, name)
    assert outputs["predict"]["datatype"] == ("INT64" if name == "iris" else "BYTES")
    assert outputs["predict"]["data"] == labels
    assert outputs["predict_proba"]["shape"] == list(proba.shape)
    np.testing.assert_allclose(
        np.reshape(outputs["predict_proba"]["data"], proba.shape), proba, **TOLERANCE
    )
    # Without `outputs`, only `predict`: predict_proba is optional, as on the native server.
    plain = v2_body(name, built.rows[name])
    del plain["outputs"]
    reply = httpx.post(f"{servers[f'{name}-onnx'].url}/v2/models/{name}/infer", json=plain)
    assert [o["name"] for o in reply.json()["outputs"]] == ["predict"]


def test_v2_binary_tensors(built: Built, servers: dict[str, ServerProcess]) -> None:
    rows = built.rows["churn"]
    raw = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in rows["city"])
    doc = v2_body("churn", rows, ("predict",))
    doc["inputs"][1] = {
        "name": "city",
        "shape": [len(rows)],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(raw)},
    }
    doc["inputs"].append(doc["inputs"].pop(1))  # the binary tensor last
    header = json.dumps(doc).encode()
    reply = httpx.post(
        f"{servers['churn-onnx'].url}/v2/models/churn/infer",
        content=header + raw,
        headers={
            "inference-header-content-length": str(len(header)),
            "content-type": "application/octet-stream",
        },
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == expected(built, "churn")[0]

    iris = np.ascontiguousarray(built.rows["iris"])
    doc = {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(iris.shape),
                "datatype": "FP64",
                "parameters": {"binary_data_size": iris.nbytes},
            }
        ],
        "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
    }
    header = json.dumps(doc).encode()
    reply = httpx.post(
        f"{servers['iris-onnx'].url}/v2/models/iris/infer",
        content=header + iris.tobytes(),
        headers={
            "inference-header-content-length": str(len(header)),
            "content-type": "application/octet-stream",
        },
    )
    assert reply.status_code == 200, reply.text
    length = int(reply.headers["inference-header-content-length"])
    labels = np.frombuffer(reply.content[length:], dtype=np.int64)
    assert labels.tolist() == expected(built, "iris")[0]


@pytest.mark.parametrize("name", MODELS)
def test_v1_answers_what_the_estimator_does(
    built: Built, servers: dict[str, ServerProcess], name: str
) -> None:
    url = f"{servers[f'{name}-onnx'].url}/v1/models/{name}:predict"
    rows = built.rows[name]
    labels = expected(built, name)[0]
    if isinstance(rows, pd.DataFrame):
        bodies = [
            {"instances": rows.to_dict("records")},
            {"instances": rows.to_numpy(dtype=object).tolist()},
            {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))},
        ]
    else:
        bodies = [{"instances": rows.tolist()}]
    for body in bodies:
        reply = httpx.post(url, json=body)
        assert reply.json() == {"predictions": labels}, body


@pytest.mark.parametrize("name", MODELS)
def test_grpc_answers_what_the_estimator_does(
    built: Built, servers: dict[str, ServerProcess], name: str
) -> None:
    with grpc_stub(servers[f"{name}-onnx"].grpc_target) as stub:
        reply = stub.ModelInfer(grpc_request(name, built.rows[name]), timeout=30)
    assert [o.name for o in reply.outputs] == ["predict", "predict_proba"]
    labels, proba = expected(built, name)
    raw_labels, raw_proba = reply.raw_output_contents
    got = (
        np.frombuffer(raw_labels, dtype=np.int64).tolist()
        if name == "iris"
        else raw_strings(raw_labels)
    )
    assert got == labels
    np.testing.assert_allclose(
        np.frombuffer(raw_proba, dtype=np.float64).reshape(proba.shape), proba, **TOLERANCE
    )


def test_mlflow_scoring_and_cloudevents(built: Built, servers: dict[str, ServerProcess]) -> None:
    rows = built.rows["churn"]
    split = json.loads(rows.to_json(orient="split", index=False))
    scored = httpx.post(f"{servers['churn-onnx'].url}/invocations", json={"dataframe_split": split})
    assert scored.json() == {"predictions": expected(built, "churn")[0]}
    csv = httpx.post(
        f"{servers['churn-onnx'].url}/invocations",
        content=rows.to_csv(index=False),
        headers={"content-type": "text/csv"},
    )
    assert csv.json() == {"predictions": expected(built, "churn")[0]}
    body = v2_body("forest", built.rows["forest"], ("predict",))
    event = httpx.post(
        f"{servers['forest-onnx'].url}/",
        json=body,
        headers={
            "ce-specversion": "1.0",
            "ce-id": "e-1",
            "ce-source": "/tests",
            "ce-type": "dev.kninfer.inference.request",
        },
    )
    assert event.status_code == 200, event.text
    assert event.headers["ce-type"] == "dev.kninfer.inference.response"
    assert event.json()["outputs"][0]["data"] == expected(built, "forest")[0]


def test_concurrent_requests_share_batches(built: Built, servers: dict[str, ServerProcess]) -> None:
    """The iris graph is served with --batching: one-row requests sent together run as batches
    and each still gets its own row's answer."""
    rows = np.random.default_rng(11).uniform([4, 2, 1, 0], [8, 4.5, 7, 2.5], (24, 4))

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=servers["iris-onnx"].url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post("/v2/models/iris/infer", json=v2_body("iris", row[None, :]))
                    for row in rows
                )
            )

    labels, proba = expected(built, "iris", rows)
    for i, reply in enumerate(asyncio.run(fire())):
        assert reply.status_code == 200, reply.text
        outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
        assert outputs["predict"] == [labels[i]]
        np.testing.assert_allclose(outputs["predict_proba"], proba[i], **TOLERANCE)


def test_nan_the_graph_cannot_follow_scikit_learn_on_is_refused(
    built: Built, servers: dict[str, ServerProcess]
) -> None:
    """A forest routes NaN by what it learnt (scikit-learn >= 1.4); the converted trees do not,
    and would answer such a row differently. The compiled runtime refuses it as the native one
    refuses NaN for a model that takes none; the native forest answers."""
    row = np.asarray([[5.1, np.nan, 1.4, 0.2]])
    doc = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [1, 4],
                "datatype": "FP64",
                "parameters": {"binary_data_size": row.nbytes},
            }
        ]
    }
    header = json.dumps(doc).encode()
    headers = {"inference-header-content-length": str(len(header))}
    native = httpx.post(
        f"{servers['forest-native'].url}/v2/models/forest/infer",
        content=header + row.tobytes(),
        headers=headers,
    )
    assert native.json()["outputs"][0]["data"] == expected(built, "forest", row)[0]
    onnx = httpx.post(
        f"{servers['forest-onnx'].url}/v2/models/forest/infer",
        content=header + row.tobytes(),
        headers=headers,
    )
    assert onnx.status_code == 400, onnx.text
    assert onnx.json() == {
        "error": "input 'input-0' contains NaN or infinity; "
        "RandomForestClassifier needs finite numbers"
    }


# ---- choosing the runtime -------------------------------------------------------------------


def test_runtime_native_serves_the_joblib_beside_a_graph(
    built: Built, servers: dict[str, ServerProcess]
) -> None:
    for name in MODELS:
        assert (built.dirs[name] / "model.onnx").is_file()
        server = servers[f"{name}-native"]
        assert httpx.get(f"{server.url}/v2/models/{name}").json()["platform"] == "kninfer-sklearn"
        assert "ONNX Runtime" not in server.log()
        reply = httpx.post(
            f"{server.url}/v2/models/{name}/infer", json=v2_body(name, built.rows[name])
        )
        assert reply.json()["outputs"][0]["data"] == expected(built, name)[0]


def run_serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`kninfer serve` expected to fail at load: (exit status, its output). `env`: the
    process's environment, by default a test server's."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kninfer",
            "serve",
            "--host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            *args,
        ],
        env=server_env(tmp_path) if env is None else env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_runtime_onnx_without_a_graph_does_not_start(built: Built, tmp_path: Path) -> None:
    model_dir = tmp_path / "plain"
    model_dir.mkdir()
    shutil.copy(built.dirs["iris"] / "model.joblib", model_dir)
    code, output = run_serve(
        tmp_path, "--predictor", "sklearn", "--model-dir", str(model_dir), "--runtime", "onnx"
    )
    assert code == 1, output
    errors = [line for line in output.splitlines() if "model failed to load" in line]
    assert len(errors) == 1, output
    assert (
        f"no model.onnx in {model_dir.resolve()}: --runtime onnx serves a model compiled "
        f"with `kninfer compile {model_dir.resolve()}`; compile it first, or serve the "
        "scikit-learn file with --runtime auto or native" in errors[0]
    )


def test_a_graph_of_another_model_file_does_not_start(built: Built, tmp_path: Path) -> None:
    """The joblib was replaced (retrained) after the compile: serving the old graph for it would
    answer for a model nobody deploys any more."""
    model_dir = tmp_path / "retrained"
    shutil.copytree(built.dirs["iris"], model_dir)
    joblib.dump(built.estimators["forest"], model_dir / "model.joblib")
    code, output = run_serve(tmp_path, "--predictor", "sklearn", "--model-dir", str(model_dir))
    assert code == 1, output
    assert "model.onnx was compiled from model.joblib with sha256 " in output
    assert (
        f"run `kninfer compile {model_dir.resolve()}` again, or serve model.joblib with "
        "--runtime native" in output
    )


def load_in_process(model_dir: Path, **settings: Any) -> Any:
    from kninfer.predictors import predictor_class
    from kninfer.settings import ServeSettings

    serve = ServeSettings(model_dir=model_dir, predictor="sklearn", **settings)
    predictor = predictor_class("sklearn", model_dir, serve)("m", model_dir, serve)
    predictor.load()
    return predictor


def test_a_graph_without_its_record_does_not_load(built: Built, tmp_path: Path) -> None:
    """compile.json must be there and describe this very graph."""
    from kninfer.errors import ModelLoadError

    model_dir = tmp_path / "loose"
    shutil.copytree(built.dirs["forest"], model_dir)
    record = json.loads((model_dir / "compile.json").read_text())
    (model_dir / "compile.json").unlink()
    with pytest.raises(ModelLoadError, match="model.onnx in .* has no compile.json beside it"):
        load_in_process(model_dir)
    record["onnx"]["sha256"] = "0" * 64
    (model_dir / "compile.json").write_text(json.dumps(record))
    with pytest.raises(
        ModelLoadError,
        match=f"compile.json describes another graph \\(sha256 {'0' * 64}\\), not this model.onnx",
    ):
        load_in_process(model_dir)
    # --runtime native never reads either.
    assert type(load_in_process(model_dir, runtime="native")).__name__ == "SklearnPredictor"


def test_an_all_numeric_column_model_takes_its_columns_or_one_matrix(tmp_path: Path) -> None:
    """As the native model: one input per column, or `input-0` [N, n] holding them in order;
    the graph gets its columns either way (in process, through the request checks)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = churn_frame(200, 2)[["age", "income"]]
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, frame.age > 45)
    (tmp_path / "numbers").mkdir()
    joblib.dump(model, tmp_path / "numbers" / "model.joblib")
    compiled_here(tmp_path / "numbers")
    predictor = load_in_process(tmp_path / "numbers")
    assert [s.name for s in predictor.inputs] == ["age", "income"]
    rows = churn_frame(5, 9)[["age", "income"]]
    by_column = {c: rows[c].to_numpy() for c in rows.columns}
    as_matrix = {"input-0": rows.to_numpy()}
    for arrays in (by_column, as_matrix):
        predictor.check_arrays(arrays)
        answer = predictor.run(arrays, ["predict", "predict_proba"])
        assert answer["predict"].tolist() == model.predict(rows).tolist()
        np.testing.assert_allclose(answer["predict_proba"], model.predict_proba(rows), **TOLERANCE)
    from kninfer.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"input 'input-0', column 1 \('income'\) contains NaN"):
        predictor.check_arrays({"input-0": np.asarray([[30.0, np.nan]])})


def test_the_pin_names_the_file_to_serve(built: Built) -> None:
    """--model-sha256 under --runtime auto: the joblib's hash serves the joblib, the graph's
    the graph (a model.onnx dropped beside a pinned model does not replace it)."""
    from kninfer.predictors import sklearn_runtime
    from kninfer.settings import ServeSettings
    from kninfer.storage import sha256_of

    model_dir = built.dirs["forest"]
    for file, runtime in (("model.joblib", "native"), ("model.onnx", "onnx")):
        settings = ServeSettings(model_dir=model_dir, model_sha256=sha256_of(model_dir / file))
        assert sklearn_runtime(model_dir, settings) == runtime
    assert sklearn_runtime(model_dir, ServeSettings(model_dir=model_dir)) == "onnx"


def test_runtime_onnx_is_for_the_families_only(built: Built) -> None:
    """A predictor class of the user's own has no ONNX runtime: --runtime onnx says so."""
    from kninfer.errors import ModelLoadError
    from kninfer.predictors import predictor_class
    from kninfer.settings import ServeSettings

    own = "kninfer.predictors.sklearn:SklearnPredictor"
    settings = ServeSettings(model_dir=built.dirs["iris"], runtime="onnx", predictor=own)
    with pytest.raises(ModelLoadError, match=f"--predictor {own} has no ONNX runtime"):
        predictor_class(own, built.dirs["iris"], settings)


# ---- no scikit-learn -----------------------------------------------------------------------

NO_SKLEARN = """
import sys
from pathlib import Path
import numpy as np
from kninfer.predictors import predictor_class
from kninfer.settings import ServeSettings

settings = ServeSettings(model_dir=Path(sys.argv[1]), predictor="sklearn")
predictor = predictor_class("sklearn", settings.model_dir, settings)("m", settings.model_dir,
                                                                     settings)
predictor.load()
answer = predictor.run(predictor.warmup_inputs(), ["predict"])
print(type(predictor).__name__, answer["predict"].shape,
      sorted(m for m in ("sklearn", "scipy") if m in sys.modules))
"""


@pytest.mark.parametrize("name", MODELS)
def test_a_compiled_model_loads_and_runs_without_scikit_learn(built: Built, name: str) -> None:
    done = fresh_python(NO_SKLEARN, str(built.dirs[name]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["OnnxSklearnPredictor", "(1,)", "[]"]


SERVE_MODULES = """
import json, os, signal, sys, time
from pathlib import Path
from kninfer.server.startup import serve
from kninfer.settings import ServeSettings

def ready():
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

settings = ServeSettings(predictor="sklearn", model_dir=Path(sys.argv[1]), host="127.0.0.1",
                         http_port=int(sys.argv[2]), grpc_port=int(sys.argv[3]))
sys.argv = sys.argv[:1]
sys.exit(serve(settings, time.perf_counter(), on_ready=ready))
"""


@pytest.mark.parametrize("name", ["iris", "churn"])
def test_serving_a_compiled_model_imports_neither_scikit_learn_nor_scipy(
    built: Built, tmp_path: Path, name: str
) -> None:
    """The real start-up path (kninfer.server.startup.serve) up to ready: with a model.onnx in
    --model-dir nothing scikit-learn is preloaded, and the graph's load imports none of it."""
    from tests.support.servers import free_port

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVE_MODULES,
            str(built.dirs[name]),
            str(free_port()),
            str(free_port()),
        ],
        cwd=ROOT,
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    packages = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("[")))
    assert "onnxruntime" in packages
    # kserve imported whole (`make test-eager`, or a kserve version kninfer's import deferral
    # was not written for) imports pandas itself; scikit-learn and scipy it never imports.
    eager = os.environ.get("KNINFER_EAGER_IMPORTS", "") not in ("", "0")
    assert not ({"sklearn", "scipy"} | (set() if eager else {"pandas"})) & set(packages)


# As if scikit-learn, scipy and skops were not installed, as in the onnx image (make lock leaves
# them out of requirements/image-onnx.txt): `import sklearn` raises ModuleNotFoundError, and
# importlib.util.find_spec answers None. A sitecustomize module runs before kninfer's code does.
NOT_INSTALLED = """
import sys
for name in ("sklearn", "scipy", "skops"):
    sys.modules[name] = None
"""


def without_scikit_learn(tmp_path: Path) -> dict[str, str]:
    """server_env for a `kninfer serve` whose Python has no scikit-learn, scipy or skops."""
    site = tmp_path / "no-sklearn"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(NOT_INSTALLED)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return server_env(tmp_path, PYTHONPATH=path)


@pytest.mark.parametrize(
    "how",
    [
        # The directory is only known after start-up began: scikit-learn's preload is skipped.
        ("--storage-uri", "{dir}"),
        ("--storage-uri", "{dir}", "--runtime", "onnx"),
        ("--model-dir", "{dir}"),
    ],
    ids=["storage-uri-auto", "storage-uri-onnx", "model-dir-auto"],
)
def test_a_compiled_model_is_served_where_scikit_learn_is_not_installed(
    built: Built, tmp_path: Path, how: tuple[str, ...]
) -> None:
    model_dir = str(built.dirs["churn"])
    args = ["--predictor", "sklearn", *(a.format(dir=model_dir) for a in how)]
    server = ServerProcess(
        [*args, "--model-name", "churn"], without_scikit_learn(tmp_path), tmp_path / "serve.log"
    )
    try:
        server.start(timeout=120)
        reply = httpx.post(
            f"{server.url}/v2/models/churn/infer",
            json=v2_body("churn", built.rows["churn"]),
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        outputs = {o["name"]: o for o in reply.json()["outputs"]}
        labels, proba = expected(built, "churn")
        assert outputs["predict"]["data"] == labels
        np.testing.assert_allclose(
            np.reshape(outputs["predict_proba"]["data"], proba.shape), proba, **TOLERANCE
        )
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize("what", ["native", "default-model"])
def test_without_scikit_learn_what_needs_it_is_refused_in_one_line(
    built: Built, tmp_path: Path, what: str
) -> None:
    """The scikit-learn file (--runtime native, or a directory without model.onnx) and the
    embedded iris model need scikit-learn: where it is not installed, start-up ends with one line
    that says what to do instead, not a ModuleNotFoundError."""
    model_dir = built.dirs["churn"]
    args = {
        "native": ["--model-dir", str(model_dir), "--runtime", "native"],
        "default-model": ["--runtime", "onnx"],
    }[what]
    code, output = run_serve(
        tmp_path, "--predictor", "sklearn", *args, env=without_scikit_learn(tmp_path)
    )
    assert code == 1, output
    (error,) = [ln for ln in output.splitlines() if "model failed to load" in ln]
    expected_line = {
        "native": f"serving the scikit-learn model in {model_dir.resolve()} needs scikit-learn, "
        "which is not installed here; compile it with `kninfer compile` and serve its "
        "model.onnx (--runtime onnx), which needs only ONNX Runtime",
        "default-model": "the embedded iris model needs scikit-learn, which is not installed "
        "here; give --model-dir or --storage-uri: a model compiled by `kninfer compile` "
        "(model.onnx) is served without it",
    }[what]
    assert error.endswith(expected_line), error


def mapped_libraries(server: ServerProcess) -> str:
    assert server.process is not None
    return Path(f"/proc/{server.process.pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux's /proc")
def test_a_served_compiled_model_maps_neither_scikit_learn_nor_scipy(
    servers: dict[str, ServerProcess],
) -> None:
    """The served process itself: scikit-learn and scipy import compiled extension modules, so
    a process that imported them maps their files. The native server, which does, shows that
    the check sees them."""
    native = mapped_libraries(servers["churn-native"])
    assert "/sklearn/" in native and "/scipy/" in native
    for name in MODELS:
        maps = mapped_libraries(servers[f"{name}-onnx"])
        assert "/onnxruntime/" in maps
        assert "/sklearn/" not in maps and "/scipy/" not in maps, name


# ---- the session and the graph ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "200000 100000\n"}, 2),
        ({"cpu.max": "150000 100000\n"}, 1),  # whole CPUs, rounded down
        ({"cpu.max": "20000 100000\n"}, 1),  # at least one
        ({"cpu.max": "max 100000\n"}, None),  # no limit
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_threads_follow_the_containers_cpu_limit(
    tmp_path: Path, files: dict[str, str], limit: int | None
) -> None:
    import os

    from kninfer.predictors.onnx_runtime import container_cpus

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    schedulable = len(os.sched_getaffinity(0))
    assert container_cpus(tmp_path) == (schedulable if limit is None else min(limit, schedulable))


def test_graph_facts_of_the_compiled_pipeline(built: Built) -> None:
    """What serving reads of the churn graph without the onnx package: the encoder's categories
    for the string column (the warm-up row's value), which inputs may be NaN (none: no imputer)
    and whose unknown categories are refused (none: handle_unknown="ignore")."""
    from kninfer.predictors.onnx_runtime import graph_facts

    facts = graph_facts((built.dirs["churn"] / "model.onnx").read_bytes())
    assert facts.categories == {"city": CITIES}
    assert facts.nan_inputs == frozenset() and facts.strict == frozenset()
