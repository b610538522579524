"""What loading an MLflow model of the lightgbm and xgboost flavors costs, and what it imports.

    .venv/bin/python -m bench.mlflow_flavors [--runs 3] [--work bench/.work/mlflow-flavors]

Three models trained on one 2,000-row, 12-feature table and saved as a user would: a LightGBM
classifier through the scikit-learn API (`LGBMClassifier`: MLflow 3 saves it with skops), a native
LightGBM `Booster`, and an XGBoost classifier (saved as `.ubj`). For each: the CPU seconds (user +
system of the child) of a process that imports `mlflow.pyfunc` and calls `load_model`, median of
--runs, in this project's venv (which carries torch), and which of skops, torch, sklearn and
scipy that process imported. Writes bench/results/mlflow-flavors.{json,md}; docs/mlflow.md
includes the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.mlflow_footprint import median_cpu, model_bytes, printed_json
from bench.servers import BENCH

RESULTS = BENCH / "results"
SAVE = """
import sys
import lightgbm as lgb
import mlflow.lightgbm
import mlflow.xgboost
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.models import infer_signature

root = sys.argv[1]
rng = np.random.default_rng(0)
X = pd.DataFrame(rng.normal(size=(2000, 12)), columns=[f"f{i}" for i in range(12)])
y = (X.f0 + X.f1 * X.f2 > 0).astype(int)
sk = lgb.LGBMClassifier(n_estimators=100, verbose=-1).fit(X, y)
mlflow.lightgbm.save_model(sk, f"{root}/lightgbm-sklearn-api",
                           signature=infer_signature(X, sk.predict(X)))
booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), 100)
mlflow.lightgbm.save_model(booster, f"{root}/lightgbm-booster",
                           signature=infer_signature(X, booster.predict(X)))
xg = xgb.XGBClassifier(n_estimators=100).fit(X, y)
mlflow.xgboost.save_model(xg, f"{root}/xgboost", signature=infer_signature(X, xg.predict(X)))
"""
LOAD = "import sys, mlflow.pyfunc; mlflow.pyfunc.load_model(sys.argv[1])"
IMPORTED = (
    "import sys, json, mlflow.pyfunc; mlflow.pyfunc.load_model(sys.argv[1]); "
    "print(json.dumps([m for m in ('skops', 'torch', 'sklearn', 'scipy') "
    "if m in sys.modules]))"
)
MODELS = {
    "lightgbm-sklearn-api": "LightGBM, scikit-learn API (`LGBMClassifier`, saved with skops)",
    "lightgbm-booster": "LightGBM, native `Booster` (`model.lgb`)",
    "xgboost": "XGBoost classifier (`model.ubj`)",
}


def measure(work: Path, runs: int) -> dict[str, Any]:
    import subprocess

    work.mkdir(parents=True, exist_ok=True)
    python = Path(sys.executable)
    subprocess.run([str(python), "-c", SAVE, str(work)], check=True, capture_output=True)
    rows = []
    for name, what in MODELS.items():
        path = work / name
        rows.append(
            {
                "model": name,
                "what": what,
                "bytes": model_bytes(path),
                "load_cpu_s": median_cpu(python, runs, LOAD, str(path)),
                "imports": printed_json(python, IMPORTED, str(path)),
            }
        )
    return {"command": f"python -m bench.mlflow_flavors --runs {runs}", "runs": runs, "rows": rows}


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    lines = [
        "# MLflow flavors: load cost",
        "",
        f"Command: `{doc['command']}`, in the project's venv (torch installed). CPU s: user "
        f"+ system of a process that imports `mlflow.pyfunc` and loads the model, median of "
        f"{doc['runs']}.",
        "",
        "<!-- --8<-- [start:flavors] -->",
        "| model | size | load CPU s | imports |",
        "| --- | ---: | ---: | --- |",
    ]
    for row in doc["rows"]:
        lines.append(
            f"| {row['what']} | {row['bytes'] / 1024:.0f} KB | {row['load_cpu_s']} | "
            f"{', '.join(row['imports']) or '-'} |"
        )
    lines += ["<!-- --8<-- [end:flavors] -->", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=BENCH / ".work" / "mlflow-flavors")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    doc = measure(args.work, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mlflow-flavors.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_markdown(doc, args.out / "mlflow-flavors.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
