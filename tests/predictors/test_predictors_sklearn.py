"""The scikit-learn predictor on models built into tmp_path, served by real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.support.servers import server_env


def infer(server, rows, outputs=None, model="m"):
    flat = np.asarray(rows, dtype=np.float64)
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(flat.shape),
                "datatype": "FP64",
                "data": flat.reshape(-1).tolist(),
            }
        ]
    }
    if outputs:
        body["outputs"] = [{"name": o} for o in outputs]
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)


def serve_dir(start_server, model_dir: Path, *extra: str, env=None):
    return start_server(
        "--predictor",
        "sklearn",
        "--model-dir",
        str(model_dir),
        "--model-name",
        "m",
        *extra,
        env=env,
    )


def test_regressor_pipeline_metadata_and_predictions(start_server, tmp_path):
    data = load_diabetes()
    model = make_pipeline(StandardScaler(), LinearRegression()).fit(data.data, data.target)
    (tmp_path / "reg").mkdir()
    joblib.dump(model, tmp_path / "reg" / "model.joblib")
    server = serve_dir(start_server, tmp_path / "reg")
    meta = httpx.get(f"{server.url}/v2/models/m").json()
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 10]}]
    assert meta["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    reply = infer(server, data.data[:5])
    assert reply.status_code == 200
    output = reply.json()["outputs"][0]
    assert output["datatype"] == "FP64"
    np.testing.assert_allclose(output["data"], model.predict(data.data[:5]))


def test_string_labels_skops_and_any_file_name(start_server, tmp_path):
    import skops.io as sio

    data = load_iris()
    labels = np.asarray(data.target_names)[data.target]
    model = LogisticRegression(max_iter=500).fit(data.data, labels)
    (tmp_path / "s").mkdir()
    sio.dump(model, tmp_path / "s" / "species.skops")
    server = serve_dir(start_server, tmp_path / "s")
    meta = httpx.get(f"{server.url}/v2/models/m").json()
    assert meta["outputs"][0] == {"name": "predict", "datatype": "BYTES", "shape": [-1]}
    reply = infer(server, data.data[[0, 60, 120]], outputs=["predict", "predict_proba"])
    assert reply.status_code == 200, reply.text
    predict, proba = reply.json()["outputs"]
    assert predict["data"] == model.predict(data.data[[0, 60, 120]]).tolist()
    assert proba["shape"] == [3, 3]
    v1 = httpx.post(
        f"{server.url}/v1/models/m:predict", json={"instances": data.data[[0]].tolist()}
    )
    assert v1.json() == {"predictions": ["setosa"]}


def run_serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    """`kninfer serve` expected to fail at load: returns (exit code, combined output)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kninfer",
            "serve",
            "--host",
            "127.0.0.1",
            "--http-port",
            "0",
            *args,
        ],
        env=server_env(tmp_path, **(env or {})),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout + result.stderr


def test_untrusted_skops_types_refused(tmp_path):
    import skops.io as sio
    from sklearn.base import BaseEstimator

    (tmp_path / "u").mkdir()

    class Custom(BaseEstimator):
        def predict(self, x):
            return x

    sio.dump(Custom(), tmp_path / "u" / "model.skops")
    code, output = run_serve(tmp_path, "--predictor", "sklearn", "--model-dir", str(tmp_path / "u"))
    assert code == 1
    assert "contains types skops does not trust" in output
    assert "KNINFER_SKOPS_TRUSTED" in output


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("empty", "no scikit-learn model in"),
        ("two-files", "several model files in"),
        ("missing", "does not exist or is not a directory"),
        ("not-estimator", "holds a dict, not an estimator"),
        ("corrupt", "could not load"),
    ],
)
def test_load_failures_exit_nonzero_with_one_line(tmp_path, layout, message):
    model_dir = tmp_path / "model"
    if layout != "missing":
        model_dir.mkdir()
    if layout == "two-files":
        joblib.dump(LogisticRegression(), model_dir / "a.joblib")
        joblib.dump(LogisticRegression(), model_dir / "b.pkl")
    elif layout == "not-estimator":
        joblib.dump({"weights": [1, 2]}, model_dir / "model.joblib")
    elif layout == "corrupt":
        (model_dir / "model.joblib").write_bytes(b"not a pickle")
    code, output = run_serve(tmp_path, "--predictor", "sklearn", "--model-dir", str(model_dir))
    assert code == 1
    errors = [line for line in output.splitlines() if "model failed to load" in line]
    assert len(errors) == 1 and message in errors[0], output


def test_model_dir_outside_root_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    joblib.dump(LogisticRegression(), outside / "model.joblib")
    root = tmp_path / "models"
    root.mkdir()
    (root / "escape").symlink_to(outside)
    code, output = run_serve(
        tmp_path,
        "--model-dir",
        str(root / "escape"),
        "--model-root",
        str(root),
        "--predictor",
        "sklearn",
    )
    assert code == 1
    assert "outside the configured model root" in output


def test_model_file_symlink_escape_refused(tmp_path):
    outside = tmp_path / "secret.joblib"
    joblib.dump(LogisticRegression(), outside)
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "model.joblib").symlink_to(outside)
    code, output = run_serve(tmp_path, "--predictor", "sklearn", "--model-dir", str(model_dir))
    assert code == 1
    assert "resolves outside" in output


def test_storage_uri_file_scheme_and_remote_without_extra(start_server, tmp_path, iris_estimator):
    model_dir = tmp_path / "by-uri"
    model_dir.mkdir()
    joblib.dump(iris_estimator, model_dir / "model.pkl")
    server = start_server(
        "--predictor", "sklearn", "--storage-uri", f"file://{model_dir}", "--model-name", "m"
    )
    assert infer(server, [[5.1, 3.5, 1.4, 0.2]]).json()["outputs"][0]["data"] == [0]
    code, output = run_serve(tmp_path, "--storage-uri", "gs://bucket/model")
    assert code == 1
    assert "needs the kserve-storage package" in output


