"""The pod contract, in a real container runtime: every rendered manifest's pods run from the built
images (`make image-test` builds them first; tests/support/pods.py says how a container spec
becomes a `podman run`, and what differs from a cluster).

For each CPU manifest under kserve/ and knative/ (the GPU one needs a GPU node and the CUDA image;
the eventing file's sinks are Knative's event-display image, not ours): start its containers,
pass the startup, readiness and liveness probes as the spec states them, answer V2 REST, gRPC and
a CloudEvent, then SIGTERM inside the grace period: exit 0, and every request sent while it
stops answered. The iris pipeline runs its transformer and predictor containers together.
Cold start inside the image (podman run to the first 200) is measured next to the host's.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from tests.support.paths import ROOT
from tests.support.pods import Container, ContainerSpec, image_size, pod_containers, running
from tests.support.servers import free_port, grpc_stub, server_env

pytestmark = [pytest.mark.image, pytest.mark.xdist_group("images")]

FAMILIES = ("sklearn", "mlflow", "pytorch")
ROW = [5.1, 3.5, 1.4, 0.2]
V2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}


def manifests() -> list[Path]:
    return [
        p
        for d in ("kserve", "knative")
        for p in sorted((ROOT / d).glob("*.yaml"))
        if "gpu" not in p.name and not p.name.endswith("-eventing.yaml")
    ]


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module", autouse=True)
def images() -> None:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make image-test`, which installs it")
    for family in ("", *(f"-{f}" for f in FAMILIES)):
        exists = subprocess.run(
            ["podman", "image", "exists", f"localhost/kninfer:dev{family}"], check=False
        )
        assert exists.returncode == 0, (
            f"localhost/kninfer:dev{family} is missing: run `make image-test`, which builds it"
        )


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What KServe's storage initializer leaves at /mnt/models, readable by any UID."""
    from kninfer.iris import ensure_iris_model

    model_dir = ensure_iris_model(tmp_path_factory.mktemp("mnt-models") / "iris")
    model_dir.chmod(0o755)
    for path in model_dir.iterdir():
        path.chmod(0o644)
    return model_dir


def start(spec: ContainerSpec, iris_dir: Path, predictor_port: int | None = None) -> Container:
    args = spec.spec.get("args", [])
    mounts = spec.storage_uri is not None or "--storage-uri" in args
    return Container(spec, free_port(), free_port(), iris_dir if mounts else None, predictor_port)


RECORD = json.dumps(
    dict(zip(["sepal_length", "sepal_width", "petal_length", "petal_width"], ROW, strict=True))
)
# What each role takes: the predictor the iris matrix, the iris transformer JSON records.
BODIES = {
    "predictor": V2,
    "transformer": {
        "inputs": [{"name": "records", "shape": [1], "datatype": "BYTES", "data": [RECORD]}]
    },
}


def grpc_request(role: str, model: str) -> pb.ModelInferRequest:
    if role == "transformer":
        tensor = pb.ModelInferRequest.InferInputTensor(name="records", datatype="BYTES", shape=[1])
        tensor.contents.bytes_contents.append(RECORD.encode())
    else:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="input-0", datatype="FP64", shape=[1, 4]
        )
        tensor.contents.fp64_contents.extend(ROW)
    return pb.ModelInferRequest(model_name=model, inputs=[tensor])


