"""The cold-start matrix: spawn to the first successful V2 answer, per family and model size.

For each case: `kninfer serve` on the model, its floor (a bare script that imports the
framework, loads the model the fastest correct way and predicts once), and KServe's documented
pattern where KServe has one for that model (its sklearnserver start-up path for a joblib
estimator, bench/peers/kserve_sklearnserver.py). Each is timed from process spawn:
- `ready_s`: to the first 200 on `/v2/health/ready` (the floor: to its "loaded" line);
- `first_s`: the first inference after that (weights loaded lazily are read here);
- `total_s`: spawn to the first successful answer, the figure a scaled-from-zero request waits.
Medians of `--runs` rounds, cases and servers taking turns. Page cache warm (the model read
just before), and cold: the model's files evicted first (posix_fadvise DONTNEED after fsync, as
after a fresh download onto the node).

    .venv/bin/python -m bench.cold            # writes bench/results/cold.{json,md}
    .venv/bin/python -m bench.cold --quick    # small models, one round (tests/test_bench.py)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.harness import free_port
from bench.servers import BENCH, ROOT, child_env, venv_python

WORK = BENCH / ".work" / "cold"
RESULTS = BENCH / "results"


@dataclass
class Case:
    name: str
    family: str
    size: str
    model_dir: Path
    args: list[str]
    body: dict[str, Any]
    floor: str  # Python source; prints "loaded" once the model is in memory, then predicts
    kserve: bool = False  # KServe's sklearnserver pattern applies
    size_mb: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)


# ---- models ---------------------------------------------------------------------------------


def _forest(dir_: Path, trees: int, fmt: str) -> None:
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    rows = 2000 if trees < 50 else 40000
    x = rng.normal(size=(rows, 20))
    # Noisy labels grow the trees to purity: about 1 MB a tree at 40,000 rows.
    y = (x[:, 0] + x[:, 1] + rng.normal(scale=2.0, size=rows) > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=trees, random_state=0).fit(x, y)
    dir_.mkdir(parents=True, exist_ok=True)
    if fmt == "skops":
        import skops.io as sio

        sio.dump(forest, dir_ / "model.skops")
    else:
        joblib.dump(forest, dir_ / "model.joblib")


def _pipeline(dir_: Path) -> None:
    """A DataFrame pipeline with string and numeric columns and string labels."""
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "city": rng.choice(["oslo", "rome", "lima"], 300),
            "plan": rng.choice(["basic", "pro"], 300),
            "age": rng.uniform(18, 80, 300),
            "income": rng.normal(50, 10, 300),
            "visits": rng.integers(0, 30, 300).astype(float),
        }
    )
    labels = np.where((frame.age > 45) & (frame.plan == "pro"), "churn", "stay")
    model = make_pipeline(
        ColumnTransformer(
            [
                ("cat", OneHotEncoder(), ["city", "plan"]),
                ("num", StandardScaler(), ["age", "income", "visits"]),
            ]
        ),
        GradientBoostingClassifier(n_estimators=30, random_state=0),
    ).fit(frame, labels)
    dir_.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, dir_ / "model.joblib")


def _audited(dir_: Path, trees: int) -> None:
    """`kninfer audit` of the skops forest: model.skops plus its pinned joblib copy."""
    _forest(dir_, trees, "skops")
    # The CLI, in its own process: importing kserve here would parse this script's argv.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kninfer",
            "audit",
            str(dir_),
            "--skops-trusted",
            "sklearn.tree._tree.Tree",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    digest = done.stdout.split("sha256 ", 1)[1].split()[0]
    (dir_.parent / f"{dir_.name}.sha256").write_text(digest)


TORCH_MODULE = textwrap.dedent('''
    import torch


    class Stack(torch.nn.Module):
        """`layers` Linear(width, width) with ReLU: 16 x 4096 is a 1.07 GB float32 network."""

        def __init__(self, layers: int = 16, width: int = 4096) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width)
                                              for _ in range(layers))

        def forward(self, x):
            for layer in self.layers:
                x = torch.relu(layer(x))
            return x
''')


def _torch(dir_: Path, fmt: str, layers: int, width: int) -> None:
    import torch

    dir_.mkdir(parents=True, exist_ok=True)
    (dir_ / "stack.py").write_text(TORCH_MODULE)
    sys.path.insert(0, str(dir_))
    try:
        from stack import Stack  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(dir_))
    torch.manual_seed(0)
    model = Stack(layers, width).eval()
    spec = (
        f"inputs: [{{name: x, datatype: FP32, shape: [-1, {width}]}}]\n"
        f"outputs: [{{name: output-0, datatype: FP32, shape: [-1, {width}]}}]\n"
    )
    (dir_ / "kninfer.yaml").write_text(
        spec
        + (
            f"module: stack:Stack\nmodule_kwargs: {{layers: {layers}, width: {width}}}\n"
            if fmt in ("eager", "safetensors")
            else ""
        )
    )
    if fmt == "eager":
        torch.save(model.state_dict(), dir_ / "model.pth")
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(model.state_dict(), str(dir_ / "model.safetensors"))
    elif fmt == "pt2":
        batch = torch.export.Dim("batch")
        program = torch.export.export(
            model, (torch.zeros(2, width),), dynamic_shapes={"x": {0: batch}}
        )
        torch.export.save(program, str(dir_ / "model.pt2"))
    else:
        torch.jit.save(torch.jit.script(model), str(dir_ / "model.pt"))
    sys.modules.pop("stack", None)


def _mlflow(dir_: Path, kind: str) -> None:
    import mlflow.pyfunc
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = ["a", "b", "c", "d"]
    if kind == "sklearn":
        model = LogisticRegression(max_iter=500).fit(x, y)
        mlflow.sklearn.save_model(
            model,
            dir_,
            pip_requirements=["scikit-learn"],
            serialization_format="cloudpickle",
            signature=infer_signature(x, model.predict(x)),
        )
        return
    code = dir_.parent / f"{dir_.name}_model.py"
    code.write_text(
        textwrap.dedent("""
        import mlflow


        class Sum(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                return model_input.sum(axis=1)


        mlflow.models.set_model(Sum())
    """)
    )
    mlflow.pyfunc.save_model(
        dir_,
        python_model=str(code),
        pip_requirements=["pandas"],
        signature=infer_signature(x, pd.Series(x.sum(axis=1))),
    )


def cases(quick: bool, work: Path = WORK) -> list[Case]:
    trees = 8 if quick else 200  # 200 noisy trees on 40,000 rows: about 200 MB
    layers, width = (2, 256) if quick else (16, 4096)
    row20 = {
        "inputs": [{"name": "input-0", "shape": [1, 20], "datatype": "FP64", "data": [0.1] * 20}]
    }
    rowx = {
        "inputs": [{"name": "x", "shape": [1, width], "datatype": "FP32", "data": [0.01] * width}]
    }
    churn = {
        "inputs": [
            {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["oslo"]},
            {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["pro"]},
            {"name": "age", "shape": [1], "datatype": "FP64", "data": [50.0]},
            {"name": "income", "shape": [1], "datatype": "FP64", "data": [50.0]},
            {"name": "visits", "shape": [1], "datatype": "FP64", "data": [3.0]},
        ]
    }
    iris4 = {
        "inputs": [
            {"name": n, "shape": [1], "datatype": "FP64", "data": [v]}
            for n, v in zip("abcd", [5.1, 3.5, 1.4, 0.2], strict=True)
        ]
    }
    sk = ["--predictor", "sklearn"]
    forest_floor = (
        "import joblib, numpy as np\n"
        "m = joblib.load('{dir}/model.joblib', mmap_mode='r')\n"
        "print('loaded', flush=True)\nm.predict(np.full((1, 20), 0.1))\n"
    )
    skops_floor = (
        "import skops.io as sio, numpy as np\n"
        "m = sio.load('{dir}/model.skops', trusted=['sklearn.tree._tree.Tree'])\n"
        "print('loaded', flush=True)\nm.predict(np.full((1, 20), 0.1))\n"
    )
    torch_floor_eager = (
        "import sys, torch\nsys.path.insert(0, '{dir}')\nfrom stack import Stack\n"
        "with torch.device('meta'):\n    m = Stack(" + f"{layers}, {width}" + ")\n"
        "m.load_state_dict(torch.load('{dir}/model.pth', mmap=True, weights_only=True), "
        "assign=True)\nprint('loaded', flush=True)\n"
        "with torch.inference_mode():\n    m(torch.full((1, " + str(width) + "), 0.01))\n"
    )
    torch_floor_st = torch_floor_eager.replace(
        "torch.load('{dir}/model.pth', mmap=True, weights_only=True)",
        "__import__('safetensors.torch').torch.load_file('{dir}/model.safetensors')",
    )
    torch_floor_pt2 = (
        "import torch\nm = torch.export.load('{dir}/model.pt2').module()\n"
        "print('loaded', flush=True)\nwith torch.inference_mode():\n"
        "    m(torch.full((1, " + str(width) + "), 0.01))\n"
    )
    torch_floor_ts = (
        "import torch\nm = torch.jit.load('{dir}/model.pt')\nprint('loaded', flush=True)\n"
        "with torch.inference_mode():\n    m(torch.full((1, " + str(width) + "), 0.01))\n"
    )
    mlflow_floor = (
        "import mlflow.pyfunc, pandas as pd\nm = mlflow.pyfunc.load_model('{dir}')\n"
        "print('loaded', flush=True)\n"
        "m.predict(pd.DataFrame({{'a': [5.1], 'b': [3.5], 'c': [1.4], "
        "'d': [0.2]}}))\n"
    )
    pipeline_floor = (
        "import joblib, pandas as pd\nm = joblib.load('{dir}/model.joblib')\n"
        "print('loaded', flush=True)\nm.predict(pd.DataFrame({{'city': ['oslo'], "
        "'plan': ['pro'], 'age': [50.0], 'income': [50.0], 'visits': [3.0]}}))\n"
    )
    size = "small" if quick else "real"
    built: list[tuple[Case, Callable[[Path], None]]] = [
        (
            Case(
                "sklearn pipeline (joblib)",
                "sklearn",
                "small",
                work / "pipeline",
                sk,
                churn,
                pipeline_floor,
            ),
            _pipeline,
        ),
        (
            Case(
                f"sklearn forest {trees} trees (joblib)",
                "sklearn",
                size,
                work / f"forest-{trees}-joblib",
                sk,
                row20,
                forest_floor,
                kserve=True,
            ),
            lambda d: _forest(d, trees, "joblib"),
        ),
        (
            Case(
                f"sklearn forest {trees} trees (skops)",
                "sklearn",
                size,
                work / f"forest-{trees}-skops",
                [*sk, "--skops-trusted", "sklearn.tree._tree.Tree"],
                row20,
                skops_floor,
            ),
            lambda d: _forest(d, trees, "skops"),
        ),
        (
            Case(
                f"sklearn forest {trees} trees (skops, audited: pinned joblib)",
                "sklearn",
                size,
                work / f"forest-{trees}-audited",
                [*sk, "--model-sha256", "{sha256}"],
                row20,
                forest_floor.replace("model.joblib", "model.audited.joblib"),
            ),
            lambda d: _audited(d, trees),
        ),
        (
            Case(
                "mlflow sklearn flavor",
                "mlflow",
                "small",
                work / "mlflow-sklearn",
                ["--predictor", "mlflow"],
                iris4,
                mlflow_floor,
            ),
            lambda d: _mlflow(d, "sklearn"),
        ),
        (
            Case(
                "mlflow pyfunc",
                "mlflow",
                "small",
                work / "mlflow-pyfunc",
                ["--predictor", "mlflow"],
                iris4,
                mlflow_floor,
            ),
            lambda d: _mlflow(d, "pyfunc"),
        ),
    ]
    for fmt, floor, label in (
        ("eager", torch_floor_eager, "state_dict"),
        ("safetensors", torch_floor_st, "safetensors"),
        ("pt2", torch_floor_pt2, ".pt2"),
        ("torchscript", torch_floor_ts, "TorchScript"),
    ):
        built.append(
            (
                Case(
                    f"pytorch {layers}x{width} ({label})",
                    "pytorch",
                    size,
                    work / f"torch-{layers}x{width}-{fmt}",
                    ["--predictor", "pytorch"],
                    rowx,
                    floor,
                ),
                lambda d, f=fmt: _torch(d, f, layers, width),
            )
        )
    out = []
    for case, build in built:
        stamp = case.model_dir / ".built"
        if not stamp.exists():
            print(f"building {case.name} in {case.model_dir}", flush=True)
            build(case.model_dir)
            stamp.write_text("ok")
        digest = case.model_dir.parent / f"{case.model_dir.name}.sha256"
        if digest.is_file():
            case.args = [a.replace("{sha256}", digest.read_text().strip()) for a in case.args]
        case.size_mb = round(
            sum(
                p.stat().st_size
                for p in case.model_dir.rglob("*")
                if p.is_file() and p.name != "model.skops" or p.is_file() and not digest.is_file()
            )
            / 1e6,
            1,
        )
        out.append(case)
    return out


# ---- measuring ------------------------------------------------------------------------------


def evict(model_dir: Path) -> None:
    """Drop the model's files from the page cache, as after a fresh download onto the node."""
    for path in model_dir.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def warm(model_dir: Path) -> None:
    for path in model_dir.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                while f.read(1 << 24):
                    pass


def _server(case: Case, kind: str) -> tuple[list[str], dict[str, str], int]:
    port, grpc = free_port(), free_port()
    if kind == "kninfer":
        return (
            [
                sys.executable,
                "-m",
                "kninfer",
                "serve",
                *case.args,
                "--model-dir",
                str(case.model_dir),
                "--model-name",
                "m",
                "--host",
                "127.0.0.1",
                "--http-port",
                str(port),
                "--grpc-port",
                str(grpc),
            ],
            {},
            port,
        )
    python = venv_python("kserve", lambda m: print(m, flush=True))
    return (
        [
            str(python),
            str(BENCH / "peers" / "kserve_sklearnserver.py"),
            "--model_name",
            "m",
            "--model_dir",
            str(case.model_dir),
            "--http_port",
            str(port),
            "--grpc_port",
            str(grpc),
        ],
        {},
        port,
    )


def time_server(case: Case, kind: str, timeout: float = 300) -> dict[str, float]:
    argv, env, port = _server(case, kind)
    body = json.dumps(case.body).encode()
    log_path = case.model_dir.parent / f"{case.model_dir.name}-{kind}.log"
    log = log_path.open("wb")
    spawned = time.perf_counter()
    process = subprocess.Popen(
        argv,
        env=child_env(env),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        try:
            ready = _poll(
                lambda: (
                    httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5).status_code
                    == 200
                ),
                process,
                timeout,
            )
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(
                f"{case.name} ({kind}): {exc}:\n{log_path.read_text(errors='replace')[-3000:]}"
            ) from None
        ready_s = time.perf_counter() - spawned
        before = time.perf_counter()
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v2/models/m/infer",
            content=body,
            headers={"content-type": "application/json"},
            timeout=timeout,
        )
        if reply.status_code != 200:
            raise RuntimeError(f"{case.name} ({kind}): {reply.status_code} {reply.text[:500]}")
        first_s = time.perf_counter() - before
        assert ready
        return {"ready_s": ready_s, "first_s": first_s, "total_s": ready_s + first_s}
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _poll(check: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before it was ready")
        try:
            if check():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.005)
    raise TimeoutError("not ready in time")


