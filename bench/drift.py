"""What drift monitoring costs a served model: the same model with and without a drift profile
beside it (kninfer.observability.drift, docs/monitoring.md), in alternating turns on one
machine.

The model is the embedded iris model (a LogisticRegression on one [N, 4] `input-0`): its
prediction is cheap, so the counting's share of a request is as large as it gets for a model
with four features. One copy of its directory is served bare, the other with the profile
`kninfer profile` writes from the iris data set (four numeric features and the predicted
labels). Each round starts each server in turn (A, B, then B, A, ...) and measures throughput
and latency under wrk (V2 JSON, batch 1 and 64, 8 connections, server on core 0, wrk on core
1), as bench/ab.py does; read the ratios, not the absolute figures. After each run /metrics is
read to check that the profiled server counted every value it answered and the other exported
no drift metric.

    .venv/bin/python -m bench.drift [--rounds 3] [--seconds 5] [--out bench/results]

Writes drift.json and drift.md under --out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import load
from bench.harness import git_commit, medians, write_report
from bench.servers import BENCH, ROOT, ServerSpec

RESULTS = BENCH / "results"
BATCHES = (1, 64)
LABELS = ("no profile", "profile")


def spec_for(label: str, model_dir: Path, work: Path) -> ServerSpec:
    python = ROOT / ".venv" / "bin" / "python"
    if not python.exists():
        python = Path(sys.executable)
    return ServerSpec(
        label,
        label,
        lambda h, g, m: [
            str(python),
            "-m",
            "kninfer",
            "serve",
            "--host",
            "127.0.0.1",
            "--predictor",
            "sklearn",
            "--model-dir",
            str(model_dir),
            "--http-port",
            str(h),
            "--grpc-port",
            str(g),
        ],
        env={"PYTHONUNBUFFERED": "1", "XDG_CACHE_HOME": str(work / "cache")},
        cwd=ROOT,
    )


def drift_counted(port: int) -> float | None:
    """The values counted into the first feature's bins (None: no drift metric at all)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    if "kninfer_drift" not in text:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kninfer_drift_bin_total{") and 'feature="input-0[0]"' in line
    )


def throughput(
    spec: ServerSpec,
    bodies: dict[int, Path],
    seconds: float,
    warm_s: float,
    work: Path,
    wrk_path: str,
) -> tuple[dict[int, dict[str, Any]], float | None, float, float]:
    """wrk per batch size (after `warm_s` of warm-up, if any); then the values counted into
    input-0[0]'s bins, and the least and most rows the server may have answered: every
    request wrk saw answered, and up to 8 (one per connection) it stopped waiting for."""
    run = load.start(spec, work)
    try:
        load.wait_first_inference(run, bodies[1].read_bytes(), 120)
        results, every = load.wrk_batches(run, wrk_path, bodies, seconds, warm_s)
        rows = 1.0  # wait_first_inference's one successful batch-1 request
        slack = 0.0
        for batch, runs in every.items():
            for result in runs:
                rows += batch * (result["requests"] - result["non_2xx"])
                slack += batch * 8
        return results, drift_counted(run.http_port), rows, rows + slack
    finally:
        load.stop(run)


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    bare, profiled = LABELS
    medians = doc["medians"]
    lines = [
        "# Drift monitoring's cost: the iris model with and without a drift profile",
        "",
        f"Command: `{doc['command']}` at {doc['commit']}; {doc['rounds']} rounds in "
        f"alternating turns, medians; wrk for {doc['seconds']:g} s per point, 8 connections, "
        f"server pinned to one core and wrk to the other; {doc['machine']}. The ratio is "
        "profile / no profile: above 1 is faster for throughput, slower for latency.",
        "",
        f"| metric | {bare} | {profiled} | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for batch in BATCHES:
        for title, key in (
            (f"throughput, batch {batch} (req/s)", f"rps_b{batch}"),
            (f"p50 latency, batch {batch} (ms)", f"p50_ms_b{batch}"),
            (f"p99 latency, batch {batch} (ms)", f"p99_ms_b{batch}"),
        ):
            a, b = medians[bare][key], medians[profiled][key]
            ratio = f"{b / a:.3f}" if a else "n/a"
            lines.append(f"| {title} | {a:g} | {b:g} | {ratio} |")
    path.write_text("\n".join(lines) + "\n")


def make_models(work: Path) -> dict[str, Path]:
    """Two copies of the iris model's directory, the second with its drift profile."""
    # The CLI in its own processes: importing kserve here would parse this script's argv.
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from kninfer.iris import "
            "ensure_iris_model; print(ensure_iris_model(pathlib.Path(sys.argv[1])))",
            str(work),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    source = Path(made.stdout.strip())
    dirs = {label: work / label.replace(" ", "-") for label in LABELS}
    for target in dirs.values():
        shutil.copytree(source, target)
    data = work / "iris.csv"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from sklearn.datasets import load_iris; "
            "load_iris(as_frame=True).data.to_csv(sys.argv[1], index=False)",
            str(data),
        ],
        check=True,
        cwd=ROOT,
    )
    subprocess.run(
        [sys.executable, "-m", "kninfer", "profile", str(dirs["profile"]), "--data", str(data)],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return dirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk seconds per point")
    parser.add_argument(
        "--warm", type=float, default=1.0, help="wrk seconds of warm-up before each point (0: none)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    wrk_path = load.ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="kninfer-drift-"))
    dirs = make_models(work)
    bodies = {}
    for batch in BATCHES:
        bodies[batch] = work / f"body-{batch}.json"
        bodies[batch].write_bytes(_body(batch))
    samples: dict[str, dict[str, list[float]]] = {label: {} for label in LABELS}
    checks: list[dict[str, Any]] = []
    for index in range(args.rounds):
        order = list(LABELS) if index % 2 == 0 else list(reversed(LABELS))
        for label in order:
            spec = spec_for(label, dirs[label], work)
            results, counted, rows, most = throughput(
                spec, bodies, args.seconds, args.warm, work, wrk_path
            )
            got = samples[label]
            for batch, result in results.items():
                got.setdefault(f"rps_b{batch}", []).append(result["rps"])
                got.setdefault(f"p50_ms_b{batch}", []).append(result["p50_us"] / 1000)
                got.setdefault(f"p99_ms_b{batch}", []).append(result["p99_us"] / 1000)
            # The profiled server counts every row it answers; the bare one exports nothing.
            right = (
                counted is None
                if label == "no profile"
                else counted is not None and rows <= counted <= most
            )
            checks.append(
                {
                    "round": index + 1,
                    "label": label,
                    "rows_answered": [rows, most],
                    "input-0[0]_counted": counted,
                    "as_expected": right,
                }
            )
            print(
                f"[drift {time.strftime('%H:%M:%S')}] round {index + 1} {label}: "
                + ", ".join(f"b{b} {got[f'rps_b{b}'][-1]:.0f} rps" for b in BATCHES)
                + f"; input-0[0] values counted: {counted} of {rows:.0f} rows answered",
                flush=True,
            )
    doc = {
        "command": "python -m bench.drift " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(ROOT, "kninfer"),
        "labels": list(LABELS),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "machine": f"{os.cpu_count()} CPUs",
        "samples": samples,
        "medians": medians(samples),
        "counting_checks": checks,
    }
    write_report(args.out, "drift", doc, write_markdown)
    return 0 if all(check["as_expected"] for check in checks) else 1


def _body(batch: int) -> bytes:
    from bench.run import request_body

    return request_body(batch)


if __name__ == "__main__":
    sys.exit(main())
