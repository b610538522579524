"""Does a PyTorch model exported to ONNX (`torch.onnx.export(..., dynamo=True)`) and run by ONNX
Runtime beat kninfer's PyTorch paths on the CPU? (issue 20: offer it through `kninfer compile`
only if it wins.)

Two networks with two named inputs and two named outputs (a shared trunk over the concatenated
inputs, a classification head and an embedding head), small (hidden 256, 2 layers) and large
(hidden 2048, 4 layers), are built and exported in bench/.venvs/torch-onnx-export (torch, the
same CPU build as the project's, plus onnxscript, which the dynamo exporter needs and kninfer
does not ship): the state_dict with its module source (kninfer's eager path), a `torch.export`
program (`model.pt2`) and `model.onnx`. Then, in the project's environment and pinned to one
core, each is run as kninfer serves it: the eager module and the `.pt2` through kninfer's
PyTorch predictor (`run()`: numpy in, `torch.inference_mode()`, numpy out), and the graph
through an ONNX Runtime session made by kninfer's `inference_session`. Torch and ONNX Runtime
both get one thread, the core they have. The answers are compared first (1e-4). Per call:
median over rounds of the mean of N calls, batch 1 and 64, runtimes taking turns. Cold start:
a fresh process pinned to the same core, from spawn to the first answer (import, load, one
call), median of 3.

    .venv/bin/python -m bench.torch_onnx [--rounds 5]

Writes bench/results/torch-onnx.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import SERVER_CPU, git_commit, pinned
from bench.servers import BENCH, ROOT, VENV_REQUIREMENTS, venv_python

RESULTS = BENCH / "results"
SIZES = {"small": (256, 2), "large": (2048, 4)}
FEATURES, CONTEXT, CLASSES, EMBED = 64, 16, 10, 32
BATCHES = (1, 64)
RUNTIMES = ("eager", "pt2", "onnx")


def _filled(source: str) -> str:
    """A script's source with the network's sizes written in."""
    sizes = {"FEATURES": FEATURES, "CONTEXT": CONTEXT, "CLASSES": CLASSES, "EMBED": EMBED}
    for name, value in sizes.items():
        source = source.replace(f"@{name}@", str(value))
    return source


MODULE_SOURCE = _filled("""
import torch


class TwoHeads(torch.nn.Module):
    def __init__(self, hidden: int = @HIDDEN@, layers: int = @LAYERS@) -> None:
        super().__init__()
        sizes = [@FEATURES@ + @CONTEXT@] + [hidden] * layers
        blocks = []
        for a, b in zip(sizes, sizes[1:]):
            blocks += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        self.trunk = torch.nn.Sequential(*blocks)
        self.classes = torch.nn.Linear(hidden, @CLASSES@)
        self.embedding = torch.nn.Linear(hidden, @EMBED@)

    def forward(self, features: torch.Tensor, context: torch.Tensor) -> dict:
        shared = self.trunk(torch.cat([features, context], dim=1))
        return {"logits": self.classes(shared), "embedding": self.embedding(shared)}
""")

# Runs in the export virtualenv: argv = model dir, hidden, layers.
EXPORT_SCRIPT = _filled("""
import sys, warnings
from pathlib import Path
import torch
sys.path.insert(0, sys.argv[1])
from two_heads import TwoHeads
out = Path(sys.argv[1])
torch.manual_seed(0)
model = TwoHeads(int(sys.argv[2]), int(sys.argv[3])).eval()
torch.save(model.state_dict(), out / "model.pt")
example = (torch.randn(2, @FEATURES@), torch.randn(2, @CONTEXT@))
batch = torch.export.Dim("batch", min=1, max=4096)
shapes = {"features": {0: batch}, "context": {0: batch}}
torch.export.save(torch.export.export(model, example, dynamic_shapes=shapes), out / "model.pt2")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    program = torch.onnx.export(
        model, example, dynamo=True, dynamic_shapes=shapes,
        input_names=["features", "context"], output_names=["logits", "embedding"],
    )