def time_floor(case: Case, timeout: float = 300) -> dict[str, float]:
    # The cyclic GC off while loading, as kninfer's start-up has it: a floor is the fastest
    # correct way, and a framework import builds hundreds of thousands of objects.
    source = "import gc\ngc.disable()\n" + case.floor.format(dir=case.model_dir)
    spawned = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", source],
        cwd=ROOT,
        env=child_env({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    ready_s = time.perf_counter() - spawned
    _, err = process.communicate(timeout=timeout)
    total_s = time.perf_counter() - spawned
    if process.returncode != 0 or line.strip() != "loaded":
        raise RuntimeError(f"floor for {case.name} failed: {err[-2000:]}")
    return {"ready_s": ready_s, "first_s": total_s - ready_s, "total_s": total_s}


def median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}


def run(
    quick: bool,
    runs: int,
    cold_runs: int,
    peers: bool = True,
    work: Path = WORK,
    only: str | None = None,
) -> list[Case]:
    found = [c for c in cases(quick, work) if only is None or only in c.name]
    if not peers:
        for case in found:
            case.kserve = False
    for cache in ("warm", "cold"):
        rounds = runs if cache == "warm" else cold_runs
        samples: dict[tuple[str, str], list[dict[str, float]]] = {}
        for n in range(rounds):
            for case in found:
                for kind in ("kninfer", "floor", *(["kserve"] if case.kserve else [])):
                    (evict if cache == "cold" else warm)(case.model_dir)
                    timing = time_floor(case) if kind == "floor" else time_server(case, kind)
                    samples.setdefault((case.name, kind), []).append(timing)
            print(f"{cache} round {n + 1}/{rounds} done", flush=True)
        for case in found:
            for kind in ("kninfer", "floor", "kserve"):
                rows = samples.get((case.name, kind))
                if rows:
                    case.results.setdefault(cache, {})[kind] = median(rows)
    return found


# ---- reporting ------------------------------------------------------------------------------

TARGET = {"sklearn": 1.25, "mlflow": 1.25, "pytorch": 1.25}


def target_of(case: Case) -> float:
    if case.family == "pytorch" and "state_dict" in case.name:
        return 1.3
    return TARGET[case.family]


def report(found: list[Case], command: str) -> str:
    lines = [
        "# Cold start matrix",
        "",
        f"`{command}`; spawn to the first successful V2 answer, median of the rounds, page "
        "cache warm and cold (model files evicted first). `floor`: a bare script that imports "
        "the framework, loads the model the fastest correct way and predicts once. Ratios are "
        "kninfer / floor in the same run (this machine is shared: absolute times drift).",
        "",
        "| model | size | cache | kninfer total (ready + first request) | floor | ratio | "
        "target | met | KServe pattern |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in found:
        for cache in ("warm", "cold"):
            result = case.results.get(cache)
            if not result:
                continue
            k, f = result["kninfer"], result["floor"]
            ratio = k["total_s"] / f["total_s"]
            target = target_of(case)
            kserve = result.get("kserve")
            peer = (
                (f"{kserve['total_s']:.2f} s ({kserve['total_s'] / k['total_s']:.2f}x kninfer's)")
                if kserve
                else "-"
            )
            lines.append(
                f"| {case.name} | {case.size_mb:g} MB | {cache} | {k['total_s']:.2f} s "
                f"({k['ready_s']:.2f} + {k['first_s']:.3f}) | {f['total_s']:.2f} s | "
                f"{ratio:.2f}x | {target:g}x | {'yes' if ratio <= target else 'no'} | {peer} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small models, one round")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=WORK, help="where the models are built")
    parser.add_argument("--only", help="the cases whose name contains this text")
    parser.add_argument("--no-plot", action="store_true", help="skip cold.png (matplotlib)")
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="skip KServe's pattern (it needs bench/.venvs/kserve from PyPI)",
    )
    options = parser.parse_args(argv)
    runs, cold_runs = (1, 1) if options.quick else (options.runs, options.cold_runs)
    command = (
        "python -m bench.cold"
        + (" --quick" if options.quick else f" --runs {runs} --cold-runs {cold_runs}")
        + (f" --only '{options.only}'" if options.only else "")
    )
    found = run(
        options.quick,
        runs,
        cold_runs,
        peers=not options.no_peers,
        work=options.work,
        only=options.only,
    )
    options.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": command,
        "cases": [
            {
                "name": c.name,
                "family": c.family,
                "size": c.size,
                "size_mb": c.size_mb,
                "target": target_of(c),
                "results": c.results,
            }
            for c in found
        ],
    }
    (options.out / "cold.json").write_text(json.dumps(doc, indent=2) + "\n")
    markdown = report(found, command)
    if not options.no_plot:
        subprocess.run(
            [
                str(venv_python("report", lambda m: print(m, flush=True))),
                str(BENCH / "plot_cold.py"),
                str(options.out / "cold.json"),
                str(options.out / "cold.png"),
            ],
            check=True,
        )
        markdown += "\n![cold start matrix](cold.png)\n"
    (options.out / "cold.md").write_text(markdown)
    print(report(found, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