def check_traffic(container: Container, model: str) -> None:
    """V2 REST, gRPC and a binary-mode CloudEvent, each answered with setosa (class 0)."""
    role = container.spec.role
    body = BODIES[role]
    reply = httpx.post(f"{container.url}/v2/models/{model}/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    outputs = reply.json()["outputs"]
    assert outputs[0]["data"] in ([0], ["setosa"]), outputs
    with grpc_stub(f"127.0.0.1:{container.grpc_port}") as stub:
        answer = stub.ModelInfer(grpc_request(role, model), timeout=30)
        assert answer.outputs[0].name in ("predict", "label")
    event = httpx.post(
        f"{container.url}/v2/models/{model}/infer",
        json=body,
        timeout=30,
        headers={
            "ce-specversion": "1.0",
            "ce-id": "image-test-1",
            "ce-source": "tests/images",
            "ce-type": "dev.kninfer.inference.request",
            "content-type": "application/json",
        },
    )
    assert event.status_code == 200, event.text
    assert event.headers["ce-type"] == "dev.kninfer.inference.response"


def stop_under_load(container: Container, model: str) -> tuple[int, list[int], list[str]]:
    """SIGTERM while a client keeps sending; the exit code, the statuses it got, and the
    requests that were accepted but never answered (read errors)."""
    statuses: list[int] = []
    lost: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    statuses.append(
                        http.post(
                            f"{container.url}/v2/models/{model}/infer",
                            json=BODIES[container.spec.role],
                        ).status_code
                    )
                except httpx.ConnectError:
                    return  # the listener is closed: refused, never accepted
                except httpx.HTTPError as exc:
                    lost.append(f"{type(exc).__name__}: {exc}")
                    return

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.5)
    code = container.stop()
    stop.set()
    thread.join(30)
    return code, statuses, lost


