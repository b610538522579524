"""The targets of several full runs side by side: one column per run's JSON (`bench.run` writes
`bench/results/run-<stamp>.json`), one row per target of `bench.report.TARGETS`, each cell the
ratio `bench.report.summarize` computes for that run. On a shared, noisy machine one run can
miss a target another meets; the columns show how far each figure moves between runs.

    .venv/bin/python -m bench.targets bench/results/run-A.json run-B.json ... \\
        [--out bench/results/targets.md]

docs/performance.md includes the file this writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.report import TARGETS, summarize
from bench.servers import BENCH

RESULTS = BENCH / "results"


def column(results: dict[str, Any]) -> str:
    """`2026-11-22 21:42 (3 runs)`: when the run started and how many runs each load figure has."""
    meta = results["meta"]
    started = meta["started"].replace("T", " ")[:16]
    return f"{started} ({meta['runs']} runs)"


def write_markdown(paths: list[Path], out: Path) -> None:
    runs = [json.loads(path.read_text()) for path in paths]
    ratios = [{row["id"]: row["ratio"] for row in summarize(results)} for results in runs]
    lines = [
        "# Targets side by side",
        "",
        "Command: `python -m bench.targets " + " ".join(path.name for path in paths) + "`"
        " (in bench/results); each column is one full `python -m bench.run`, every server "
        "measured in that run, UTC start time.",
        "",
        "| target | " + " | ".join(column(results) for results in runs) + " | wanted |",
        "| --- | " + " | ".join("---:" for _ in runs) + " | --- |",
    ]
    for target_id, text, _num, _den, op, bound in TARGETS:
        cells = [f"{r[target_id]:.2f}" if target_id in r else "not run" for r in ratios]
        lines.append(f"| {text} | " + " | ".join(cells) + f" | {op} {bound} |")
    out.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run JSON files, oldest first")
    parser.add_argument("--out", type=Path, default=RESULTS / "targets.md")
    args = parser.parse_args(argv)
    write_markdown([path if path.exists() else RESULTS / path for path in args.runs], args.out)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
