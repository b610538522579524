"""Adaptive batching benchmark: a PyTorch MLP served by `kninfer serve --predictor pytorch`, 32
concurrent clients sending batch-1 V2 requests to 127.0.0.1, batching off vs on in the same run.

    .venv/bin/python -m bench.batching.run [--hidden 2048] [--duration 10] [--repeats 2]

The load generator is wrk (C; Debian's package, installed when missing) with post.lua. On a
machine with two or more cores the server is pinned to core 0 and wrk to core 1 with taskset, so
the client never steals the server's CPU; the server runs torch with one intra-op thread
(OMP_NUM_THREADS=1), the honest setting for a one-core pod. Each configuration runs `--repeats`
times, interleaved (off, on, on, off, ...) so that drift on a shared machine hits both alike; every
run is preceded by a short warm-up load that is not recorded. One request is checked to answer 200
before any load, and a run with failed requests writes no result. Results go to
results-<hidden>.json beside this file (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from bench import harness, load
from bench.harness import free_port, pinned, wait_ready

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MODEL = "mlp"
FEATURES = 256


def build_model(model_dir: Path, hidden: int) -> None:
    """A 4-layer MLP (FEATURES -> hidden -> hidden -> hidden -> 10) as a torch.export program."""
    import torch

    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    width = FEATURES
    for _ in range(3):
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10)).eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (torch.zeros(2, FEATURES),), dynamic_shapes=({0: batch},))
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(model_dir / "model.pt2"))


def start_server(
    model_dir: Path, batching: bool, log: Path, core: int | None, extra: list[str]
) -> tuple[Any, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KNINFER_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    command = [
        *pinned(core, []),
        sys.executable,
        "-m",
        "kninfer",
        "serve",
        "--predictor",
        "pytorch",
        "--model-dir",
        str(model_dir),
        "--model-name",
        MODEL,
        "--host",
        "127.0.0.1",
        "--http-port",
        str(port),
        "--grpc-port",
        str(free_port()),
        "--no-enable-grpc",
        "--batching" if batching else "--no-batching",
        *extra,
    ]
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, timeout=180, log=log)
    except TimeoutError:
        process.kill()
        raise
    return process, url


def stop_server(process: Any) -> None:
    harness.stop(process)


def input_name(url: str) -> str:
    """The model's one input, from its V2 metadata; one request with it must answer 200 before
    any load is measured (a load of 400s once passed for a result here)."""
    with urllib.request.urlopen(f"{url}/v2/models/{MODEL}", timeout=10) as reply:
        (name,) = [tensor["name"] for tensor in json.loads(reply.read())["inputs"]]
    body = json.dumps(
        {
            "inputs": [
                {"name": name, "shape": [1, FEATURES], "datatype": "FP32", "data": [0.0] * FEATURES}
            ]
        }
    ).encode()
    request = urllib.request.Request(
        f"{url}/v2/models/{MODEL}/infer", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:  # raises on a 4xx/5xx
        assert reply.status == 200, reply.status
    return str(name)


def wrk(url: str, seconds: int, connections: int, core: int | None) -> dict[str, Any]:
    command = [
        *pinned(core, []),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "post.lua"),
        f"{url}/v2/models/{MODEL}/infer",
    ]
    env = dict(
        os.environ, KNINFER_BENCH_FEATURES=str(FEATURES), KNINFER_BENCH_INPUT=input_name(url)
    )
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^JSON (.*)$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no JSON summary:\n{out}")
    result: dict[str, Any] = json.loads(match.group(1))
    return result


def batch_stats(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("kninfer_batch_size_") and f'model="{MODEL}"' in line:
            found[line.split("{")[0].removeprefix("kninfer_batch_size_")] = float(
                line.rsplit(" ", 1)[1]
            )
    return {"batches": found.get("count", 0.0), "rows": found.get("sum", 0.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unrecorded load")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--server-args", default="", help="extra `kninfer serve` flags, both modes")
    parser.add_argument(
        "--out",
        type=Path,
        help="the results file (default: results-<hidden>[-<tag>].json beside this file)",
    )
    args = parser.parse_args()
    load.ensure_wrk()  # as bench.run does: Debian's package, installed when missing
    cores = os.cpu_count() or 1
    server_core, client_core = (0, 1) if cores >= 2 else (None, None)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kninfer-bench-") as tmp:
        model_dir = Path(tmp) / "model"
        build_model(model_dir, args.hidden)
        # off, on, on, off, ...: drift on a shared machine hits both modes alike.
        order = [b for r in range(args.repeats) for b in ((False, True), (True, False))[r % 2]]
        for index, batching in enumerate(order):
            process, url = start_server(
                model_dir,
                batching,
                Path(tmp) / f"server-{index}.log",
                server_core,
                shlex.split(args.server_args),
            )
            try:
                wrk(url, args.warmup, args.connections, client_core)
                before = batch_stats(url)
                result = wrk(url, args.duration, args.connections, client_core)
                after = batch_stats(url)
            finally:
                stop_server(process)
            batches = after["batches"] - before["batches"]
            result.update(
                batching=batching,
                run=index,
                loadavg_1m=round(os.getloadavg()[0], 2),
                mean_batch_rows=round((after["rows"] - before["rows"]) / batches, 2)
                if batches
                else None,
            )
            runs.append(result)
            print(json.dumps(result), flush=True)
    summary = summarise(runs)
    if summary["errors"]:
        print(json.dumps(summary, indent=2))
        print(f"{summary['errors']} requests failed: no result written", file=sys.stderr)
        return 1
    report = {
        "command": shlex.join(["python", *sys.argv]),
        "hidden": args.hidden,
        "features": FEATURES,
        "connections": args.connections,
        "duration_s": args.duration,
        "cores": cores,
        "server_core": server_core,
        "client_core": client_core,
        "runs": runs,
        "summary": summary,
    }
    out = args.out or HERE / f"results-{args.hidden}{args.tag and '-' + args.tag}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return 0


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(batching: bool, key: str) -> float:
        return round(statistics.median(r[key] for r in runs if r["batching"] == batching), 2)

    off_rps, on_rps = median(False, "rps"), median(True, "rps")
    off_p99, on_p99 = median(False, "p99_ms"), median(True, "p99_ms")
    return {
        "off": {"rps": off_rps, "p50_ms": median(False, "p50_ms"), "p99_ms": off_p99},
        "on": {"rps": on_rps, "p50_ms": median(True, "p50_ms"), "p99_ms": on_p99},
        "rps_ratio": round(on_rps / off_rps, 2),
        "p99_ratio": round(on_p99 / off_p99, 2),
        "target_met": on_rps >= 3 * off_rps and on_p99 < 2 * off_p99,
        "errors": sum(r["errors"] + r["non_200"] for r in runs),
    }


if __name__ == "__main__":
    sys.exit(main())