program.save(str(out / "model.onnx"))
""")

# Runs pinned in a fresh project-venv process: argv = runtime, model dir. Prints seconds.
COLD_SCRIPT = _filled("""
import sys, time
started = time.perf_counter()
runtime, model_dir = sys.argv[1], sys.argv[2]
import numpy as np
feeds = {
    "features": np.ones((1, @FEATURES@), np.float32),
    "context": np.ones((1, @CONTEXT@), np.float32),
}
if runtime == "onnx":
    from pathlib import Path
    from kninfer.predictors.onnx_runtime import inference_session
    session = inference_session(Path(model_dir, "model.onnx").read_bytes(), threads=1)
    session.run(["logits", "embedding"], feeds)
else:
    import torch
    torch.set_num_threads(1)
    from pathlib import Path
    from kninfer.predictors import predictor_class
    from kninfer.settings import ServeSettings
    extra = {"torch_module": "two_heads:TwoHeads"} if runtime == "eager" else {}
    d = Path(model_dir, runtime)
    settings = ServeSettings(predictor="pytorch", model_dir=d, warmup=False, **extra)
    predictor = predictor_class("pytorch", d, settings)("m", d, settings)
    predictor.load()
    predictor.run(feeds, ["logits", "embedding"])
print(time.perf_counter() - started)
""")


def log(message: str) -> None:
    print(f"[torch-onnx {time.strftime('%H:%M:%S')}] {message}", flush=True)


def export(work: Path, size: str) -> Path:
    """The model directory: eager/ (state_dict + module), pt2/, and model.onnx."""
    hidden, layers = SIZES[size]
    model_dir = work / size
    model_dir.mkdir(parents=True)
    # kninfer's eager path builds the class with no arguments: the sizes are its defaults.
    source = MODULE_SOURCE.replace("@HIDDEN@", str(hidden)).replace("@LAYERS@", str(layers))
    (model_dir / "two_heads.py").write_text(source)
    python = venv_python("torch-onnx-export", log)
    subprocess.run(
        [str(python), "-c", EXPORT_SCRIPT, str(model_dir), str(hidden), str(layers)],
        check=True,
        cwd=work,
    )
    eager, pt2 = model_dir / "eager", model_dir / "pt2"
    eager.mkdir()
    pt2.mkdir()
    (model_dir / "model.pt").rename(eager / "model.pt")
    (eager / "two_heads.py").write_text(source)
    (eager / "kninfer.yaml").write_text(
        "inputs:\n"
        f"  - {{name: features, datatype: FP32, shape: [-1, {FEATURES}]}}\n"
        f"  - {{name: context, datatype: FP32, shape: [-1, {CONTEXT}]}}\n"
        "outputs:\n"
        f"  - {{name: logits, datatype: FP32, shape: [-1, {CLASSES}]}}\n"
        f"  - {{name: embedding, datatype: FP32, shape: [-1, {EMBED}]}}\n"
    )
    (model_dir / "model.pt2").rename(pt2 / "model.pt2")
    return model_dir


# Runs pinned in the project venv: argv = model dir, rounds. Prints JSON {runtime: {batch: us}}.
TIMING_SCRIPT = _filled("""
import json, statistics, sys, time
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
from kninfer.predictors import predictor_class
from kninfer.predictors.onnx_runtime import inference_session
from kninfer.settings import ServeSettings

model_dir, rounds = Path(sys.argv[1]), int(sys.argv[2])
names = ["logits", "embedding"]
runners = {}
for runtime in ("eager", "pt2"):
    d = model_dir / runtime
    extra = {"torch_module": "two_heads:TwoHeads"} if runtime == "eager" else {}
    settings = ServeSettings(predictor="pytorch", model_dir=d, **extra)
    predictor = predictor_class("pytorch", d, settings)("m", d, settings)
    predictor.load()
    runners[runtime] = predictor.run
session = inference_session((model_dir / "model.onnx").read_bytes(), threads=1)
runners["onnx"] = lambda feeds, outputs: dict(zip(outputs, session.run(outputs, feeds)))

