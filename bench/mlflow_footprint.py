"""MLflow's weight in a serving virtualenv: `mlflow-skinny` against full `mlflow`, and how long
`mlflow.pyfunc.load_model` takes by serialization format, with and without torch installed.

    .venv/bin/python -m bench.mlflow_footprint [--runs 6] [--work bench/.work/mlflow]

1. Three fresh Python venvs: a base of pandas, scikit-learn and skops at this project's
   versions; the base plus `mlflow-skinny`; the base plus full `mlflow` (both at the version of
   mlflow-skinny this project's venv has). Per venv: the bytes of its site-packages, how many
   distributions it holds, and the CPU seconds (user + system, of the child, by getrusage) of
   `import mlflow.pyfunc`, median of --runs. CPU time, because wall time on this shared 2-core
   machine swings by 2x and more between runs.
2. The docs' runnable example (docs/mlflow.md: the iris pipeline), saved with skops (MLflow 3's
   default for scikit-learn) and with cloudpickle: CPU seconds of a process that imports
   `mlflow.pyfunc` and loads it (`load_model`), median of 3, in the mlflow-skinny venv and in a
   copy of it that adds torch 2.13.0, so torch is the only difference.

Writes bench/results/mlflow.{json,md}; docs/mlflow.md includes the two tables (the report marks
them as snippet sections, `packages` and `formats`).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.servers import BENCH

RESULTS = BENCH / "results"
SAVE = """
import sys
import mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
X, y = load_iris(return_X_y=True, as_frame=True)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
mlflow.sklearn.save_model(model, sys.argv[1], serialization_format=sys.argv[2])
"""
LOAD = "import sys, mlflow.pyfunc; mlflow.pyfunc.load_model(sys.argv[1])"


def venv(path: Path, requirements: list[str]) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *requirements,
            ],
            check=True,
        )
    return python


def site_packages(python: Path) -> tuple[int, int]:
    """(bytes of files, number of distributions) of the venv's site-packages."""
    where = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    root = Path(where.stdout.strip())
    size = sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() or p.is_symlink())
    return size, len(list(root.glob("*.dist-info")))


def cpu_seconds(python: Path, code: str, *args: str) -> float:
    """User + system CPU seconds of one `python -c code args` child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(python), "-c", code, *args], check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_cpu(python: Path, runs: int, code: str, *args: str) -> float:
    return round(statistics.median(cpu_seconds(python, code, *args) for _ in range(runs)), 2)


def printed_json(python: Path, code: str, *args: str) -> Any:
    """The JSON value the last line of one `python -c code args` child prints (what a load
    left imported, say)."""
    done = subprocess.run(
        [str(python), "-c", code, *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def model_bytes(model_dir: Path) -> int:
    """The size of a saved model: its files, in every subdirectory."""
    return sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())


def has_torch(python: Path) -> bool:
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('torch') is not None)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return probe.stdout.strip() == "True"


def measure(work: Path, runs: int) -> dict[str, Any]:
    mlflow = version("mlflow-skinny")
    base = [
        f"pandas=={version('pandas')}",
        f"scikit-learn=={version('scikit-learn')}",
        f"skops=={version('skops')}",
    ]
    pythons = {
        "base": venv(work / "base", base),
        "mlflow-skinny": venv(work / "skinny", [*base, f"mlflow-skinny=={mlflow}"]),
        "mlflow": venv(work / "full", [*base, f"mlflow=={mlflow}"]),
        "mlflow-skinny+torch": venv(
            work / "skinny-torch", [*base, f"mlflow-skinny=={mlflow}", "torch==2.13.0"]
        ),
    }
    base_bytes, base_dists = site_packages(pythons["base"])
    packages: list[dict[str, Any]] = []
    for name in ("mlflow-skinny", "mlflow"):
        size, dists = site_packages(pythons[name])
        packages.append(
            {
                "package": f"{name}=={mlflow}",
                "site_packages_bytes": size,
                "added_bytes": size - base_bytes,
                "distributions": dists,
                "import_pyfunc_cpu_s": median_cpu(pythons[name], runs, "import mlflow.pyfunc"),
            }
        )
    with_torch, without = pythons["mlflow-skinny+torch"], pythons["mlflow-skinny"]
    assert has_torch(with_torch) and not has_torch(without)
    formats: list[dict[str, Any]] = []
    for serialization in ("skops", "cloudpickle"):
        model = work / f"iris-{serialization}"
        shutil.rmtree(model, ignore_errors=True)
        subprocess.run(
            [str(without), "-c", SAVE, str(model), serialization], check=True, capture_output=True
        )
        formats.append(
            {
                "format": serialization,
                "torch_installed_cpu_s": median_cpu(with_torch, 3, LOAD, str(model)),
                "torch_absent_cpu_s": median_cpu(without, 3, LOAD, str(model)),
            }
        )
    return {
        "mlflow_version": mlflow,
        "base": base,
        "base_site_packages_bytes": base_bytes,
        "base_distributions": base_dists,
        "runs": runs,
        "packages": packages,
        "formats": formats,
    }


def megabytes(value: int) -> str:
    return f"{value / 1e6:,.0f} MB"


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    lines = [
        "# MLflow in a serving virtualenv",
        "",
        f"Command: `{doc['command']}`. Base venv: {', '.join(doc['base'])} "
        f"({megabytes(doc['base_site_packages_bytes'])} of site-packages, "
        f"{doc['base_distributions']} distributions); CPU seconds are user + system of the "
        f"child, median of {doc['runs']}.",
        "",
        "<!-- --8<-- [start:packages] -->",
        "| | site-packages | added by MLflow | distributions | `import mlflow.pyfunc` CPU s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in doc["packages"]:
        lines.append(
            f"| `{row['package']}` | {megabytes(row['site_packages_bytes'])} "
            f"| +{megabytes(row['added_bytes'])} | {row['distributions']} "
            f"| {row['import_pyfunc_cpu_s']} |"
        )
    lines += [
        "<!-- --8<-- [end:packages] -->",
        "",
        "Importing `mlflow.pyfunc` and loading the runnable example with `load_model`, "
        "CPU s of the process (median of 3), in the mlflow-skinny venv without and with "
        "torch 2.13.0:",
        "",
        "<!-- --8<-- [start:formats] -->",
        "| format | torch installed | torch absent |",
        "| --- | ---: | ---: |",
    ]
    for row in doc["formats"]:
        lines.append(
            f"| {row['format']} | {row['torch_installed_cpu_s']} | {row['torch_absent_cpu_s']} |"
        )
    lines.append("<!-- --8<-- [end:formats] -->")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--work", type=Path, default=BENCH / ".work" / "mlflow")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": f"python -m bench.mlflow_footprint --runs {args.runs}",
        **measure(args.work.resolve(), args.runs),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mlflow.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_markdown(doc, args.out / "mlflow.md")
    print((args.out / "mlflow.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
