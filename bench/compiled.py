"""A compiled model (model.onnx through ONNX Runtime) against the same model in scikit-learn.

Three models are trained here, saved with joblib and compiled with `kninfer compile`:

- `iris-lr`: LogisticRegression on iris (an array model, INT64 labels);
- `forest`: RandomForestClassifier of `--trees` trees on iris (string labels);
- `churn-gbm`: Pipeline(ColumnTransformer(OneHotEncoder on a string column, StandardScaler on
  two numeric ones), GradientBoostingClassifier), fitted on a DataFrame;
- `torch-net`: a PyTorch network of two inputs and two outputs (a trunk of two hidden layers of
  256 over both inputs, a classification head and an embedding head), its state_dict beside its
  class, served by the pytorch family (`native` is torch running the eager module).

Each directory (joblib and model.onnx side by side) is served three ways: by kninfer with
`--runtime onnx` and with `--runtime native`, and by the floor, a bare ASGI app that decodes the
same JSON and runs the same model.onnx in an ONNX Runtime session set up as kninfer's
(bench/peers/bare_onnx.py: no validation, errors or metrics, so no real server beats it). The
server is pinned to one core and wrk to the other (bench.harness), and measured as bench.ab
measures: cold start (process spawn to the first successful V2 answer), then throughput and
latency under wrk, V2 JSON, at three points: batch 1 with 8 connections, batch 64 with 8, and
batch 1 with 32 (for p99 under more concurrency). For the array models, the cold start of
today's floor for scikit-learn (bench/peers/bare_asgi.py: bare ASGI + joblib + `predict`) is
measured too. Within a round the servers take turns, the first one alternating between rounds,
so machine drift lands on all; read the ratios onnx / native and onnx / floor.

    .venv/bin/python -m bench.compiled [--rounds 3] [--seconds 8] [--cold-runs 3] [--trees 150]
    .venv/bin/python -m bench.compiled --quick --models iris-lr --out /tmp/compiled  # harness check

Writes OUT/compiled.json (every sample) and OUT/compiled.md (medians), OUT being bench/results,
and then draws docs/img/compiled.svg.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import load
from bench.harness import git_commit
from bench.servers import BENCH, ROOT, ServerSpec, uvicorn_peer

RESULTS = BENCH / "results"
PICTURE = ROOT / "docs" / "img" / "compiled.svg"
MODELS = ("iris-lr", "forest", "churn-gbm", "torch-net")
# The family each model is served by (`--predictor`).
FAMILY = {"torch-net": "pytorch"}
# kninfer's two runtimes, and the bare ONNX Runtime floor.
RUNTIMES = ("onnx", "native", "floor")
# Today's floor for scikit-learn (bare ASGI + predict): cold start only, for the array models
# (its decoder takes one matrix input).
SKLEARN_FLOOR = "sklearn-floor"
# (name, rows per request, wrk connections)
POINTS = (("b1", 1, 8), ("b64", 64, 8), ("c32", 1, 32))
CITIES = ["Lyon", "Oslo", "Porto"]


def log(message: str) -> None:
    print(f"[compiled {time.strftime('%H:%M:%S')}] {message}", flush=True)


def python() -> Path:
    venv = ROOT / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


# ---- the models -----------------------------------------------------------------------------


def _churn_frame(n: int, seed: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.uniform(18, 80, n),
            "city": rng.choice(CITIES, n),
            "income": rng.normal(40_000, 12_000, n),
        }
    )


def _iris_lr() -> tuple[Any, Callable[[int], bytes]]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    model = LogisticRegression(max_iter=1000).fit(data.data, data.target)
    return model, lambda n: _matrix_body(data.data, n)


def _forest(trees: int) -> tuple[Any, Callable[[int], bytes]]:
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    data = load_iris()
    species = np.asarray(data.target_names)[data.target]
    model = RandomForestClassifier(n_estimators=trees, random_state=0).fit(data.data, species)
    return model, lambda n: _matrix_body(data.data, n)


def _churn_gbm() -> tuple[Any, Callable[[int], bytes]]:
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = _churn_frame(2000, 0)
    labels = np.where((frame.age > 40) & (frame.city != "Oslo"), "leave", "stay")
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["age", "income"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ]
        ),
        GradientBoostingClassifier(n_estimators=100, random_state=0),
    ).fit(frame, labels)

    def body(n: int) -> bytes:
        rows = _churn_frame(n, 1)
        inputs = [
            {
                "name": c,
                "shape": [n],
                "datatype": "BYTES" if c == "city" else "FP64",
                "data": rows[c].tolist(),
            }
            for c in rows.columns
        ]
        return json.dumps({"inputs": inputs}).encode()

    return model, body


TORCH_NET = """
import torch


