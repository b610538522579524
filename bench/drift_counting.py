"""What counting a request into a drift profile costs in process: DriftMonitor.observe and its
share of the flushes (kninfer.observability.drift.monitor), per request, on an event loop as in
the server, for the iris model's profile (four numeric features and the predicted label).

The served comparison (bench/drift.py) is the one that counts, but on this shared machine its
turns differ by up to 10 % from one to the next, more than the cost it looks for; this measures
the counting alone, to read against the served request's time.

    .venv/bin/python -m bench.drift_counting [--requests 2000] [--repeats 5] [--out bench/results]

Writes drift-counting.json and drift-counting.md under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

from bench.harness import git_commit
from bench.servers import BENCH, ROOT

RESULTS = BENCH / "results"
BATCHES = (1, 64)


def per_request_us(batch: int, requests: int, repeats: int) -> float:
    """Best of REPEATS: microseconds per request to observe REQUESTS requests of BATCH rows
    and flush what is left pending."""
    from sklearn.datasets import load_iris

    from kninfer.observability.drift import DriftMonitor, build_profile

    features, labels = load_iris(return_X_y=True)
    profile = build_profile(features, outputs=labels, output_name="predict")
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, len(features), batch) for _ in range(requests)]
    # Fresh arrays per request, as the server decodes them.
    pending = [({"input-0": features[r].copy()}, {"predict": labels[r].copy()}) for r in rows]
    best = float("inf")
    for repeat in range(repeats):
        monitor = DriftMonitor(profile, f"bench-{batch}-{repeat}", "v1")

        async def run(monitor: DriftMonitor = monitor) -> float:
            started = time.perf_counter()
            for inputs, outputs in pending:
                monitor.observe(inputs, outputs)
            monitor.flush()
            return time.perf_counter() - started

        best = min(best, asyncio.run(run()))
    return best / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = {str(b): per_request_us(b, args.requests, args.repeats) for b in BATCHES}
    doc = {
        "commit": git_commit(ROOT, "kninfer"),
        "requests": args.requests,
        "repeats": args.repeats,
        "per_request_us": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drift-counting.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# Drift counting in process: microseconds per request",
        "",
        f"Command: `python -m bench.drift_counting` at {doc['commit']}; {args.requests} "
        f"requests per batch size, best of {args.repeats}; the iris profile (four numeric "
        "features and the label); observe() on an event loop plus its share of flushes.",
        "",
        "| batch | us per request |",
        "| ---: | ---: |",
    ]
    lines += [f"| {b} | {us:.1f} |" for b, us in results.items()]
    (args.out / "drift-counting.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
