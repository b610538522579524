"""A scikit-learn model file that changes under a running server, and outputs that cannot be.

A joblib model is memory-mapped from its file by default (--joblib-mmap): rewriting that file in
place made a running server answer 200 with a retrained model's weights (same hyperparameters) or
with every probability null (other hyperparameters). These tests rewrite the served file exactly
so, in the same inode, and see a 503 naming the cause on every transport and readiness turn
false; a new file renamed over the path, and any write under a model copied into memory
(--no-joblib-mmap), leave the loaded model answering what it answers in process. A classifier
whose probabilities or labels come out NaN is a 500, never a 200 of nulls.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import httpx
import joblib
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.support.servers import grpc_stub, server_env

ROWS = load_iris().data[[0, 60, 120, 75]]
CHANGED = (
    "model 'm' is not ready: its file model.joblib changed under the server since it was "
    "loaded, and its arrays are memory-mapped from that file; kninfer answers nothing "
    "from a changed file: roll out a new revision (or restart the server) to serve the "
    "new model"
)


def fitted(kind: str) -> LogisticRegression:
    """The served model, or a retrained one: on noisier data with the same hyperparameters
    (same pickle layout, other weights), or with other hyperparameters (a longer pickle, so the
    served model's array offsets land on other bytes)."""
    data = load_iris()
    if kind == "served":
        return LogisticRegression(max_iter=500).fit(data.data, data.target)
    noisy = data.data + np.random.default_rng(0).normal(0, 0.8, data.data.shape)
    if kind == "same-hyperparameters":
        return LogisticRegression(max_iter=500).fit(noisy, data.target)
    return LogisticRegression(C=0.05, class_weight={0: 1.0, 1: 2.0, 2: 1.0}, max_iter=2000).fit(
        noisy, data.target
    )


def proba_request(server: Any) -> httpx.Response:
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(ROWS.shape),
                "datatype": "FP64",
                "data": ROWS.reshape(-1).tolist(),
            }
        ],
        "outputs": [{"name": "predict_proba"}],
    }
    return httpx.post(f"{server.url}/v2/models/m/infer", json=body, timeout=30)


def served_proba(server: Any) -> np.ndarray:
    reply = proba_request(server)
    assert reply.status_code == 200, reply.text
    return np.asarray(reply.json()["outputs"][0]["data"]).reshape(len(ROWS), -1)


def serve(start_server: Any, model_dir: Path, *extra: str) -> Any:
    return start_server(
        "--predictor", "sklearn", "--model-dir", str(model_dir), "--model-name", "m", *extra
    )


def model_dir_with(tmp_path: Path, model: Any) -> Path:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    joblib.dump(model, model_dir / "model.joblib")
    return model_dir


def write_in_place(target: Path, source: Path, how: str) -> None:
    """The new dump's bytes written into the served file's own inode."""
    inode = target.stat().st_ino
    if how == "r+b":
        with open(target, "r+b") as f:
            f.write(source.read_bytes())
    else:
        shutil.copyfile(source, target)  # truncates, then writes: `cp new model.joblib`
    assert target.stat().st_ino == inode


@pytest.mark.parametrize(
    ("retrained", "how"),
    [
        ("same-hyperparameters", "r+b"),
        ("other-hyperparameters", "r+b"),
        ("other-hyperparameters", "copyfile"),
    ],
)
def test_a_memory_mapped_file_rewritten_in_place_is_refused(
    start_server: Any, tmp_path: Path, retrained: str, how: str
) -> None:
    served, new = fitted("served"), fitted(retrained)
    model_dir = model_dir_with(tmp_path, served)
    joblib.dump(new, tmp_path / "new.joblib")
    if retrained == "same-hyperparameters":
        # The case that silently switched weights: a file of the same size.
        assert (tmp_path / "new.joblib").stat().st_size == (
            model_dir / "model.joblib"
        ).stat().st_size
    server = serve(start_server, model_dir)
    np.testing.assert_allclose(served_proba(server), served.predict_proba(ROWS), rtol=1e-12)
    mapped = joblib.load(model_dir / "model.joblib", mmap_mode="r")  # as the server holds it

    write_in_place(model_dir / "model.joblib", tmp_path / "new.joblib", how)
    # What answering from the mapped file would have sent (the two reports).
    wrong = mapped.predict_proba(ROWS)
    if retrained == "same-hyperparameters":
        np.testing.assert_allclose(wrong, new.predict_proba(ROWS), rtol=1e-12)
    else:
        assert np.isnan(wrong).all()

    reply = proba_request(server)
    assert (reply.status_code, reply.json()) == (503, {"error": CHANGED})
    v1 = httpx.post(f"{server.url}/v1/models/m:predict", json={"instances": ROWS.tolist()})
    assert (v1.status_code, v1.json()) == (503, {"error": CHANGED})
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input-0", datatype="FP64", shape=list(ROWS.shape)
    )
    tensor.contents.fp64_contents.extend(ROWS.reshape(-1).tolist())
    with grpc_stub(server.grpc_target) as stub, pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(pb.ModelInferRequest(model_name="m", inputs=[tensor]), timeout=30)
    assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.UNAVAILABLE, CHANGED)
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503
    assert httpx.get(f"{server.url}/v2/models/m/ready").json() == {"name": "m", "ready": False}
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    # Logged once, when first seen (the gRPC transport also logs each 5xx it answers).
    logged = [line for line in server.log().splitlines() if f"ERROR kninfer: {CHANGED}" in line]
    assert len(logged) == 1, server.log()


