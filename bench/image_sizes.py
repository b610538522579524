"""What each CPU image weighs and what it carries, read from the images `make image-test` built.

    .venv/bin/python -m bench.image_sizes [--out bench/results]
    .venv/bin/python -m bench.image_sizes --cold-start build/image-cold-start.json

Per image (localhost/kninfer:dev-<family> and :dev): podman's size, the frameworks inside with
their versions, the virtualenv's size and its largest packages, measured inside the image by
its own Python. Image pull is part of a cold start on a fresh node, which is why each family has
an image of its own. `make image-test` runs this after its builds; docs/deploy.md includes the
report. Writes bench/results/images.{json,md}.

`--cold-start FILE` measures nothing: it adds the cold starts that the pod tests measured
(tests/test_images.py writes FILE; `make image-test` runs this after them) to the images.json
already written, and writes images.md again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.servers import BENCH

RESULTS = BENCH / "results"
IMAGES = [
    ("sklearn", "localhost/kninfer:dev-sklearn"),
    ("onnx", "localhost/kninfer:dev-onnx"),
    ("mlflow", "localhost/kninfer:dev-mlflow"),
    ("pytorch", "localhost/kninfer:dev-pytorch"),
    ("all", "localhost/kninfer:dev"),
]
FRAMEWORKS = ("scikit-learn", "onnxruntime", "mlflow-skinny", "torch", "kserve")
# Run by the image's Python with FRAMEWORKS as arguments: sizes of the venv and of each top-level
# package in site-packages, and the frameworks' versions.
INSIDE = """
import importlib.metadata as md, json, os, sys
def du(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.lstat(os.path.join(root, f)).st_size for f in files)
    return total
site = next(p for p in sys.path if p.endswith("site-packages"))
packages = {n: du(os.path.join(site, n)) for n in os.listdir(site)
            if os.path.isdir(os.path.join(site, n)) and not n.endswith(".dist-info")
            and n != "__pycache__"}
versions = {}
for name in sys.argv[1:]:
    try:
        versions[name] = md.version(name)
    except md.PackageNotFoundError:
        pass
print(json.dumps({"venv_bytes": du(sys.prefix), "packages": packages, "versions": versions}))
"""


def measure(tag: str) -> dict[str, Any]:
    size = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Size}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    inside = subprocess.run(
        [
            "podman",
            "--runtime",
            "runc",
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
            "--entrypoint",
            "python",
            tag,
            "-c",
            INSIDE,
            *FRAMEWORKS,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {"image": tag, "image_bytes": int(size), **json.loads(inside)}


def megabytes(value: int) -> str:
    return f"{value / 1e6:,.0f}"


def write_markdown(rows: list[dict[str, Any]], path: Path) -> None:
    lines = [
        "# The CPU images",
        "",
        "Command: `python -m bench.image_sizes` (run by `make image-test` after its builds), "
        "on the images podman built here from the Debian bookworm base. Sizes are "
        "uncompressed, in MB.",
        "",
        "| `FAMILY=` | carries | image | virtualenv | largest packages in it |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for row in rows:
        carries = ", ".join(f"{name} {version}" for name, version in row["versions"].items())
        largest = sorted(row["packages"].items(), key=lambda item: -item[1])[:4]
        lines.append(
            f"| `{row['family']}` | {carries} | {megabytes(row['image_bytes'])} "
            f"| {megabytes(row['venv_bytes'])} | "
            + ", ".join(f"{name} {megabytes(size)}" for name, size in largest)
            + " |"
        )
    colds = [(row["family"], row["cold_start"]) for row in rows if row.get("cold_start")]
    if colds:
        lines += [
            "",
            "**Cold start inside the image**: `podman run` to the first 200 on V2 infer, median "
            "of 3, each image and its comparison started in turns (`make image-test`, "
            "tests/test_images.py, on the machine that built the images); in brackets, the "
            "image's time over the other's.",
            "",
            "| `FAMILY=` | model | cold start | next to it |",
            "| --- | --- | ---: | --- |",
        ]
        for family, cold in colds:
            others = "; ".join(
                f"{what}: {seconds:.2f} s ({cold['image_s'] / seconds:.2f}x)"
                for what, seconds in cold["compared"].items()
            )
            lines.append(f"| `{family}` | {cold['model']} | {cold['image_s']:.2f} s | {others} |")
    path.write_text("\n".join(lines) + "\n")


def add_cold_starts(out: Path, measured: Path) -> None:
    """Merge the pod tests' cold starts (family -> {model, image_s, compared}) into
    out/images.json and write out/images.md again."""
    rows = json.loads((out / "images.json").read_text())
    cold = json.loads(measured.read_text())
    unknown = sorted(set(cold) - {row["family"] for row in rows})
    if unknown:
        raise SystemExit(f"{measured}: no image measured for {', '.join(unknown)}")
    for row in rows:
        if row["family"] in cold:
            row["cold_start"] = cold[row["family"]]
    (out / "images.json").write_text(json.dumps(rows, indent=2) + "\n")
    write_markdown(rows, out / "images.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--cold-start",
        type=Path,
        help="add the cold starts tests/test_images.py wrote there; measure nothing",
    )
    args = parser.parse_args(argv)
    if args.cold_start is not None:
        add_cold_starts(args.out, args.cold_start)
        print((args.out / "images.md").read_text())
        return 0
    rows = [{"family": family, **measure(tag)} for family, tag in IMAGES]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "images.json").write_text(json.dumps(rows, indent=2) + "\n")
    write_markdown(rows, args.out / "images.md")
    print((args.out / "images.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