@pytest.mark.parametrize("manifest", manifests(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rendered_pods_run_and_stop_cleanly(manifest: Path, iris_dir: Path) -> None:
    docs = documents(manifest)
    runtimes = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServingRuntime"}
    pods = [c for d in docs if d["kind"] != "ServingRuntime" for c in pod_containers(d, runtimes)]
    assert pods, f"{manifest}: no containers"
    predictors = [c for c in pods if c.role == "predictor"]
    transformers = [c for c in pods if c.role == "transformer"]
    # One predictor, or one per variant (A/B) or for the baseline and its shadow candidate: each
    # runs as its own pod; a transformer fronts the first.
    assert predictors and (len(predictors) == 1 or not transformers), manifest
    for index, spec in enumerate(predictors):
        run_predictor(spec, iris_dir, transformers if index == 0 else [])


def run_predictor(spec: ContainerSpec, iris_dir: Path, transformers: list[ContainerSpec]) -> None:
    """Start a predictor's container, probe it, send traffic, run its transformers in front of
    it, and stop each under load: nothing accepted may be lost."""
    model = _model_name(spec.spec["args"])
    predictor = start(spec, iris_dir)
    with running(predictor):
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            predictor.probe(kind)
        check_traffic(predictor, model)
        for transformer_spec in transformers:
            upstream = predictor.grpc_port if predictor.serves_grpc else predictor.http_port
            transformer = start(transformer_spec, iris_dir, predictor_port=upstream)
            with running(transformer):
                for kind in ("readinessProbe", "livenessProbe"):
                    transformer.probe(kind)
                check_traffic(transformer, model)
                code, statuses, lost = stop_under_load(transformer, model)
                assert (code, lost) == (0, []), transformer.logs()
                assert statuses and set(statuses) <= {200, 503}, statuses
        code, statuses, lost = stop_under_load(predictor, model)
        assert (code, lost) == (0, []), predictor.logs()
        assert statuses and set(statuses) <= {200, 503}, statuses


def _model_name(args: list[str]) -> str:
    """The served model name: the last `--model-name` wins, as in argparse (a ServingRuntime's
    `{{.Name}}` default is followed by the InferenceService's own)."""
    name = "iris"
    for i, arg in enumerate(args):
        if arg == "--model-name":
            name = args[i + 1]
        elif arg.startswith("--model_name="):
            name = arg.split("=", 1)[1]
    return name


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_image_serves_as_an_arbitrary_uid(family: str, iris_dir: Path) -> None:
    """The family images carry their framework and nothing they do not need."""
    probe = {
        "sklearn": "import sklearn, kninfer",
        "mlflow": "import mlflow, kninfer",
        "pytorch": "import torch, kninfer",
    }[family]
    absent = {"sklearn": ("torch", "mlflow"), "mlflow": ("torch",), "pytorch": ("mlflow",)}
    script = (
        probe
        + "; import importlib.util as u; print([m for m in "
        + repr(absent[family])
        + " if u.find_spec(m)])"
    )
    done = subprocess.run(
        [
            "podman",
            "--runtime",
            "runc",
            "run",
            "--rm",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
            "--user",
            "1000680000:0",
            "--read-only",
            "--entrypoint",
            "python",
            f"localhost/kninfer:dev-{family}",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"{family} image carries {done.stdout.strip()}"
    assert image_size(f"localhost/kninfer:dev-{family}") < image_size("localhost/kninfer:dev")


def test_a_code_change_rebuilds_only_kninfers_own_layers(tmp_path: Path) -> None:
    """The Dockerfile keeps the dependencies a layer apart from kninfer's code: after a one-line
    change to the code (bench/image_rebuild.py, on the sklearn image), the rebuilt image differs
    from the first only in kninfer's own files and the iris model trained on top, a few MB that
    a node pulls instead of the GB below them."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.image_rebuild",
            "--family",
            "sklearn",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = json.loads((tmp_path / "image-rebuild.json").read_text())["runs"]
    made = [layer.split(" (")[0] for layer in run["new_layers"]]
    assert len(made) == 2, made
    assert made[0].startswith("COPY dir:") and made[0].endswith(" in /"), made
    assert made[1].startswith("RUN python -c") and "ensure_iris_model" in made[1], made
    assert run["new_layer_bytes"] < 20e6 < 500e6 < run["image_bytes"], run
    print(
        f"\nrebuild of the sklearn image after a code change: {run['rebuild_s']}s, new layers "
        f"{run['new_layer_bytes'] / 1e6:.1f} MB of {run['image_bytes'] / 1e6:.0f} MB"
    )


def _first_200(url: str, deadline_s: float = 120) -> None:
    end = time.perf_counter() + deadline_s
    while time.perf_counter() < end:
        try:
            if httpx.post(url, json=V2, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"no 200 from {url} in {deadline_s}s")


def test_cold_start_in_the_image_next_to_the_host(
    tmp_path: Path, iris_dir: Path, record_property: Any
) -> None:
    """Spawn to the first 200 on V2 infer, iris, median of 3, container and host in turns.
    Reported (docs/deploy.md, "Images"); asserted only to finish."""
    spec = pod_containers(documents(ROOT / "kserve" / "iris-cpu.yaml")[0], {})[0]
    image_s: list[float] = []
    host_s: list[float] = []
    for _ in range(3):
        container = start(spec, iris_dir)
        with running(container):
            _first_200(f"{container.url}/v2/models/iris/infer")
            image_s.append(time.perf_counter() - container.started_at)
        port = free_port()
        began = time.perf_counter()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kninfer",
                "serve",
                "--predictor",
                "sklearn",
                "--model-dir",
                str(iris_dir),
                "--model-name",
                "iris",
                "--host",
                "127.0.0.1",
                "--http-port",
                str(port),
                "--grpc-port",
                str(free_port()),
            ],
            env=server_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _first_200(f"http://127.0.0.1:{port}/v2/models/iris/infer")
            host_s.append(time.perf_counter() - began)
        finally:
            process.terminate()
            process.wait(30)
    image, host = statistics.median(image_s), statistics.median(host_s)
    record_property("cold_start", {"image_s": image, "host_s": host, "ratio": image / host})
    print(
        f"\ncold start (spawn to first 200, iris, median of 3): image {image:.2f}s, "
        f"host {host:.2f}s, ratio {image / host:.2f}"
    )
    assert np.isfinite(image / host)


@pytest.fixture(autouse=True)
def _no_leftover_containers() -> Iterator[None]:
    yield
    left = subprocess.run(
        ["podman", "ps", "-a", "--filter", "name=kninfer-test-", "-q"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.split()
    if left:
        subprocess.run(["podman", "rm", "-f", *left], capture_output=True, timeout=60, check=False)
    assert not left, "a test left containers behind"