class TwoHeads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = torch.nn.Sequential(
            torch.nn.Linear(80, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU()
        )
        self.classes = torch.nn.Linear(256, 10)
        self.embedding = torch.nn.Linear(256, 32)

    def forward(self, features: torch.Tensor, context: torch.Tensor) -> dict:
        shared = self.trunk(torch.cat([features, context], dim=1))
        return {"logits": self.classes(shared), "embedding": self.embedding(shared)}
"""
TORCH_YAML = """module: two_heads:TwoHeads
inputs:
  - {name: features, datatype: FP32, shape: [-1, 64]}
  - {name: context, datatype: FP32, shape: [-1, 16]}
"""


def _torch_net(model_dir: Path) -> Callable[[int], bytes]:
    """The network's directory (state_dict, class, kninfer.yaml), saved by a child process of
    the project's Python (torch stays out of this one), and its request bodies."""
    import numpy as np

    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "two_heads.py").write_text(TORCH_NET)
    (model_dir / "kninfer.yaml").write_text(TORCH_YAML)
    save = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); from two_heads import TwoHeads; "
        "torch.manual_seed(0); torch.save(TwoHeads().state_dict(), sys.argv[1] + '/model.pth')"
    )
    subprocess.run([str(python()), "-c", save, str(model_dir)], check=True)
    rng = np.random.default_rng(0)

    def body(n: int) -> bytes:
        inputs = [
            {
                "name": name,
                "shape": [n, width],
                "datatype": "FP32",
                "data": rng.standard_normal(n * width).round(4).tolist(),
            }
            for name, width in (("features", 64), ("context", 16))
        ]
        return json.dumps({"inputs": inputs}).encode()

    return body


def _matrix_body(rows: Any, n: int) -> bytes:
    """A V2 request of the first `n` iris rows."""
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [n, 4],
                    "datatype": "FP64",
                    "data": [float(v) for row in rows[:n] for v in row],
                }
            ]
        }
    ).encode()


