"""What one change to kninfer's code costs in images: rebuild time, new bytes in the build
machine's image store, and the new layers a node that holds the previous image must pull.

    .venv/bin/python -m bench.image_rebuild [--before /tmp/old-tree] [--family all]

For each tree (this one and, with `--before`, a baseline checkout: `git worktree add /tmp/old-tree
<commit>`), in a copy of its build context: build the image once (this fills podman's layer cache;
its time depends on what the cache already held and is shown for reference only), add one comment
line to `kninfer/__init__.py`, and build again. Measured on that second build: its wall time, how
much podman's store grew (df of its graph root), and the total size of the layers the new image
does not share with the first. Builds go through deploy/podman-build.sh, as `make image-test`
does; the bench images are removed afterwards. Writes bench/results/image-rebuild.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import git_commit
from bench.servers import BENCH, ROOT

RESULTS = BENCH / "results"
BUILD = ROOT / "deploy" / "podman-build.sh"
PODMAN = ["podman", "--runtime", "runc"]
# What a Dockerfile here may COPY: a change there marks the tree's commit "with changes".
BUILD_CONTEXT = ("Dockerfile", ".dockerignore", "pyproject.toml", "kninfer", "deploy")
# Everything a Dockerfile here may COPY; the rest of a tree (venvs, bench, tests) stays out.
CONTEXT_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "bench",
    "tests",
    "docs",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
)


def podman(*args: str) -> str:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, check=True).stdout


def store_used_bytes() -> int:
    root = podman("info", "--format", "{{.Store.GraphRoot}}").strip()
    return shutil.disk_usage(root).used


def build(family: str, tag: str, context: Path) -> float:
    started = time.monotonic()
    subprocess.run(["bash", str(BUILD), family, tag, str(context)], check=True)
    return time.monotonic() - started


def layers(tag: str) -> list[tuple[str, str, int]]:
    """(diff id, instruction, bytes) per layer, oldest first. The image config's history marks the
    instructions that made no layer; `podman history` (newest first) has each one's size."""
    inspected = json.loads(podman("image", "inspect", tag))[0]
    made = inspected["History"]
    sizes = [
        int(entry["size"])
        for entry in reversed(json.loads(podman("history", "--no-trunc", "--format", "json", tag)))
    ]
    assert len(sizes) == len(made), (tag, len(sizes), len(made))
    layered = [
        (entry.get("created_by", ""), size)
        for entry, size in zip(made, sizes, strict=True)
        if not entry.get("empty_layer")
    ]
    return [
        (diff, how, size)
        for diff, (how, size) in zip(inspected["RootFS"]["Layers"], layered, strict=True)
    ]


def new_layers(first: str, second: str) -> tuple[int, list[str]]:
    """Bytes and instructions of the second image's layers that the first does not have."""
    seen = {diff for diff, _, _ in layers(first)}
    fresh = [(how, size) for diff, how, size in layers(second) if diff not in seen]
    return sum(size for _, size in fresh), [
        f"{instruction(how)} ({size / 1e6:,.1f} MB)" for how, size in fresh
    ]


def instruction(created_by: str) -> str:
    """`COPY dir:... in /opt/kninfer` or `RUN set -eu; ...`, from buildah's history text
    (`|6 ARG=... /bin/sh -c #(nop) COPY ...` or `/bin/sh -c <command>`)."""
    text = " ".join(created_by.split()).split("/bin/sh -c ", 1)[-1]
    text = re.sub(r"\b(dir|file|multi):([0-9a-f]{12})[0-9a-f]+", r"\1:\2", text)
    text = text[len("#(nop) ") :] if text.startswith("#(nop) ") else f"RUN {text}"
    return text if len(text) <= 100 else text[:97] + "..."


def measure(label: str, tree: Path, family: str, work: Path) -> dict[str, Any]:
    context = work / label
    shutil.copytree(tree, context, ignore=CONTEXT_IGNORE)
    first, second = f"localhost/kninfer-bench:{label}-1", f"localhost/kninfer-bench:{label}-2"
    try:
        first_s = build(family, first, context)
        with (context / "kninfer" / "__init__.py").open("a") as file:
            file.write(f"# bench.image_rebuild: a one-line change ({time.time():.0f})\n")
        used = store_used_bytes()
        rebuild_s = build(family, second, context)
        grown = store_used_bytes() - used
        fresh_bytes, fresh = new_layers(first, second)
        size = int(podman("image", "inspect", "--format", "{{.Size}}", second))
    finally:
        subprocess.run([*PODMAN, "rmi", "-f", first, second], capture_output=True, check=False)
    return {
        "tree": str(tree),
        "commit": git_commit(tree, *BUILD_CONTEXT),
        "family": family,
        "first_build_s": round(first_s, 1),
        "rebuild_s": round(rebuild_s, 1),
        "store_growth_bytes": grown,
        "new_layer_bytes": fresh_bytes,
        "new_layers": fresh,
        "image_bytes": size,
    }


def megabytes(value: int) -> str:
    return f"{value / 1e6:,.1f}"


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    runs = doc["runs"]
    lines = [
        f"# One code change, rebuilt: `FAMILY={doc['family']}` image",
        "",
        f"Command: `{doc['command']}`; podman {doc['podman']}, on this machine "
        f"({doc['cpus']} CPUs). The first build of each tree fills the layer cache; the "
        "figures are for the rebuild after one comment line is added to "
        "`kninfer/__init__.py`.",
        "",
        "| tree | rebuild (s) | store growth (MB) | new layers a node pulls (MB) | image (MB) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        lines.append(
            f"| {run['label']} ({run['commit']}) | {run['rebuild_s']} "
            f"| {megabytes(run['store_growth_bytes'])} "
            f"| {megabytes(run['new_layer_bytes'])} | {megabytes(run['image_bytes'])} |"
        )
    lines += ["", "New layers per tree (the instructions that made them):", ""]
    for run in runs:
        lines.append(f"- {run['label']}: " + "; ".join(f"`{layer}`" for layer in run["new_layers"]))
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a baseline checkout to measure first")
    parser.add_argument("--family", default="all", choices=["sklearn", "mlflow", "pytorch", "all"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="kninfer-rebuild-") as tmp:
        trees = ([("before", args.before.resolve())] if args.before else []) + [("after", ROOT)]
        for label, tree in trees:
            runs.append({"label": label, **measure(label, tree, args.family, Path(tmp))})
    command = "python -m bench.image_rebuild" + (f" --before {args.before}" if args.before else "")
    command += f" --family {args.family}"
    doc = {
        "command": command,
        "family": args.family,
        "runs": runs,
        "podman": podman("version", "--format", "{{.Client.Version}}").strip(),
        "cpus": len(os.sched_getaffinity(0)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "image-rebuild.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_markdown(doc, args.out / "image-rebuild.md")
    print((args.out / "image-rebuild.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
