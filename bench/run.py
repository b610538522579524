"""`make bench`: kninfer against KServe, MLServer, a FastAPI wrapper and a bare ASGI floor.

    .venv/bin/python -m bench.run                 # full run (about 10 minutes on 2 cores)
    .venv/bin/python -m bench.run --quick --out DIR --servers kninfer,bare --peer-python

Method (docs/performance.md): every server serves the same iris
LogisticRegression and gets the same V2 JSON requests (batch 1 and batch 64 rows). The server is
pinned to core 0, wrk to core 1. Cold start is process spawn to the first successful V2 inference,
median of `--cold-runs` after one unmeasured start that warms the page cache, servers interleaved.
Load: all servers run at once (pinned, idle until their turn); for each batch size and
connection count (1, 8, 32) the servers take turns, each a warm-up run then a fixed-duration run,
`--runs` times; the median of the runs is reported with every raw run kept in the JSON. Only
ratios between servers measured in the same run are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import load
from bench.report import summarize, write_markdown
from bench.servers import BENCH, ROOT, build_specs, venv_python

ALL_SERVERS = [
    "kninfer",
    "kserve",
    "kserve-sklearnserver",
    "mlserver",
    "mlserver-pw0",
    "fastapi",
    "bare",
]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", default=",".join(ALL_SERVERS))
    parser.add_argument("--connections", default="1,8,32")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per point")
    parser.add_argument("--runs", type=int, default=2, help="repetitions of every figure")
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--cold-timeout", type=float, default=60.0)
    parser.add_argument("--out", default=str(BENCH / "results"))
    parser.add_argument(
        "--peer-python",
        action="store_true",
        help="run the FastAPI and bare ASGI peers on this interpreter",
    )
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--batching",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run bench/batching (PyTorch MLP, batching off vs on); "
        "default: on, off with --quick",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny run to check the harness: 1 s runs, 1 repetition"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.runs, args.cold_runs = 1.0, 1.0, 1, 1
        if args.connections == "1,8,32":
            args.connections = "1,8"
    return args


def request_body(batch: int) -> bytes:
    """A V2 request of `batch` iris rows (the first rows of the data set, cycled)."""
    from sklearn.datasets import load_iris

    rows = load_iris().data
    data = [float(v) for i in range(batch) for v in rows[i % len(rows)]]
    return json.dumps(
        {"inputs": [{"name": "input-0", "shape": [batch, 4], "datatype": "FP64", "data": data}]}
    ).encode()


def in_process_cost(
    model_dir: Path, body_file: Path, batch: int, iterations: int = 500
) -> dict[str, float]:
    """Microseconds to decode the V2 body with kninfer's codec and call `predict`, in one process
    pinned to the server core: the floor a server's per-request time is compared with."""
    code = f"""
import json, time, joblib, statistics
from kninfer.protocol.v2 import decode_v2_request
model = joblib.load({str(model_dir / "model.joblib")!r})
body = open({str(body_file)!r}, 'rb').read()
def once():
    request = decode_v2_request(body, {{}}, 'iris')
    model.predict(request.inputs[0].data)
for _ in range({iterations} // 2): once()
samples = []
for _ in range(7):
    n = {iterations}
    t = time.perf_counter()
    for _ in range(n): once()
    samples.append((time.perf_counter() - t) / n * 1e6)
print(json.dumps({{"median_us": statistics.median(samples), "min_us": min(samples)}}))
"""
    python = ROOT / ".venv" / "bin" / "python"
    out = subprocess.run(
        load.pinned(
            load.SERVER_CPU, [str(python if python.exists() else sys.executable), "-c", code]
        ),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    result["batch"] = batch
    return result


def adaptive_batching(duration: float) -> dict[str, Any]:
    """The PyTorch adaptive-batching comparison (bench/batching/run.py, its own harness: a
    2048-wide MLP, 32 connections of batch-1 requests, batching off vs on, interleaved)."""
    tag = "make-bench"
    python = ROOT / ".venv" / "bin" / "python"
    log("adaptive batching: python -m bench.batching.run (PyTorch MLP, off vs on)")
    subprocess.run(
        [
            str(python if python.exists() else sys.executable),
            "-m",
            "bench.batching.run",
            "--duration",
            str(max(3, round(duration))),
            "--repeats",
            "2",
            "--tag",
            tag,
            "--server-args",
            "--inference-threads 1",
        ],
        check=True,
        cwd=ROOT,
    )
    report: dict[str, Any] = json.loads(
        (BENCH / "batching" / f"results-2048-{tag}.json").read_text()
    )
    return {
        "command": report.get("command"),
        "connections": report.get("connections"),
        "summary": report["summary"],
    }


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
    }