def build(name: str, work: Path, trees: int, sample: Path) -> tuple[Path, dict[int, Path]]:
    """The model's directory (model.joblib and the compiled model.onnx) and its request bodies
    by rows per request."""
    import joblib

    makers: dict[str, Callable[[], tuple[Any, Callable[[int], bytes]]]] = {
        "iris-lr": _iris_lr,
        "forest": lambda: _forest(trees),
        "churn-gbm": _churn_gbm,
    }
    model_dir = work / name
    if name == "torch-net":
        body = _torch_net(model_dir)
    else:
        model, body = makers[name]()
        model_dir.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, model_dir / "model.joblib")
    # A linear model's rows cannot be made up from what it learnt: verify on the iris rows.
    extra = ["--sample", str(sample)] if name == "iris-lr" else []
    done = subprocess.run(
        [str(python()), "-m", "kninfer", "compile", str(model_dir), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"kninfer compile {name} failed:\n{done.stdout}{done.stderr}")
    bodies = {}
    for rows in sorted({rows for _, rows, _ in POINTS}):
        bodies[rows] = work / f"{name}-b{rows}.json"
        bodies[rows].write_bytes(body(rows))
    return model_dir, bodies


# ---- measuring ------------------------------------------------------------------------------


def spec_for(name: str, runtime: str, model_dir: Path, work: Path) -> ServerSpec:
    if runtime in ("floor", SKLEARN_FLOOR):
        module = "bare_onnx:app" if runtime == "floor" else "bare_asgi:app"
        return ServerSpec(
            f"{name}-{runtime}",
            f"{name} ({runtime})",
            lambda h, g, m: uvicorn_peer(python(), module, h),
            env={"PYTHONUNBUFFERED": "1", "MODEL_DIR": str(model_dir)},
            cwd=work,
        )
    # --model-name iris: the path bench.load's cold start and wrk post to.
    return ServerSpec(
        f"{name}-{runtime}",
        f"{name} ({runtime})",
        lambda h, g, m: [
            str(python()),
            "-m",
            "kninfer",
            "serve",
            "--host",
            "127.0.0.1",
            "--predictor",
            FAMILY.get(name, "sklearn"),
            "--model-dir",
            str(model_dir),
            "--model-name",
            "iris",
            "--runtime",
            runtime,
            "--http-port",
            str(h),
            "--grpc-port",
            str(g),
        ],
        env={"PYTHONUNBUFFERED": "1", "XDG_CACHE_HOME": str(work / "cache")},
        cwd=ROOT,
    )


def under_load(
    spec: ServerSpec,
    bodies: dict[int, Path],
    seconds: float,
    warmup: float,
    work: Path,
    wrk_path: str,
) -> dict[str, dict[str, Any]]:
    """wrk at each of POINTS against one server process, each after `warmup` s of warm-up."""
    run = load.start(spec, work)
    try:
        load.wait_first_inference(run, bodies[1].read_bytes(), 120)
        results = {}
        for point, rows, connections in POINTS:
            if warmup > 0:
                load.wrk(wrk_path, run.http_port, bodies[rows], connections, warmup)
            result = load.wrk(wrk_path, run.http_port, bodies[rows], connections, seconds)
            if result["errors"]:
                raise SystemExit(f"{spec.label} at {point}: wrk saw {result['errors']} errors")
            results[point] = result
        return results
    finally:
        load.stop(run)


def measure(
    names: list[str],
    dirs: dict[str, tuple[Path, dict[int, Path]]],
    args: argparse.Namespace,
    work: Path,
    wrk_path: str,
) -> dict[str, dict[str, dict[str, list[float]]]]:
    samples: dict[str, dict[str, dict[str, list[float]]]] = {name: {} for name in names}
    for index in range(args.rounds):
        order = RUNTIMES if index % 2 == 0 else tuple(reversed(RUNTIMES))
        for name in names:
            model_dir, bodies = dirs[name]
            first = bodies[1].read_bytes()
            if name in ("iris-lr", "forest"):  # the sklearn floor decodes one matrix input
                spec = spec_for(name, SKLEARN_FLOOR, model_dir, work)
                got = samples[name].setdefault(SKLEARN_FLOOR, {})
                for _ in range(args.cold_runs):
                    seconds, _breakdown = load.cold_start(spec, first, work, 120)
                    got.setdefault("cold_s", []).append(round(seconds, 4))
            for runtime in order:
                spec = spec_for(name, runtime, model_dir, work)
                got = samples[name].setdefault(runtime, {})
                for _ in range(args.cold_runs):
                    seconds, _breakdown = load.cold_start(spec, first, work, 120)
                    got.setdefault("cold_s", []).append(round(seconds, 4))
                results = under_load(spec, bodies, args.seconds, args.warmup, work, wrk_path)
                for point, result in results.items():
                    got.setdefault(f"{point}_rps", []).append(result["rps"])
                    got.setdefault(f"{point}_p50_ms", []).append(result["p50_us"] / 1000)
                    got.setdefault(f"{point}_p99_ms", []).append(result["p99_us"] / 1000)
                log(
                    f"round {index + 1} {spec.label}: cold {got['cold_s'][-1]:.3f} s, "
                    + ", ".join(
                        f"{p} {r['rps']:.0f} req/s p99 {r['p99_us'] / 1000:.2f} ms"
                        for p, r in results.items()
                    )
                )
    return samples


# ---- reporting ------------------------------------------------------------------------------


def medians(
    samples: dict[str, dict[str, dict[str, list[float]]]],
) -> dict[str, dict[str, dict[str, float]]]:
    return {
        name: {
            runtime: {
                metric: round(statistics.median(values), 4) for metric, values in metrics.items()
            }
            for runtime, metrics in by_runtime.items()
        }
        for name, by_runtime in samples.items()
    }


ROWS = (
    ("cold start (s)", "cold_s"),
    ("batch 1, 8 connections: throughput (req/s)", "b1_rps"),
    ("batch 1, 8 connections: p50 (ms)", "b1_p50_ms"),
    ("batch 1, 8 connections: p99 (ms)", "b1_p99_ms"),
    ("batch 64, 8 connections: throughput (req/s)", "b64_rps"),
    ("batch 64, 8 connections: p99 (ms)", "b64_p99_ms"),
    ("batch 1, 32 connections: throughput (req/s)", "c32_rps"),
    ("batch 1, 32 connections: p99 (ms)", "c32_p99_ms"),
)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a is not None and b else "-"


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    forest = f" The forest has {doc['trees']} trees." if "forest" in doc["medians"] else ""
    picture = (
        ["![throughput and cold start](../../docs/img/compiled.svg)", ""]
        if path.parent.resolve() == RESULTS.resolve()
        else []
    )
    lines = [
        "# A compiled model (ONNX Runtime) against its framework, served by kninfer",
        "",
        f"Command: `{doc['command']}`; kninfer {doc['commit']}; {doc['rounds']} round(s), the "
        f"servers in alternating turns, medians. Cold start is process spawn to the first "
        f"successful V2 answer ({doc['cold_runs']} per round). Load: wrk for "
        f"{doc['seconds']:g} s per point after {doc['warmup']:g} s of warm-up, V2 JSON, the "
        f"server pinned to one core and wrk to the other; {doc['machine']}.{forest} `onnx` and "
        "`native` are kninfer's two runtimes for the same model directory (`native`: "
        "scikit-learn, or torch with the pytorch family's default adaptive batching); `floor` "
        "is a bare ASGI app running the same model.onnx (bench/peers/bare_onnx.py); `sklearn "
        "floor` is a bare ASGI app calling scikit-learn's `predict` (bench/peers/bare_asgi.py), "
        "cold start only. Higher is better for throughput, lower for the rest.",
        "",
        *picture,
        "| model | metric | onnx | native | floor | onnx / native | onnx / floor |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, by_runtime in doc["medians"].items():
        for title, key in ROWS:
            onnx, native, floor = (by_runtime[r].get(key) for r in RUNTIMES)
            lines.append(
                f"| {name} | {title} | {onnx:g} | {native:g} | {floor:g} | "
                f"{_ratio(onnx, native)} | {_ratio(onnx, floor)} |"
            )
        sklearn_floor = by_runtime.get(SKLEARN_FLOOR, {}).get("cold_s")
        if sklearn_floor is not None:
            onnx = by_runtime["onnx"]["cold_s"]
            lines.append(
                f"| {name} | cold start, sklearn floor (s) | {onnx:g} | | {sklearn_floor:g} | "
                f"| {_ratio(onnx, sklearn_floor)} (onnx / sklearn floor) |"
            )
    path.write_text("\n".join(lines) + "\n")


def draw(doc: dict[str, Any], path: Path) -> None:
    """Two panels as SVG (no plotting library in the project's environment): batch-1 throughput
    per model and server on a log scale, and cold start per model and server."""
    import math

    colors = {"native": "#9e9e9e", "onnx": "#1f77b4", "floor": "#2ca02c", SKLEARN_FLOOR: "#bcbd22"}
    labels = {
        "native": "kninfer, its framework",
        "onnx": "kninfer, ONNX Runtime",
        "floor": "bare ASGI + ONNX Runtime",
        SKLEARN_FLOOR: "bare ASGI + scikit-learn",
    }
    models = list(doc["medians"])
    bar, gap, left, width = 14, 16, 90, 330
    panel_h = len(models) * (4 * bar + gap) + 40
    height = panel_h + 60
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * (left + width) + 60}" '
        f'height="{height}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
    ]

    def panel(x0: int, title: str, key: str, servers: tuple[str, ...], log: bool) -> None:
        values = [
            doc["medians"][m][s][key]
            for m in models
            for s in servers
            if key in doc["medians"][m].get(s, {})
        ]
        top = max(values) * 1.15
        low = 10 ** math.floor(math.log10(min(values))) if log else 0.0

        def scale(v: float) -> float:
            if log:
                return (
                    width * (math.log10(v) - math.log10(low)) / (math.log10(top) - math.log10(low))
                )
            return width * v / top

        out.append(f'<text x="{x0}" y="16" font-size="13" font-weight="bold">{title}</text>')
        y = 30
        for model in models:
            out.append(f'<text x="{x0}" y="{y + 2 * bar}" font-weight="bold">{model}</text>')
            for server in servers:
                value = doc["medians"][model].get(server, {}).get(key)
                if value is None:
                    continue
                w = max(scale(value), 1.0)
                out.append(
                    f'<rect x="{x0 + left}" y="{y}" width="{w:.1f}" height="{bar - 2}" '
                    f'fill="{colors[server]}"/>'
                )
                text = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
                out.append(f'<text x="{x0 + left + w + 4:.1f}" y="{y + bar - 4}">{text}</text>')
                y += bar
            y += gap
        axis = "log scale" if log else "linear scale"
        out.append(f'<text x="{x0 + left}" y="{y + 6}" fill="#555">{axis}</text>')

    panel(10, "Batch 1, 8 connections: requests/s", "b1_rps", ("native", "onnx", "floor"), True)
    panel(
        left + width + 50,
        "Cold start: spawn to first answer (s)",
        "cold_s",
        ("native", SKLEARN_FLOOR, "onnx", "floor"),
        False,
    )
    x = 10
    for server in ("native", SKLEARN_FLOOR, "onnx", "floor"):
        out.append(
            f'<rect x="{x}" y="{height - 22}" width="10" height="10" fill="{colors[server]}"/>'
        )
        out.append(f'<text x="{x + 14}" y="{height - 13}">{labels[server]}</text>')
        x += 14 + 7 * len(labels[server]) + 16
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.compiled",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk seconds per point")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="wrk seconds before each measured run (0: none)"
    )
    parser.add_argument("--cold-runs", type=int, default=3, help="cold starts per round")
    parser.add_argument("--trees", type=int, default=150, help="trees in the forest")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="check the harness: one round, 1 s wrk, no warm-up, one cold start",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.cold_runs = 1, 1.0, 0.0, 1
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    wrk_path = load.ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="kninfer-compiled-"))
    import numpy as np
    from sklearn.datasets import load_iris

    sample = work / "iris.csv"
    np.savetxt(sample, load_iris().data, delimiter=",")
    dirs = {}
    for name in names:
        log(f"training and compiling {name}")
        dirs[name] = build(name, work, args.trees, sample)
    samples = measure(names, dirs, args, work, wrk_path)
    doc = {
        "command": "python -m bench.compiled "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(ROOT, "kninfer", "bench"),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "cold_runs": args.cold_runs,
        "trees": args.trees,
        "points": [{"name": p, "rows": r, "connections": c} for p, r, c in POINTS],
        "machine": f"{os.cpu_count()} CPUs",
        "samples": samples,
        "medians": medians(samples),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compiled.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_markdown(doc, args.out / "compiled.md")
    # The picture is the docs' (docs/compile.md), drawn for the results of record only.
    if args.out.resolve() == RESULTS.resolve():
        draw(doc, PICTURE)
    print((args.out / "compiled.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
