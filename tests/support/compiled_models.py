"""A realistic model compiled by the real `kninfer compile`, for the tests that serve its graph
(tests/deploy/test_deploy_compiled.py on the host, tests/test_images.py in the onnx image).

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
    done = subprocess.run(
        [sys.executable, "-m", "kninfer", "compile", str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    held_out, _ = frame(12, 7)
    # A JSON request has no NaN: the held-out rows have every income.
    held_out["income"] = held_out["income"].fillna(40_000.0)
    return Compiled(directory, estimator, held_out)