def test_a_new_file_renamed_over_the_path_keeps_the_loaded_model(
    start_server: Any, tmp_path: Path
) -> None:
    """Write-then-rename leaves the mapped inode as it was: the loaded model answers on."""
    served, new = fitted("served"), fitted("other-hyperparameters")
    model_dir = model_dir_with(tmp_path, served)
    server = serve(start_server, model_dir)
    joblib.dump(new, model_dir / "model.joblib.part")
    os.replace(model_dir / "model.joblib.part", model_dir / "model.joblib")

    answered = served_proba(server)
    np.testing.assert_allclose(answered, served.predict_proba(ROWS), rtol=1e-12)
    assert not np.allclose(answered, new.predict_proba(ROWS))
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def test_a_model_copied_into_memory_is_untouched_by_later_writes(
    start_server: Any, tmp_path: Path
) -> None:
    """--no-joblib-mmap reads the whole file at load: a rename over it and a write into it both
    leave the loaded model answering as it does in process."""
    served = fitted("served")
    model_dir = model_dir_with(tmp_path, served)
    server = serve(start_server, model_dir, "--no-joblib-mmap")
    joblib.dump(fitted("same-hyperparameters"), model_dir / "model.joblib.part")
    os.replace(model_dir / "model.joblib.part", model_dir / "model.joblib")
    np.testing.assert_allclose(served_proba(server), served.predict_proba(ROWS), rtol=1e-12)
    joblib.dump(fitted("other-hyperparameters"), tmp_path / "new.joblib")
    write_in_place(model_dir / "model.joblib", tmp_path / "new.joblib", "r+b")
    np.testing.assert_allclose(served_proba(server), served.predict_proba(ROWS), rtol=1e-12)
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def broken_weights() -> LogisticRegression:
    model = fitted("served")
    model.coef_[1, 2] = np.nan
    return model


def test_nan_probabilities_are_a_500_never_a_200(start_server: Any, tmp_path: Path) -> None:
    model = broken_weights()
    assert np.isnan(model.predict_proba(ROWS)).any()  # what the server would have sent as nulls
    server = serve(start_server, model_dir_with(tmp_path, model), "--no-warmup")
    reply = proba_request(server)
    assert (reply.status_code, reply.json()) == (
        500,
        {
            "error": (
                "model 'm' produced non-finite probabilities (NaN or infinity) in 'predict_proba'; "
                "its weights are broken"
            )
        },
    )


def test_nan_probabilities_fail_the_warm_up(tmp_path: Path) -> None:
    model_dir = model_dir_with(tmp_path, broken_weights())
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
            "--predictor",
            "sklearn",
            "--model-dir",
            str(model_dir),
            "--model-name",
            "m",
        ],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "produced non-finite probabilities (NaN or infinity) in 'predict_proba'" in output


def test_nan_class_labels_are_a_server_fault(tmp_path: Path) -> None:
    from kninfer.errors import status_of
    from kninfer.predictors.sklearn import SklearnPredictor
    from kninfer.settings import ServeSettings

    data = load_iris()
    model = LogisticRegression(max_iter=500).fit(data.data, data.target.astype(float))
    model.classes_ = np.array([0.0, np.nan, 2.0])
    assert np.isnan(model.predict(ROWS)).any()
    model_dir = model_dir_with(tmp_path, model)
    predictor = SklearnPredictor("m", model_dir, ServeSettings(model_dir=model_dir))
    predictor.load_model()
    with pytest.raises(Exception) as caught:
        predictor.run({"input-0": ROWS}, ["predict"])
    assert status_of(caught.value) == 500
    assert str(caught.value) == (
        "model 'm' produced non-finite class labels (NaN or infinity) "
        "in 'predict'; its weights are broken"
    )
    assert predictor.run({"input-0": ROWS[:1]}, ["predict"])["predict"].tolist() == [0.0]