rng = np.random.default_rng(0)
worst = 0.0
results = {r: {} for r in runners}
for batch in (1, 64):
    feeds = {"features": rng.normal(size=(batch, @FEATURES@)).astype(np.float32),
             "context": rng.normal(size=(batch, @CONTEXT@)).astype(np.float32)}
    answers = {r: run(feeds, names) for r, run in runners.items()}
    for r in ("pt2", "onnx"):
        for n in names:
            worst = max(worst, float(np.abs(answers[r][n] - answers["eager"][n]).max()))
    calls = 2000 if batch == 1 else 300
    samples = {r: [] for r in runners}
    for index in range(rounds):
        order = list(runners) if index % 2 == 0 else list(reversed(list(runners)))
        for r in order:
            run = runners[r]
            for _ in range(calls // 10):
                run(feeds, names)
            started = time.perf_counter()
            for _ in range(calls):
                run(feeds, names)
            samples[r].append((time.perf_counter() - started) / calls * 1e6)
    for r in runners:
        results[r][str(batch)] = round(statistics.median(samples[r]), 2)
print(json.dumps({"per_call_us": results, "max_abs_diff": worst}))
""")


def per_call(model_dir: Path, rounds: int) -> dict[str, Any]:
    out = subprocess.run(
        pinned(SERVER_CPU, [sys.executable, "-c", TIMING_SCRIPT, str(model_dir), str(rounds)]),
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise SystemExit(f"timing {model_dir.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold(model_dir: Path, runtime: str, runs: int) -> float:
    times = []
    env = {**os.environ, "PYTHONPATH": str(model_dir / "eager")}
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            pinned(SERVER_CPU, [sys.executable, "-c", COLD_SCRIPT, runtime, str(model_dir)]),
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=env,
        )
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    lines = [
        "# A PyTorch model through ONNX Runtime against kninfer's PyTorch paths (CPU)",
        "",
        f"Command: `{doc['command']}`; kninfer {doc['commit']}; torch {doc['torch']}, "
        f"onnxruntime {doc['onnxruntime']}, onnxscript {doc['onnxscript']}; one core, one "
        f"thread for each runtime; {doc['rounds']} rounds taking turns, medians. Per call: "
        "kninfer's `run()` for eager and `.pt2` (numpy in and out), `session.run` for the "
        "graph. Cold start: a fresh process, spawn to first answer (imports, load, one call), "
        "median of 3. Lower is better.",
        "",
        "| model | metric | eager | .pt2 | onnx | onnx / .pt2 | onnx / eager |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size, result in doc["models"].items():
        hidden, layers = SIZES[size]
        label = f"{size} (hidden {hidden}, {layers} layers)"
        for batch in BATCHES:
            got = {r: result["per_call_us"][r][str(batch)] for r in RUNTIMES}
            lines.append(
                f"| {label} | batch {batch}, per call (us) | {got['eager']:g} | {got['pt2']:g} "
                f"| {got['onnx']:g} | {got['onnx'] / got['pt2']:.3f} | "
                f"{got['onnx'] / got['eager']:.3f} |"
            )
        c = result["cold_s"]
        lines.append(
            f"| {label} | cold start (s) | {c['eager']:g} | {c['pt2']:g} | {c['onnx']:g} | "
            f"{c['onnx'] / c['pt2']:.3f} | {c['onnx'] / c['eager']:.3f} |"
        )
        lines.append(
            f"| {label} | largest difference from eager | | | {result['max_abs_diff']:.2g} | | |"
        )
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.torch_onnx", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kninfer-torch-onnx-"))
    models = {}
    for size in SIZES:
        log(f"exporting {size}")
        model_dir = export(work, size)
        log(f"timing {size}")
        result = per_call(model_dir, args.rounds)
        if result["max_abs_diff"] > 1e-4:
            raise SystemExit(f"{size}: the graph answers differently ({result['max_abs_diff']})")
        result["cold_s"] = {r: cold(model_dir, r, args.cold_runs) for r in RUNTIMES}
        models[size] = result
        log(f"{size}: {result}")
    export_python = venv_python("torch-onnx-export", log)
    versions = subprocess.run(
        [
            str(export_python),
            "-c",
            "import torch, onnxscript; print(torch.__version__, onnxscript.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    import onnxruntime

    doc = {
        "command": "python -m bench.torch_onnx " + " ".join(argv or sys.argv[1:]),
        "commit": git_commit(ROOT, "kninfer", "bench"),
        "torch": versions[0],
        "onnxscript": versions[1],
        "onnxruntime": onnxruntime.__version__,
        "rounds": args.rounds,
        "export_requirements": VENV_REQUIREMENTS["torch-onnx-export"](),
        "models": models,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "torch-onnx.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_markdown(doc, args.out / "torch-onnx.md")
    print((args.out / "torch-onnx.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
