"""The servers under test: kninfer and its peers, each in its own virtualenv.

Every peer serves the same iris LogisticRegression (`model.joblib`, trained by kninfer.iris with
the project's scikit-learn, whose version every peer venv pins so the pickle loads unchanged) and
answers the same V2 request on `POST /v2/models/iris/infer`.

Virtualenvs live under bench/.venvs/<name> (gitignored) and are (re)built when their requirement
list changes; `--peer-python` runs the light peers (FastAPI, bare ASGI) on the project's own
interpreter instead, which is what the CI smoke test does to stay offline and quick.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENVS = BENCH / ".venvs"
PEERS = BENCH / "peers"


def sklearn_pin() -> str:
    import sklearn

    return f"scikit-learn=={sklearn.__version__}"


# name -> pip requirements (scikit-learn pinned to the project's version at run time)
VENV_REQUIREMENTS: dict[str, Callable[[], list[str]]] = {
    "kserve": lambda: ["kserve==0.21.0", "kserve-storage==0.21.0", sklearn_pin(), "joblib"],
    # MLServer 1.7 pins fastapi<0.116, so it cannot share kninfer's environment.
    # uvloop 0.22+ raises in asyncio.get_event_loop() where MLServer 1.7 workers call it.
    "mlserver": lambda: [
        "mlserver==1.7.1",
        "mlserver-sklearn==1.7.1",
        "uvloop==0.21.0",
        sklearn_pin(),
    ],
    "fastapi": lambda: ["fastapi", "uvicorn[standard]", sklearn_pin(), "joblib", "orjson"],
    "report": lambda: ["matplotlib"],
    # bench.torch_onnx: the dynamo ONNX exporter needs onnxscript, which kninfer does not ship;
    # torch is the project's CPU build (pip finds it locally).
    "torch-onnx-export": lambda: ["torch==2.13.0", "onnxscript==0.7.2", "onnx==1.23.2"],
}


def venv_python(name: str, log: Callable[[str], None] = print) -> Path:
    """bench/.venvs/<name>/bin/python, created and installed when missing or out of date."""
    requirements = VENV_REQUIREMENTS[name]()
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(requirements)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log(f"creating virtualenv {venv} ({', '.join(requirements)})")
    base = getattr(sys, "_base_executable", sys.executable)
    if not python.exists():
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
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
    stamp.write_text(wanted)
    return python


@dataclass
class ServerSpec:
    """How to start one server on given ports; `ready_log` marks the kninfer cold-start line."""

    name: str
    label: str
    command: Callable[[int, int, int], list[str]]  # (http, grpc, metrics) ports -> argv
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    load: bool = True  # False: cold start only (kept out of the throughput sweep)


def _mlserver_folder(
    work: Path, parallel_workers: int | None, model_dir: Path, ports: tuple[int, int, int]
) -> Path:
    """A model repository for `mlserver start`: settings.json + iris/model-settings.json."""
    name = "mlserver" if parallel_workers is None else f"mlserver-pw{parallel_workers}"
    folder = work / name
    (folder / "iris").mkdir(parents=True, exist_ok=True)
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "http_port": ports[0],
        "grpc_port": ports[1],
        "metrics_port": ports[2],
        "debug": False,
    }
    if parallel_workers is not None:
        settings["parallel_workers"] = parallel_workers
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "iris" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "iris",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": str(model_dir / "model.joblib")},
            }
        )
    )
    return folder


def build_specs(
    names: list[str],
    model_dir: Path,
    work: Path,
    peer_python: bool,
    log: Callable[[str], None] = print,
) -> list[ServerSpec]:
    """ServerSpecs for `names` (kninfer, kserve, kserve-sklearnserver, mlserver, mlserver-pw0,
    fastapi, bare)."""
    specs: list[ServerSpec] = []
    base_env = {"PYTHONUNBUFFERED": "1", "XDG_CACHE_HOME": str(work / "cache")}
    for name in names:
        if name == "kninfer":
            python = ROOT / ".venv" / "bin" / "python"
            if not python.exists():
                python = Path(sys.executable)
            specs.append(
                ServerSpec(
                    "kninfer",
                    "kninfer",
                    lambda h, g, m, py=python: [
                        str(py),
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
                    env=base_env,
                    cwd=ROOT,
                )
            )
        elif name == "kserve":
            python = venv_python("kserve", log)
            specs.append(
                ServerSpec(
                    "kserve",
                    "KServe 0.21 custom model",
                    lambda h, g, m, py=python: [
                        str(py),
                        str(PEERS / "kserve_custom.py"),
                        "--model_dir",
                        str(model_dir),
                        "--model_name",
                        "iris",
                        "--http_port",
                        str(h),
                        "--grpc_port",
                        str(g),
                    ],
                    env=base_env,
                    cwd=work,
                )
            )
        elif name == "kserve-sklearnserver":
            python = venv_python("kserve", log)
            specs.append(
                ServerSpec(
                    name,
                    "KServe 0.21 sklearnserver start-up path",
                    lambda h, g, m, py=python: [
                        str(py),
                        str(PEERS / "kserve_sklearnserver.py"),
                        "--model_dir",
                        str(model_dir),
                        "--model_name",
                        "iris",
                        "--http_port",
                        str(h),
                        "--grpc_port",
                        str(g),
                    ],
                    env=base_env,
                    cwd=work,
                    load=False,
                )
            )
        elif name in ("mlserver", "mlserver-pw0"):
            python = venv_python("mlserver", log)
            workers = 0 if name == "mlserver-pw0" else None
            label = (
                "MLServer 1.7 (parallel_workers: 0)" if workers == 0 else "MLServer 1.7 (default)"
            )

            def command(
                h: int, g: int, m: int, py: Path = python, workers: int | None = workers
            ) -> list[str]:
                folder = _mlserver_folder(work, workers, model_dir, (h, g, m))
                return [str(py.parent / "mlserver"), "start", str(folder)]

            specs.append(ServerSpec(name, label, command, env=base_env, cwd=work))
        elif name in ("fastapi", "bare"):
            python = Path(sys.executable) if peer_python else venv_python("fastapi", log)
            module = "fastapi_app:app" if name == "fastapi" else "bare_asgi:app"
            label = "FastAPI wrapper" if name == "fastapi" else "bare ASGI + predict (floor)"
            specs.append(
                ServerSpec(
                    name,
                    label,
                    lambda h, g, m, py=python, module=module: uvicorn_peer(py, module, h),
                    env={**base_env, "MODEL_DIR": str(model_dir)},
                    cwd=work,
                )
            )
        else:
            raise SystemExit(f"unknown server '{name}'")
    return specs


def uvicorn_peer(python: Path, module: str, port: int) -> list[str]:
    """argv of a bare peer app in bench/peers (`module:app`) on uvicorn, quiet, on `port`."""
    return [
        str(python),
        "-m",
        "uvicorn",
        module,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--app-dir",
        str(PEERS),
    ]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KNINFER_", "PROMETHEUS_", "VIRTUAL_ENV", "MLSERVER_"))
    }
    env.pop("PORT", None)
    env.update(extra)
    return env
