"""What loading an MLflow model of the `onnx` flavor costs through ONNX Runtime and through
`mlflow.pyfunc`, and what each imports.

    .venv/bin/python -m bench.mlflow_onnx [--runs 3] [--work bench/.work/mlflow-onnx]

Two models saved by `mlflow.onnx.save_model` with an input example, as a user would: a PyTorch
network of two inputs (16 and 2 features, two hidden layers of 256) exported by
`torch.onnx.export(dynamo=False)`, whose weights MLflow writes as external data; and a
scikit-learn DataFrame pipeline (a OneHotEncoder, a scaler, 100 boosted trees) converted by
skl2onnx. For each, the CPU seconds (user + system of the child) of a process that builds
kninfer's mlflow-family predictor for the directory and loads it, with the warm-up prediction
`kninfer serve` runs before its ports open: with `--runtime auto` (ONNX Runtime,
kninfer.predictors.mlflow_onnx) and with `--runtime native` (`mlflow.pyfunc`); and, as a
floor, a bare process that imports onnxruntime, builds a default session and runs it once.
Median of --runs, in this project's venv (which carries torch), with what each process
imported. CPU time, not wall time: the machine these runs share is noisy. Writes
bench/results/mlflow-onnx.{json,md}; docs/mlflow.md includes the table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.mlflow_footprint import median_cpu, model_bytes, printed_json
from bench.servers import BENCH

RESULTS = BENCH / "results"
SAVE = """
import io, sys, warnings
import mlflow.onnx
import numpy as np
import onnx
import pandas as pd
import torch
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

warnings.simplefilter("ignore")
root = sys.argv[1]


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Linear(16, 256)
        self.context = torch.nn.Linear(2, 256)
        self.hidden = torch.nn.Linear(256, 256)
        self.head = torch.nn.Linear(256, 3)

    def forward(self, features, context):
        h = torch.relu(self.features(features) + self.context(context))
        scores = self.head(torch.relu(self.hidden(h)))
        return scores, scores.sum(dim=1, keepdim=True)


torch.manual_seed(0)
buffer = io.BytesIO()
names = ["features", "context", "scores", "total"]
torch.onnx.export(Net().eval(), (torch.zeros(1, 16), torch.zeros(1, 2)), buffer, dynamo=False,
                  input_names=names[:2], output_names=names[2:],
                  dynamic_axes={n: {0: "batch"} for n in names}, opset_version=17)
rng = np.random.default_rng(0)
example = {"features": rng.normal(size=(2, 16)).astype(np.float32),
           "context": rng.normal(size=(2, 2)).astype(np.float32)}
mlflow.onnx.save_model(onnx.load_from_string(buffer.getvalue()), f"{root}/torch",
                       input_example=example)

frame = pd.DataFrame({"plan": rng.choice(["basic", "plus", "pro"], 2000),
                      "age": rng.uniform(18, 80, 2000).round(),
                      "monthly_fee": rng.uniform(5, 90, 2000).round(2)})
churned = ((frame.plan == "pro") ^ (frame.monthly_fee > 50)).astype(int)
pipeline = make_pipeline(
    ColumnTransformer([("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                       ("numbers", StandardScaler(), ["age", "monthly_fee"])]),
    GradientBoostingClassifier(n_estimators=100, random_state=0)).fit(frame, churned)
mlflow.onnx.save_model(to_onnx(pipeline, frame[:1], target_opset={"": 17, "ai.onnx.ml": 3}),
                       f"{root}/pipeline", input_example=frame.head(2))
"""
# Builds the predictor `kninfer serve --predictor mlflow --runtime RUNTIME` builds and loads it,
# with the warm-up prediction it runs before the ports open.
KNINFER = """
import json, sys
from pathlib import Path
from kninfer.predictors import predictor_class
from kninfer.settings import ServeSettings

model_dir = Path(sys.argv[1])
settings = ServeSettings(model_dir=model_dir, predictor="mlflow", runtime=sys.argv[2])
predictor = predictor_class("mlflow", model_dir, settings)("m", model_dir, settings)
assert predictor.load()
print(json.dumps([m for m in ("mlflow", "onnx", "torch", "sklearn", "scipy") if m in sys.modules]))
"""
FLOOR = """
import glob, json, sys
import numpy as np
import onnxruntime as ort

session = ort.InferenceSession(sys.argv[1] + "/model.onnx")
feed = {}
for arg in session.get_inputs():
    shape = [1 if not isinstance(d, int) else d for d in arg.shape]
    if arg.type == "tensor(string)":
        feed[arg.name] = np.full(shape, "basic", dtype=object)
    else:
        feed[arg.name] = np.zeros(shape, dtype=np.float64 if "double" in arg.type else np.float32)
session.run(None, feed)
print(json.dumps([m for m in ("mlflow", "onnx", "torch", "sklearn", "scipy") if m in sys.modules]))
"""
MODELS = {
    "torch": "PyTorch network, 2 inputs (`torch.onnx.export`, external weights)",
    "pipeline": "scikit-learn DataFrame pipeline, 100 trees (skl2onnx, ZipMap)",
}
WAYS = {
    "auto": ("kninfer, `--runtime auto` (ONNX Runtime)", KNINFER, ("auto",)),
    "native": ("kninfer, `--runtime native` (`mlflow.pyfunc`)", KNINFER, ("native",)),
    "floor": ("bare ONNX Runtime session, one run", FLOOR, ()),
}


def measure(work: Path, runs: int) -> dict[str, Any]:
    shutil.rmtree(work, ignore_errors=True)  # mlflow save_model refuses an existing directory
    work.mkdir(parents=True)
    python = Path(sys.executable)
    subprocess.run([str(python), "-c", SAVE, str(work)], check=True, capture_output=True)
    rows = []
    for name, what in MODELS.items():
        path = work / name
        size = model_bytes(path)
        for way, (how, code, args) in WAYS.items():
            rows.append(
                {
                    "model": name,
                    "what": what,
                    "bytes": size,
                    "way": way,
                    "how": how,
                    "cpu_s": median_cpu(python, runs, code, str(path), *args),
                    "imports": printed_json(python, code, str(path), *args),
                }
            )
    return {"command": f"python -m bench.mlflow_onnx --runs {runs}", "runs": runs, "rows": rows}


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    lines = [
        "# MLflow onnx flavor: load cost by runtime",
        "",
        f"Command: `{doc['command']}`, in the project's venv (torch installed), on a shared "
        "2-core machine. CPU s: user + system of a process that loads the model and runs "
        f"the warm-up prediction `kninfer serve` runs before its ports open (the floor: "
        f"builds a session and runs it once), median of {doc['runs']}; "
        "the ratio is to `--runtime auto` on the same model.",
        "",
        "<!-- --8<-- [start:runtimes] -->",
        "| model | size | loaded by | CPU s | vs auto | imports |",
        "| --- | ---: | --- | ---: | ---: | --- |",
    ]
    auto = {row["model"]: row["cpu_s"] for row in doc["rows"] if row["way"] == "auto"}
    for row in doc["rows"]:
        ratio = row["cpu_s"] / auto[row["model"]] if auto[row["model"]] else float("nan")
        lines.append(
            f"| {row['what']} | {row['bytes'] / 1024:.0f} KB | {row['how']} | {row['cpu_s']} | "
            f"{ratio:.2f}x | {', '.join(row['imports']) or '-'} |"
        )
    lines += ["<!-- --8<-- [end:runtimes] -->", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=BENCH / ".work" / "mlflow-onnx")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    doc = measure(args.work, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mlflow-onnx.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_markdown(doc, args.out / "mlflow-onnx.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
