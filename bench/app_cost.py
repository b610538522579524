"""What kninfer's own work costs per request, without sockets: the ASGI app driven in process.

The iris logistic regression is trained, saved with joblib and compiled with `kninfer compile`;
then, each in a fresh process pinned to one core, kninfer's whole app (the metrics middleware,
the drain wrapper, the routes, the V2 codec, the predictor's checks and the ONNX Runtime call:
`KninferServer.wrapped_app()`) and the floor's (bench/peers/bare_onnx.py: decode, run, encode)
answer N V2 requests of one row after a warm-up of 2,000, on uvloop, with no socket and no
uvicorn. The difference is what kninfer adds to each request, the number behind
docs/performance.md#inline-models; uvicorn and the socket cost both servers the same on top.

    .venv/bin/python -m bench.app_cost [--requests 20000] [--rounds 3]

Writes bench/results/app-cost.{json,md} (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import SERVER_CPU, git_commit, pinned
from bench.servers import BENCH, ROOT

RESULTS = BENCH / "results"
APPS = ("kninfer", "floor")

# Runs in a fresh process: argv = app, model dir, requests. Prints microseconds per request.
DRIVER = """
import asyncio, json, os, sys, time
from pathlib import Path
which, model_dir, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                               "data": [5.1, 3.5, 1.4, 0.2]}]}).encode()
if which == "floor":
    os.environ["MODEL_DIR"] = model_dir
    sys.path.insert(0, os.path.join(sys.argv[4], "bench", "peers"))
    from bare_onnx import app
else:
    from kninfer.server.lifecycle import KninferServer
    from kninfer.server.startup import build_models
    from kninfer.settings import ServeSettings
    settings = ServeSettings(model_dir=Path(model_dir), predictor="sklearn", runtime="onnx",
                             model_name="iris")
    server = KninferServer(settings)
    for model in build_models(settings):
        server.register_model(model)
    app = server.wrapped_app()
scope = {"type": "http", "method": "POST", "path": "/v2/models/iris/infer",
         "raw_path": b"/v2/models/iris/infer", "query_string": b"", "root_path": "",
         "headers": [(b"content-type", b"application/json"),
                     (b"content-length", str(len(body)).encode()), (b"host", b"bench")],
         "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 8080),
         "client": ("127.0.0.1", 5555)}
answers = []
async def receive():
    return {"type": "http.request", "body": body, "more_body": False}
async def send(message):
    if message["type"] == "http.response.start":
        answers.append(message["status"])
async def run(n):
    for _ in range(n):
        await app(dict(scope), receive, send)
async def main():
    await run(2000)
    answers.clear()
    started = time.perf_counter()
    await run(count)
    elapsed = time.perf_counter() - started
    assert answers == [200] * count, set(answers)
    print(elapsed / count * 1e6)
import uvloop
uvloop.run(main())
"""


def python() -> Path:
    venv = ROOT / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def build(work: Path) -> Path:
    """The iris model directory, compiled (model.joblib, model.onnx, compile.json)."""
    import joblib
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    model_dir = work / "iris"
    model_dir.mkdir(parents=True)
    joblib.dump(
        LogisticRegression(max_iter=1000).fit(data.data, data.target), model_dir / "model.joblib"
    )
    np.savetxt(work / "iris.csv", data.data, delimiter=",")
    subprocess.run(
        [
            str(python()),
            "-m",
            "kninfer",
            "compile",
            str(model_dir),
            "--sample",
            str(work / "iris.csv"),
        ],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    return model_dir


def measure(app: str, model_dir: Path, requests: int) -> float:
    done = subprocess.run(
        pinned(
            SERVER_CPU, [str(python()), "-c", DRIVER, app, str(model_dir), str(requests), str(ROOT)]
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "KNINFER_LOG_LEVEL": "warning"},
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{app}: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.app_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kninfer-app-cost-"))
    model_dir = build(work)
    samples: dict[str, list[float]] = {app: [] for app in APPS}
    for index in range(args.rounds):
        for app in APPS if index % 2 == 0 else tuple(reversed(APPS)):
            samples[app].append(round(measure(app, model_dir, args.requests), 2))
    median = {app: statistics.median(values) for app, values in samples.items()}
    doc = {
        "command": "python -m bench.app_cost "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(ROOT, "kninfer", "bench"),
        "requests": args.requests,
        "samples_us": samples,
        "median_us": median,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "app-cost.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# kninfer's own work per request, in process",
        "",
        f"Command: `{doc['command']}`; kninfer {doc['commit']}; {args.rounds} round(s) taking "
        f"turns, {args.requests} V2 requests of one iris row each after 2,000 of warm-up, one "
        "fresh process per run pinned to one core, no socket (bench/app_cost.py). Medians.",
        "",
        "| app | us per request | runs |",
        "| --- | ---: | --- |",
        *(
            f"| {app} | {median[app]:.1f} | {', '.join(f'{v:g}' for v in samples[app])} |"
            for app in APPS
        ),
        "",
        f"kninfer adds {median['kninfer'] - median['floor']:.1f} us to each request "
        f"({median['kninfer'] / median['floor']:.1f}x the floor's app).",
    ]
    (args.out / "app-cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
