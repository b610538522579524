"""Plot a bench result: throughput and p99 against connections, one line per server, one row per
batch size. Runs in bench/.venvs/report (matplotlib): `python plot.py latest.json plot.png`."""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(source: str, target: str) -> None:
    results = json.load(open(source))
    batches = results["meta"]["batches"]
    fig, axes = plt.subplots(len(batches), 2, figsize=(11, 4 * len(batches)), squeeze=False)
    for row, batch in enumerate(batches):
        for name, server in results["servers"].items():
            points = sorted(
                (p for p in server["load"].values() if p["batch"] == batch),
                key=lambda p: p["connections"],
            )
            if not points:
                continue
            conns = [p["connections"] for p in points]
            style = {"linewidth": 3} if name == "kninfer" else {"linewidth": 1.5}
            axes[row][0].plot(
                conns, [p["rps"] for p in points], marker="o", label=server["label"], **style
            )
            axes[row][1].plot(
                conns, [p["p99_ms"] for p in points], marker="o", label=server["label"], **style
            )
        axes[row][0].set_title(f"V2 JSON, batch {batch}: requests/s (one server core)")
        axes[row][1].set_title(f"V2 JSON, batch {batch}: p99 latency (ms)")
        for ax in axes[row]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(results["meta"]["connections"])
            ax.set_xticklabels([str(c) for c in results["meta"]["connections"]])
            ax.set_xlabel("connections")
            ax.grid(True, alpha=0.3)
        axes[row][1].set_yscale("log")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
