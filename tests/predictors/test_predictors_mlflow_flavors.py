"""MLflow models of the lightgbm and xgboost flavors, saved in tmp_path as a user would, served by
`--predictor mlflow` and compared with the same model loaded in this process
(`mlflow.pyfunc.load_model`); and the message a flavor whose package is missing gets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.servers import ServerProcess, server_env

pytest.importorskip("mlflow.pyfunc", reason="the mlflow extra is not installed")
pytest.importorskip("lightgbm", reason="the lightgbm extra is not installed")
pytest.importorskip("xgboost", reason="the xgboost extra is not installed")

FEATURES = [f"f{i}" for i in range(6)]


def table(rows: int, seed: int) -> Any:
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import lightgbm as lgb
    import mlflow.lightgbm
    import mlflow.xgboost
    import xgboost as xgb
    from mlflow.models import infer_signature

    root = tmp_path_factory.mktemp("flavors")
    X = table(400, 0)
    y = (X.f0 + X.f1 * X.f2 > 0).astype(np.int64)
    # The native Booster (model.lgb): the sklearn-API LGBMClassifier is saved with skops, whose
    # load walks every scikit-learn module (docs/mlflow.md#flavors), seconds this suite skips.
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 8}, lgb.Dataset(X, y), 30
    )
    mlflow.lightgbm.save_model(
        booster, root / "lightgbm", signature=infer_signature(X, booster.predict(X))
    )
    classifier = xgb.XGBClassifier(n_estimators=30, max_depth=3).fit(X, y)
    mlflow.xgboost.save_model(
        classifier, root / "xgboost", signature=infer_signature(X, classifier.predict(X))
    )
    return {"lightgbm": root / "lightgbm", "xgboost": root / "xgboost"}


@pytest.fixture(scope="module", params=["lightgbm", "xgboost"])
def served(
    request: pytest.FixtureRequest,
    models: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, ServerProcess]]:
    flavor = request.param
    tmp = tmp_path_factory.mktemp(f"serve-{flavor}")
    proc = ServerProcess(
        ["--predictor", "mlflow", "--model-dir", str(models[flavor]), "--model-name", flavor],
        server_env(tmp),
        tmp / "server.log",
    )
    proc.start(timeout=180)
    yield flavor, proc
    assert proc.stop() == 0, proc.log()


def test_flavor_answers_as_in_process(
    served: tuple[str, ServerProcess], models: dict[str, Path]
) -> None:
    import mlflow.pyfunc

    flavor, proc = served
    query = table(5, 1)
    expected = np.asarray(mlflow.pyfunc.load_model(str(models[flavor])).predict(query))
    scoring = httpx.post(
        f"{proc.url}/invocations",
        json={"dataframe_split": query.to_dict(orient="split", index=False)},
    )
    assert scoring.status_code == 200, scoring.text
    np.testing.assert_allclose(np.asarray(scoring.json()["predictions"]), expected, rtol=1e-6)
    v2 = httpx.post(
        f"{proc.url}/v2/models/{flavor}/infer",
        json={
            "inputs": [
                {"name": name, "shape": [5], "datatype": "FP64", "data": query[name].tolist()}
                for name in FEATURES
            ]
        },
    )
    assert v2.status_code == 200, v2.text
    (output,) = v2.json()["outputs"]
    np.testing.assert_allclose(
        np.asarray(output["data"]).reshape(expected.shape), expected, rtol=1e-6
    )


def test_a_flavor_whose_package_is_missing_says_which_and_how(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    """catboost is not installed: an MLmodel whose loader is mlflow.catboost names it."""
    import shutil
    import subprocess
    import sys

    import yaml

    model = tmp_path / "catboost-model"
    shutil.copytree(models["xgboost"], model)
    mlmodel = yaml.safe_load((model / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["loader_module"] = "mlflow.catboost"
    mlmodel["flavors"]["catboost"] = {
        "catboost_version": "1.2.8",
        "code": None,
        "data": "model.cb",
        "model_type": "CatBoostClassifier",
        "save_format": "cbm",
    }
    (model / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    pytest.importorskip("mlflow.catboost")
    if __import__("importlib").util.find_spec("catboost") is not None:
        pytest.skip("catboost is installed here")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kninfer",
            "serve",
            "--predictor",
            "mlflow",
            "--model-dir",
            str(model),
            "--http-port",
            "0",
        ],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert (
        f"the MLflow model in {model} needs the Python package 'catboost' (its flavor "
        "mlflow.catboost imports it), which is not installed beside kninfer: pip install "
        "catboost; for an image, build with --build-arg EXTRA_PACKAGES='catboost==VERSION'"
    ) in done.stderr, done.stderr[-2000:]


def test_the_message_names_the_extra_for_known_flavors(tmp_path: Path) -> None:
    from kninfer.predictors.mlflow import missing_package

    (tmp_path / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.lightgbm\n"
    )
    assert missing_package(tmp_path, "lightgbm.basic") == (
        f"the MLflow model in {tmp_path} needs the Python package 'lightgbm' (its flavor "
        "mlflow.lightgbm imports it), which is not installed beside kninfer: pip install "
        "'kninfer[lightgbm]'; for an image, build with --build-arg "
        "EXTRA_PACKAGES='lightgbm==VERSION' (docs/mlflow.md#flavors)"
    )
