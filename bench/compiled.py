"""A compiled model (model.onnx through ONNX Runtime) against the same model in scikit-learn.

Three models are trained here, saved with joblib and compiled with `kninfer compile`:

- `iris-lr`: LogisticRegression on iris (an array model, INT64 labels);
- `forest`: RandomForestClassifier of `--trees` trees on iris (string labels);
- `churn-gbm`: Pipeline(ColumnTransformer(OneHotEncoder on a string column, StandardScaler on
  two numeric ones), GradientBoostingClassifier), fitted on a DataFrame.

Each directory (joblib and model.onnx side by side) is served by kninfer twice, `--runtime onnx`
and `--runtime native`, the server pinned to one core and wrk to the other (bench.harness), and
measured as bench.ab measures: cold start (process spawn to the first successful V2 answer) and
throughput and latency under wrk (V2 JSON, batch 1, 8 connections). Within a round the runtimes
take turns, the first one alternating between rounds, so machine drift lands on both; read the
ratios onnx / native.

    .venv/bin/python -m bench.compiled [--rounds 3] [--seconds 10] [--cold-runs 3] [--trees 150]
    .venv/bin/python -m bench.compiled --quick --models iris-lr --out /tmp/compiled  # harness check

Writes OUT/compiled.json (every sample) and OUT/compiled.md (medians); OUT is bench/results.
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
from bench.servers import BENCH, ROOT, ServerSpec

RESULTS = BENCH / "results"
MODELS = ("iris-lr", "forest", "churn-gbm")
RUNTIMES = ("onnx", "native")
CONNECTIONS = 8
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


def _iris_lr() -> tuple[Any, bytes]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    return LogisticRegression(max_iter=1000).fit(data.data, data.target), _matrix_body(data.data)


def _forest(trees: int) -> tuple[Any, bytes]:
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    data = load_iris()
    species = np.asarray(data.target_names)[data.target]
    model = RandomForestClassifier(n_estimators=trees, random_state=0).fit(data.data, species)
    return model, _matrix_body(data.data)


def _churn_gbm() -> tuple[Any, bytes]:
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
    row = _churn_frame(1, 1)
    inputs = [
        {
            "name": c,
            "shape": [1],
            "datatype": "BYTES" if c == "city" else "FP64",
            "data": row[c].tolist(),
        }
        for c in row.columns
    ]
    return model, json.dumps({"inputs": inputs}).encode()


def _matrix_body(rows: Any) -> bytes:
    """A one-row V2 request: the first iris row."""
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "data": [float(v) for v in rows[0]],
                }
            ]
        }
    ).encode()


def build(name: str, work: Path, trees: int, sample: Path) -> tuple[Path, Path]:
    """The model's directory (model.joblib and the compiled model.onnx) and its request body."""
    import joblib

    makers: dict[str, Callable[[], tuple[Any, bytes]]] = {
        "iris-lr": _iris_lr,
        "forest": lambda: _forest(trees),
        "churn-gbm": _churn_gbm,
    }
    model, body = makers[name]()
    model_dir = work / name
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
    body_file = work / f"{name}.json"
    body_file.write_bytes(body)
    return model_dir, body_file


# ---- measuring ------------------------------------------------------------------------------


def spec_for(name: str, runtime: str, model_dir: Path, work: Path) -> ServerSpec:
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
            "sklearn",
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


def throughput(
    spec: ServerSpec, body_file: Path, seconds: float, warmup: float, work: Path, wrk_path: str
) -> dict[str, Any]:
    run = load.start(spec, work)
    try:
        load.wait_first_inference(run, body_file.read_bytes(), 120)
        if warmup > 0:
            load.wrk(wrk_path, run.http_port, body_file, CONNECTIONS, warmup)
        result: dict[str, Any] = load.wrk(wrk_path, run.http_port, body_file, CONNECTIONS, seconds)
        return result
    finally:
        load.stop(run)


def measure(
    names: list[str],
    dirs: dict[str, tuple[Path, Path]],
    args: argparse.Namespace,
    work: Path,
    wrk_path: str,
) -> dict[str, dict[str, dict[str, list[float]]]]:
    samples: dict[str, dict[str, dict[str, list[float]]]] = {
        name: {runtime: {} for runtime in RUNTIMES} for name in names
    }
    for index in range(args.rounds):
        order = RUNTIMES if index % 2 == 0 else tuple(reversed(RUNTIMES))
        for name in names:
            model_dir, body_file = dirs[name]
            for runtime in order:
                spec = spec_for(name, runtime, model_dir, work)
                got = samples[name][runtime]
                for _ in range(args.cold_runs):
                    seconds, _breakdown = load.cold_start(spec, body_file.read_bytes(), work, 120)
                    got.setdefault("cold_s", []).append(round(seconds, 4))
                result = throughput(spec, body_file, args.seconds, args.warmup, work, wrk_path)
                if result["errors"]:
                    raise SystemExit(f"{spec.label}: wrk saw {result['errors']} errors")
                got.setdefault("rps", []).append(result["rps"])
                got.setdefault("p50_ms", []).append(result["p50_us"] / 1000)
                got.setdefault("p99_ms", []).append(result["p99_us"] / 1000)
                log(
                    f"round {index + 1} {spec.label}: cold {got['cold_s'][-1]:.3f} s, "
                    f"{result['rps']:.0f} req/s, p99 {result['p99_us'] / 1000:.2f} ms"
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


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    lines = [
        "# A compiled model (ONNX Runtime) against scikit-learn, served by kninfer",
        "",
        f"Command: `{doc['command']}`; kninfer {doc['commit']}; {doc['rounds']} round(s), the "
        f"runtimes in alternating turns, medians. Cold start is process spawn to the first "
        f"successful V2 answer ({doc['cold_runs']} per round). Throughput: wrk for "
        f"{doc['seconds']:g} s, V2 JSON, batch 1, {CONNECTIONS} connections, the server pinned "
        f"to one core and wrk to the other; {doc['machine']}. The forest has {doc['trees']} "
        "trees. Higher is better for throughput, lower for the rest.",
        "",
        "| model | metric | onnx | native | onnx / native |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    rows = (
        ("cold start (s)", "cold_s"),
        ("throughput (req/s)", "rps"),
        ("p50 latency (ms)", "p50_ms"),
        ("p99 latency (ms)", "p99_ms"),
    )
    for name, by_runtime in doc["medians"].items():
        for title, key in rows:
            onnx, native = by_runtime["onnx"][key], by_runtime["native"][key]
            ratio = f"{onnx / native:.3f}" if native else "-"
            lines.append(f"| {name} | {title} | {onnx:g} | {native:g} | {ratio} |")
    path.write_text("\n".join(lines) + "\n")


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
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk seconds per point")
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
        "connections": CONNECTIONS,
        "batch": 1,
        "machine": f"{os.cpu_count()} CPUs",
        "samples": samples,
        "medians": medians(samples),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compiled.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_markdown(doc, args.out / "compiled.md")
    print((args.out / "compiled.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
