"""kninfer against kninfer: two source trees side by side, in alternating turns, on one machine.

For a change that should move no number (a refactor, a layout sweep), this measures what users
get from each tree with the same interpreter and virtualenv: cold start (process spawn to the first
successful V2 answer, the embedded iris model, as `bench.run` measures it) and throughput and
latency under wrk (V2 JSON, batch 1 and 64, 8 connections, server on core 0, wrk on core 1). The
two trees run in turns (A, B, A, B, ...), so machine drift lands on both alike; read the ratios
B/A, not the absolute figures. A tree is selected by running `python -m kninfer` from its root,
where the current directory comes first on `sys.path`.

    .venv/bin/python -m bench.ab --before /tmp/old-tree [--rounds 5] [--seconds 5]

`--before` is a checkout of the baseline (`git worktree add /tmp/old-tree <commit>`); the other
tree is this one. Writes bench/results/ab.json and bench/results/ab.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import load
from bench.harness import git_commit, medians, write_report
from bench.servers import BENCH, ROOT, ServerSpec

RESULTS = BENCH / "results"
BATCHES = (1, 64)


def spec_for(label: str, tree: Path, model_dir: Path, work: Path) -> ServerSpec:
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
            "--model-dir",
            str(model_dir),
            "--http-port",
            str(h),
            "--grpc-port",
            str(g),
        ],
        env={"PYTHONUNBUFFERED": "1", "XDG_CACHE_HOME": str(work / "cache")},
        cwd=tree,
    )


def throughput(
    spec: ServerSpec, bodies: dict[int, Path], seconds: float, work: Path, wrk_path: str
) -> dict[int, dict[str, Any]]:
    run = load.start(spec, work)
    try:
        load.wait_first_inference(run, bodies[1].read_bytes(), 120)
        # One second of warm-up per batch size: the connections and caches.
        results, _ = load.wrk_batches(run, wrk_path, bodies, seconds, 1)
        return results
    finally:
        load.stop(run)


def ratio(after: float, before: float) -> float:
    return round(after / before, 3) if before else float("nan")


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    before, after = doc["labels"]
    medians = doc["medians"]
    rows = [
        ("cold start, spawn to first answer (s)", "cold_s", False),
        *[(f"throughput, batch {b} (req/s)", f"rps_b{b}", True) for b in BATCHES],
        *[(f"p50 latency, batch {b} (ms)", f"p50_ms_b{b}", False) for b in BATCHES],
        *[(f"p99 latency, batch {b} (ms)", f"p99_ms_b{b}", False) for b in BATCHES],
    ]
    lines = [
        f"# kninfer {after} against {before}, side by side",
        "",
        f"Command: `{doc['command']}`; {doc['rounds']} rounds in alternating turns, medians; "
        f"wrk for {doc['seconds']:g} s per point, 8 connections, server pinned to one core and "
        f"wrk to the other; {doc['machine']}. Higher is better for throughput, lower for the "
        "rest; the ratio is after / before.",
        "",
        f"| metric | before ({before}) | after ({after}) | after / before |",
        "| --- | ---: | ---: | ---: |",
    ]
    for title, key, _higher in rows:
        a, b = medians[before][key], medians[after][key]
        lines.append(f"| {title} | {a:g} | {b:g} | {ratio(b, a):.3f} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--before",
        type=Path,
        required=True,
        help="root of the baseline source tree (a git worktree)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk seconds per point")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    wrk_path = load.ensure_wrk()
    # The CLI in its own process: importing kserve here would parse this script's argv.
    work = Path(tempfile.mkdtemp(prefix="kninfer-ab-"))
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
    model_dir = Path(made.stdout.strip())
    bodies = {}
    for batch in BATCHES:
        bodies[batch] = work / f"body-{batch}.json"
        bodies[batch].write_bytes(_body(batch))
    before_label = f"before {git_commit(args.before)}"
    after_label = f"after {git_commit(ROOT)}"
    trees = {before_label: args.before.resolve(), after_label: ROOT}
    samples: dict[str, dict[str, list[float]]] = {label: {} for label in trees}
    for index in range(args.rounds):
        order = list(trees) if index % 2 == 0 else list(reversed(trees))
        for label in order:
            spec = spec_for(label, trees[label], model_dir, work)
            seconds, _ = load.cold_start(spec, bodies[1].read_bytes(), work, 120)
            got = samples[label]
            got.setdefault("cold_s", []).append(seconds)
            for batch, result in throughput(spec, bodies, args.seconds, work, wrk_path).items():
                got.setdefault(f"rps_b{batch}", []).append(result["rps"])
                got.setdefault(f"p50_ms_b{batch}", []).append(result["p50_us"] / 1000)
                got.setdefault(f"p99_ms_b{batch}", []).append(result["p99_us"] / 1000)
            print(
                f"[ab {time.strftime('%H:%M:%S')}] round {index + 1} {label}: cold "
                f"{seconds:.3f} s, "
                + ", ".join(f"b{b} {got[f'rps_b{b}'][-1]:.0f} rps" for b in BATCHES),
                flush=True,
            )
    doc = {
        "command": "python -m bench.ab " + " ".join(argv if argv is not None else sys.argv[1:]),
        "labels": [before_label, after_label],
        "rounds": args.rounds,
        "seconds": args.seconds,
        "machine": f"{os.cpu_count()} CPUs",
        "samples": samples,
        "medians": medians(samples),
    }
    write_report(args.out, "ab", doc, write_markdown)
    return 0


def _body(batch: int) -> bytes:
    from bench.run import request_body

    return request_body(batch)


if __name__ == "__main__":
    sys.exit(main())