def _stop_on_signals() -> None:
    """SIGTERM/SIGINT unwind through `finally`, so every server started here is stopped (a
    background job may have inherited SIGINT ignored)."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _stop_on_signals()
    names = [n for n in args.servers.split(",") if n]
    connections = [int(c) for c in args.connections.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = BENCH / ".work"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    wrk_path = load.ensure_wrk()
    from kninfer.iris import ensure_iris_model

    model_dir = ensure_iris_model(work)
    bodies: dict[int, Path] = {}
    for batch in batches:
        bodies[batch] = work / f"body-{batch}.json"
        bodies[batch].write_bytes(request_body(batch))
    specs = build_specs(names, model_dir, work, args.peer_python, log)
    started = time.time()
    results: dict[str, Any] = {
        "meta": {
            **machine(),
            "command": " ".join(
                [
                    Path(sys.executable).name,
                    "-m",
                    "bench.run",
                    *(argv if argv is not None else sys.argv[1:]),
                ]
            ),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "runs": args.runs,
            "cold_runs": args.cold_runs,
            "connections": connections,
            "batches": batches,
        },
        "servers": {
            s.name: {"label": s.label, "cold_start_s": [], "load": {}, "peak_rss_mb": 0.0}
            for s in specs
        },
    }
    body1 = bodies[batches[0]].read_bytes()

    # Cold start: one unmeasured start per server (page cache), then interleaved measured ones.
    first = 1 if args.quick else 0  # --quick skips the page-cache warm-up start
    for rep in range(first, args.cold_runs + 1):
        for spec in specs:
            seconds, breakdown = load.cold_start(spec, body1, logs, args.cold_timeout)
            if rep == 0:
                log(f"cold start {spec.name}: {seconds:.3f}s (warm-up, not counted)")
                continue
            log(f"cold start {spec.name}: {seconds:.3f}s")
            entry = results["servers"][spec.name]
            entry["cold_start_s"].append(round(seconds, 4))
            if breakdown:
                entry.setdefault("cold_start_breakdown", []).append(breakdown)

    # Load: every server up at once (all pinned to the server core, idle until their turn);
    # for each point and repetition the servers take turns, so drift on a shared machine hits
    # them alike.
    running: list[load.Running] = []
    try:
        for spec in (s for s in specs if s.load):
            running.append(load.start(spec, logs))
            load.wait_first_inference(running[-1], body1, args.cold_timeout)
        for batch in batches:
            for conns in connections:
                key = f"b{batch}_c{conns}"
                for rep in range(args.runs):
                    for run in running:
                        name = run.spec.name
                        load.wrk(wrk_path, run.http_port, bodies[batch], conns, args.warmup)
                        figure = load.wrk(
                            wrk_path, run.http_port, bodies[batch], conns, args.duration
                        )
                        log(
                            f"run {rep + 1} {name} batch {batch} x{conns}: "
                            f"{figure['rps']:.0f} rps p50 {figure['p50_us'] / 1000:.2f} ms "
                            f"p99 {figure['p99_us'] / 1000:.2f} ms errors {figure['errors']}"
                        )
                        point = results["servers"][name]["load"].setdefault(
                            key, {"batch": batch, "connections": conns, "runs": []}
                        )
                        point["runs"].append(figure)
        for run in running:
            results["servers"][run.spec.name]["peak_rss_mb"] = load.peak_rss_mb(run.process.pid)
    finally:
        for run in running:
            load.stop(run)

    batching_failed = False
    if args.batching if args.batching is not None else not args.quick:
        try:
            results["batching"] = adaptive_batching(args.duration)
        except subprocess.CalledProcessError as error:
            # Minutes of load results above are still written; the exit status says it failed.
            batching_failed = True
            results["batching"] = {"error": f"bench.batching.run exited {error.returncode}"}
            log("adaptive batching failed (its output is above); writing the other results")
    for batch in batches:
        results.setdefault("in_process", {})[f"b{batch}"] = in_process_cost(
            model_dir, bodies[batch], batch, 50 if args.quick else 200
        )
    for entry in results["servers"].values():
        cold = entry["cold_start_s"]
        entry["cold_start_median_s"] = round(statistics.median(cold), 4) if cold else None
        for point in entry["load"].values():
            runs = point["runs"]
            point["rps"] = round(statistics.median(r["rps"] for r in runs), 1)
            point["p50_ms"] = round(statistics.median(r["p50_us"] for r in runs) / 1000, 3)
            point["p99_ms"] = round(statistics.median(r["p99_us"] for r in runs) / 1000, 3)
            point["errors"] = sum(r["errors"] for r in runs)
    results["meta"]["loadavg_end"] = os.getloadavg()
    results["meta"]["elapsed_s"] = round(time.time() - started, 1)
    results["summary"] = summarize(results)

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    (out / f"run-{stamp}.json").write_text(json.dumps(results, indent=2))
    plot = None
    if not args.no_plot:
        plot = out / "plot.png"
        subprocess.run(
            [
                str(venv_python("report", log)),
                str(BENCH / "plot.py"),
                str(out / "latest.json"),
                str(plot),
            ],
            check=True,
        )
    write_markdown(results, out / "report.md", plot.name if plot else None)
    log(f"wrote {out / 'latest.json'}, {out / 'report.md'}" + (f", {plot}" if plot else ""))
    return 1 if batching_failed else 0


if __name__ == "__main__":
    sys.exit(main())