SLOW_MODEL = textwrap.dedent(
    """
    import time
    import numpy as np
    from sklearn.base import BaseEstimator, ClassifierMixin

    class SlowClassifier(ClassifierMixin, BaseEstimator):
        def fit(self, x, y):
            self.classes_ = np.unique(y)
            self.n_features_in_ = x.shape[1]
            return self

        def predict(self, x):
            if x[0, 0] > 0:
                time.sleep(float(x[0, 0]))
            return np.zeros(len(x), dtype=np.int64)
    """
)


def test_slow_prediction_does_not_block_the_server(start_server, tmp_path):
    """kserve#3950: a synchronous predict on the event loop stalls probes. Not here."""
    (tmp_path / "slowmodel.py").write_text(SLOW_MODEL)
    sys.path.insert(0, str(tmp_path))
    try:
        import slowmodel  # type: ignore[import-not-found]

        estimator = slowmodel.SlowClassifier().fit(np.zeros((2, 2)), np.array([0, 1]))
        (tmp_path / "slow").mkdir()
        joblib.dump(estimator, tmp_path / "slow" / "model.joblib")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slowmodel", None)
    server = serve_dir(start_server, tmp_path / "slow", env={"PYTHONPATH": str(tmp_path)})

    slow_result: dict[str, httpx.Response] = {}
    worker = threading.Thread(target=lambda: slow_result.update(r=infer(server, [[3.0, 0.0]])))
    started = time.monotonic()
    worker.start()
    time.sleep(0.5)  # the slow prediction is now running
    live = httpx.get(f"{server.url}/v2/health/live", timeout=5)
    fast = infer(server, [[0.0, 0.0]])
    answered_after = time.monotonic() - started
    worker.join(30)
    assert live.status_code == 200 and fast.status_code == 200
    assert answered_after < 2.5, f"liveness/fast infer waited {answered_after:.1f}s"
    assert slow_result["r"].status_code == 200
    assert time.monotonic() - started >= 3.0


def test_startup_logs_cold_start_breakdown(iris_server):
    import json

    lines = [line for line in iris_server.log().splitlines() if "cold start" in line]
    assert len(lines) == 1
    breakdown = json.loads(lines[0].split("cold start ", 1)[1])
    for key in ("imports_ms", "model_load_ms", "warmup_ms", "ready_ms"):
        assert isinstance(breakdown[key], float) and breakdown[key] >= 0


def test_audited_skops_model_loads_pinned_joblib_and_refuses_a_swap(start_server, tmp_path):
    """`kninfer audit` loads model.skops with skops' type audit and writes a joblib copy;
    served with --model-sha256 that copy is loaded (fast), and a copy swapped for another file
    is refused before it is unpickled."""
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    data = load_iris()
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(data.data, data.target)
    model_dir = tmp_path / "forest"
    model_dir.mkdir()
    sio.dump(forest, model_dir / "model.skops")
    refused = subprocess.run(
        [sys.executable, "-m", "kninfer", "audit", str(model_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1
    assert "contains types skops does not trust: sklearn.tree._tree.Tree" in refused.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kninfer",
            "audit",
            str(model_dir),
            "--skops-trusted",
            "sklearn.tree._tree.Tree",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    digest = done.stdout.split("sha256 ", 1)[1].split()[0]
    assert (model_dir / "model.audited.joblib").is_file() and len(digest) == 64

    server = serve_dir(start_server, model_dir, "--model-sha256", digest)
    reply = infer(server, data.data[:5])
    assert reply.json()["outputs"][0]["data"] == forest.predict(data.data[:5]).tolist()
    server.stop()

    joblib.dump(
        LogisticRegression().fit(data.data, data.target), model_dir / "model.audited.joblib"
    )  # swapped in storage
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kninfer",
            "serve",
            "--predictor",
            "sklearn",
            "--model-dir",
            str(model_dir),
            "--model-sha256",
            digest,
            "--http-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=server_env(tmp_path),
    )
    assert proc.returncode == 1
    assert "model.audited.joblib has sha256 " in proc.stderr
    assert f"not the pinned {digest} (--model-sha256); refusing to load it" in proc.stderr


def test_v1_message_for_a_model_of_unknown_width_shows_no_wildcard(
    start_server: Any, tmp_path: Path
) -> None:
    """An estimator that does not state n_features_in_ (as older pickles do) is served as
    [-1, -1]; a V1 body it cannot take says "rows of numbers", never "rows of -1 numbers"."""
    data = load_iris()
    model = LogisticRegression(max_iter=500).fit(data.data, data.target)
    del model.n_features_in_
    (tmp_path / "w").mkdir()
    joblib.dump(model, tmp_path / "w" / "model.joblib")
    server = serve_dir(start_server, tmp_path / "w")
    meta = httpx.get(f"{server.url}/v2/models/m").json()
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, -1]}]
    url = f"{server.url}/v1/models/m:predict"
    good = httpx.post(url, json={"instances": data.data[:3].tolist()})
    assert good.json() == {"predictions": model.predict(data.data[:3]).tolist()}
    for instances in ([["a", "b", "c", "d"]], [[1.0, 2.0, 3.0, 4.0], [1.0]]):
        reply = httpx.post(url, json={"instances": instances})
        assert reply.status_code == 400
        assert reply.json() == {
            "error": "'instances' must be a list of rows of numbers for input 'input-0'"
        }
