"""A realistic model compiled by the real `kninfer compile`, for the tests that serve its graph
(tests/deploy/test_deploy_compiled.py on the host, tests/test_images.py in the onnx image).

`kninfer_compile(model_dir, *args)` runs the command, as a user would, in a process of its own;
`compiled_here(model_dir, *args)` also insists that it wrote the graph.

`churn(directory)` fits a DataFrame pipeline (a numeric column with gaps behind an imputer and a
scaler, two string columns one-hot encoded, a gradient-boosting classifier with string labels),
saves it as `model.joblib`, and compiles it beside itself (`model.onnx`, `compile.json`). The
returned estimator answers in this process, with scikit-learn, what the graph should answer.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = {"age": "FP64", "city": "BYTES", "income": "FP64", "plan": "BYTES"}
CITIES = ["Lyon", "Oslo", "Porto", "Quito"]
PLANS = ["basic", "plus", "pro"]


@dataclass
class Compiled:
    directory: Path  # model.joblib, model.onnx, compile.json
    estimator: Any  # the fitted pipeline, for the answers the graph must give
    rows: Any  # a DataFrame of rows the model never saw

    def v2_body(self, rows: Any = None, outputs: tuple[str, ...] = ()) -> dict[str, Any]:
        """A V2 request of `rows` (default: the held-out rows), one input per column."""
        rows = self.rows if rows is None else rows
        body: dict[str, Any] = {
            "inputs": [
                {
                    "name": name,
                    "shape": [len(rows)],
                    "datatype": datatype,
                    "data": rows[name].tolist(),
                }
                for name, datatype in COLUMNS.items()
            ]
        }
        if outputs:
            body["outputs"] = [{"name": name} for name in outputs]
        return body


def frame(n: int, seed: int) -> tuple[Any, np.ndarray]:
    """(rows, labels): customers with an income that has gaps, and whether they leave."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, n),
            "city": rng.choice(CITIES, n),
            "income": rng.normal(40_000, 12_000, n),
            "plan": rng.choice(PLANS, n),
        }
    )
    rows.loc[rng.random(n) < 0.08, "income"] = np.nan
    score = (
        (rows["age"] - 45) / 10
        + (rows["plan"] == "basic") * 1.5
        - rows["income"].fillna(40_000) / 20_000
        + rng.normal(0, 0.5, n)
    )
    return rows, np.where(score > -1.0, "leave", "stay")


def churn(directory: Path) -> Compiled:
    """Fit, save and compile the churn model into `directory` (created)."""
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rows, labels = frame(500, 0)
    estimator = make_pipeline(
        ColumnTransformer(
            [
                ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
                ("strings", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
            ]
        ),
        GradientBoostingClassifier(n_estimators=30, random_state=0),
    ).fit(rows, labels)
    directory.mkdir(parents=True)
    joblib.dump(estimator, directory / "model.joblib")
    compiled_here(directory)
    held_out, _ = frame(12, 7)
    # A JSON request has no NaN: the held-out rows have every income.
    held_out["income"] = held_out["income"].fillna(40_000.0)
    return Compiled(directory, estimator, held_out)


def kninfer_compile(model_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kninfer compile MODEL_DIR ARGS...` in a process of its own; its output and status."""
    return subprocess.run(
        [sys.executable, "-m", "kninfer", "compile", str(model_dir), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def compiled_here(model_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kninfer compile`, which must succeed and write model.onnx and compile.json."""
    done = kninfer_compile(model_dir, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (model_dir / "model.onnx").is_file() and (model_dir / "compile.json").is_file()
    return done


def save_mlflow_iris(path: Path, **options: Any) -> Any:
    """A logistic regression on iris saved by `mlflow.sklearn.save_model` at `path` (a tensor
    signature, an input example of 15 rows for `kninfer compile` to verify on; `options` go to
    save_model); the estimator, to answer in this process."""
    import warnings

    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=500).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(
            estimator,
            str(path),
            signature=infer_signature(x, estimator.predict(x)),
            input_example=x[::10],
            **options,
        )
    return estimator
