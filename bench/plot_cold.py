"""Plot the cold-start matrix: per case, kninfer's spawn-to-first-answer next to its floor (and
KServe's pattern where there is one), warm and cold page cache. Runs in bench/.venvs/report
(matplotlib): `python plot_cold.py cold.json cold.png`."""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(source: str, target: str) -> None:
    cases = json.load(open(source))["cases"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(cases) + 1.5), sharey=True)
    names = [c["name"] for c in cases]
    for ax, cache in zip(axes, ("warm", "cold"), strict=True):
        for offset, (kind, colour) in enumerate(
            (("kninfer", "tab:blue"), ("floor", "tab:gray"), ("kserve", "tab:orange"))
        ):
            ys = [i + offset * 0.27 for i in range(len(cases))]
            xs = [c["results"].get(cache, {}).get(kind, {}).get("total_s", 0) for c in cases]
            ax.barh(ys, xs, height=0.25, color=colour, label=kind)
        ax.set_title(f"spawn to first V2 answer (s), page cache {cache}")
        ax.set_yticks([i + 0.27 for i in range(len(cases))])
        ax.set_yticklabels(names, fontsize=8)
        ax.invert_yaxis()
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
