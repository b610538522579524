"""The pod contract, in a real container runtime: every rendered manifest's pods run from the built
images (`make image-test` builds them first; tests/support/pods.py says how a container spec
becomes a `podman run`, and what differs from a cluster).

For each CPU manifest under kserve/ and knative/ (the GPU one needs a GPU node and the CUDA image;
the eventing file's sinks are Knative's event-display image, not ours): start its containers,
pass the startup, readiness and liveness probes as the spec states them, answer V2 REST, gRPC and
a CloudEvent, then SIGTERM inside the grace period: exit 0, and every request sent while it
stops answered. The iris pipeline runs its transformer and predictor containers together.
Cold start inside the image (podman run to the first 200) is measured next to the host's.

The onnx image (models compiled by `kninfer compile`, no scikit-learn) runs the manifests of
`compiled: true` configs with a realistic pipeline compiled here, and answers what scikit-learn
answers in this process; rendered for the pytorch and mlflow families, it serves a compiled
PyTorch program and a compiled MLflow model without torch or mlflow. The cold starts go to
COLD_START, which `make image-test` adds to bench/results/images.{json,md} (`python -m
bench.image_sizes --cold-start`).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from tests.support.compiled_models import (
    COLUMNS,
    Compiled,
    churn,
    compiled_here,
    save_mlflow_iris,
)
from tests.support.paths import ROOT
from tests.support.pods import (
    RELEASE_IMAGE,
    Container,
    ContainerSpec,
    image_size,
    local_image,
    pod_containers,
    python_in_image,
    running,
)
from tests.support.servers import free_port, grpc_stub, server_env, stop_under_load

pytestmark = [pytest.mark.image, pytest.mark.xdist_group("images")]

FAMILIES = ("sklearn", "mlflow", "pytorch", "onnx")
ROW = [5.1, 3.5, 1.4, 0.2]
V2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
# What `make image-test` adds to bench/results/images.{json,md} after these tests.
COLD_START = ROOT / "build" / "image-cold-start.json"
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def compiled_manifest(path: Path) -> bool:
    """A `compiled: true` config's manifest: its predictor runs from the onnx image."""
    return f"image: {RELEASE_IMAGE}-onnx" in path.read_text()


def manifests(compiled: bool = False) -> list[Path]:
    return [
        p
        for d in ("kserve", "knative")
        for p in sorted((ROOT / d).glob("*.yaml"))
        if "gpu" not in p.name
        and not p.name.endswith("-eventing.yaml")
        and compiled_manifest(p) == compiled
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


def readable(model_dir: Path) -> Path:
    """What KServe's storage initializer leaves at /mnt/models: readable by any UID."""
    model_dir.chmod(0o755)
    for path in model_dir.iterdir():
        path.chmod(0o644)
    return model_dir


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kninfer.iris import ensure_iris_model

    return readable(ensure_iris_model(tmp_path_factory.mktemp("mnt-models") / "iris"))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    """The churn pipeline (a string column, a gradient-boosting classifier), fitted and compiled
    by `kninfer compile` on the host: model.joblib, model.onnx and compile.json."""
    model = churn(tmp_path_factory.mktemp("mnt-models-compiled") / "churn")
    readable(model.directory)
    return model


def record_cold_start(family: str, entry: dict[str, Any]) -> None:
    """Keep one family's cold start in COLD_START, beside the others measured in this run."""
    found = json.loads(COLD_START.read_text()) if COLD_START.is_file() else {}
    found[family] = entry
    COLD_START.parent.mkdir(parents=True, exist_ok=True)
    COLD_START.write_text(json.dumps(found, indent=2) + "\n")


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


def stop_in_pod(
    container: Container, model: str, body: dict[str, Any] | None = None
) -> tuple[int, list[int], list[str]]:
    """`podman stop` (SIGTERM, then the grace period) while a client keeps sending `body`
    (default the role's iris request): tests.support.servers.stop_under_load."""
    body = BODIES[container.spec.role] if body is None else body
    url = f"{container.url}/v2/models/{model}/infer"
    return stop_under_load(url, container.stop, body)


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
                code, statuses, lost = stop_in_pod(transformer, model)
                assert (code, lost) == (0, []), transformer.logs()
                assert statuses and set(statuses) <= {200, 503}, statuses
        code, statuses, lost = stop_in_pod(predictor, model)
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
        "onnx": "import onnxruntime, numpy, kninfer",
    }[family]
    absent = {
        "sklearn": ("torch", "mlflow"),
        "mlflow": ("torch",),
        "pytorch": ("mlflow",),
        "onnx": ("sklearn", "scipy", "skops", "torch", "mlflow"),
    }
    script = (
        probe
        + "; import importlib.util as u; print([m for m in "
        + repr(absent[family])
        + " if u.find_spec(m)])"
    )
    done = python_in_image(f"localhost/kninfer:dev-{family}", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"{family} image carries {done.stdout.strip()}"
    assert image_size(f"localhost/kninfer:dev-{family}") < image_size("localhost/kninfer:dev")
    if family == "onnx":
        assert image_size("localhost/kninfer:dev-onnx") < image_size(
            "localhost/kninfer:dev-sklearn"
        )


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


def _first_200(url: str, deadline_s: float = 120, body: dict[str, Any] | None = None) -> None:
    end = time.perf_counter() + deadline_s
    while time.perf_counter() < end:
        try:
            if httpx.post(url, json=V2 if body is None else body, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"no 200 from {url} in {deadline_s}s")


def image_cold_start_s(
    container: Container, model: str, body: dict[str, Any] | None = None
) -> float:
    """Seconds from `podman run` of `container` to its first 200 on `model`'s V2 infer."""
    with running(container):
        _first_200(f"{container.url}/v2/models/{model}/infer", body=body)
        return time.perf_counter() - container.started_at


def host_cold_start_s(
    serve_args: list[str], model: str, tmp_path: Path, body: dict[str, Any] | None = None
) -> float:
    """Seconds from spawning `kninfer serve SERVE_ARGS` on the host to its first 200 on
    `model`'s V2 infer: what the image's cold start is compared with."""
    port = free_port()
    began = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kninfer",
            "serve",
            *serve_args,
            "--model-name",
            model,
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
        _first_200(f"http://127.0.0.1:{port}/v2/models/{model}/infer", body=body)
        return time.perf_counter() - began
    finally:
        process.terminate()
        process.wait(30)


def test_cold_start_in_the_image_next_to_the_host(
    tmp_path: Path, iris_dir: Path, record_property: Any
) -> None:
    """Spawn to the first 200 on V2 infer, iris, median of 3, container and host in turns.
    Reported (docs/deploy.md, "Images"); asserted only to finish."""
    spec = pod_containers(documents(ROOT / "kserve" / "iris-cpu.yaml")[0], {})[0]
    image_s: list[float] = []
    host_s: list[float] = []
    for _ in range(3):
        image_s.append(image_cold_start_s(start(spec, iris_dir), "iris"))
        host_s.append(
            host_cold_start_s(
                ["--predictor", "sklearn", "--model-dir", str(iris_dir)], "iris", tmp_path
            )
        )
    image, host = statistics.median(image_s), statistics.median(host_s)
    record_property("cold_start", {"image_s": image, "host_s": host, "ratio": image / host})
    record_cold_start(
        "sklearn",
        {
            "model": "iris, LogisticRegression (`kserve/iris-cpu.yaml`)",
            "image_s": round(image, 3),
            "compared": {"`kninfer serve` on the host": round(host, 3)},
            "runs": len(image_s),
        },
    )
    print(
        f"\ncold start (spawn to first 200, iris, median of 3): image {image:.2f}s, "
        f"host {host:.2f}s, ratio {image / host:.2f}"
    )
    assert np.isfinite(image / host)


# ---- the onnx image: compiled models -------------------------------------------------------


def compiled_spec(manifest: Path) -> ContainerSpec:
    (spec,) = [c for d in documents(manifest) for c in pod_containers(d, {})]
    assert local_image(spec.spec["image"]) == "localhost/kninfer:dev-onnx", spec.spec["image"]
    assert spec.spec["args"][1:5] == ["--predictor", "sklearn", "--runtime", "onnx"]
    return spec


@pytest.mark.parametrize(
    "manifest", manifests(compiled=True), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_a_compiled_model_in_the_onnx_image_answers_as_scikit_learn(
    manifest: Path, compiled: Compiled
) -> None:
    """A `compiled: true` manifest's pod, with the compiled churn pipeline at /mnt/models: the
    probes pass, V2 answers what the estimator answers in this process (labels exactly,
    probabilities to 1e-5), gRPC answers, and SIGTERM under load loses nothing."""
    spec = compiled_spec(manifest)
    model = _model_name(spec.spec["args"])
    container = Container(spec, free_port(), free_port(), compiled.directory)
    with running(container):
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            container.probe(kind)
        reply = httpx.post(
            f"{container.url}/v2/models/{model}/infer",
            json=compiled.v2_body(outputs=("predict", "predict_proba")),
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        outputs = {o["name"]: o for o in reply.json()["outputs"]}
        rows = compiled.rows
        assert outputs["predict"]["data"] == compiled.estimator.predict(rows).tolist()
        proba = compiled.estimator.predict_proba(rows)
        assert outputs["predict_proba"]["shape"] == list(proba.shape)
        np.testing.assert_allclose(
            np.reshape(outputs["predict_proba"]["data"], proba.shape), proba, **TOLERANCE
        )
        meta = httpx.get(f"{container.url}/v2/models/{model}", timeout=30).json()
        assert meta["platform"] == "kninfer-sklearn-onnx"
        request = pb.ModelInferRequest(model_name=model)
        for name, datatype in COLUMNS.items():
            tensor = request.inputs.add(name=name, datatype=datatype, shape=[len(rows)])
            if datatype == "BYTES":
                tensor.contents.bytes_contents.extend(v.encode() for v in rows[name])
            else:
                tensor.contents.fp64_contents.extend(rows[name].tolist())
        with grpc_stub(f"127.0.0.1:{container.grpc_port}") as stub:
            answer = stub.ModelInfer(request, timeout=30)
        # BYTES in raw_output_contents: each value a 4-byte little-endian length, then its bytes
        raw, labels, at = answer.raw_output_contents[0], [], 0
        while at < len(raw):
            size = int.from_bytes(raw[at : at + 4], "little")
            labels.append(raw[at + 4 : at + 4 + size].decode())
            at += 4 + size
        assert labels == compiled.estimator.predict(rows).tolist()
        code, statuses, lost = stop_in_pod(container, model, compiled.v2_body())
        assert (code, lost) == (0, []), container.logs()
        assert statuses and set(statuses) <= {200, 503}, statuses


def compiled_torch_dir(root: Path) -> tuple[Path, Any]:
    """The two-input masked program (tests/support/torch_models), compiled by `kninfer compile`
    on the host, and the module it was exported from."""
    from tests.support.torch_models import masked_module, save_masked_export

    module = masked_module(root / "src")
    model_dir = save_masked_export(module, root / "net")
    compile_on_host(model_dir)
    return model_dir, module


def compiled_mlflow_dir(root: Path) -> tuple[Path, Any]:
    """An MLflow model of the sklearn flavor (a logistic regression on iris, with its input
    example), compiled by `kninfer compile` beside its MLmodel on the host, and the estimator."""
    model_dir = root / "iris-mlflow"
    estimator = save_mlflow_iris(model_dir)
    compile_on_host(model_dir)
    return model_dir, estimator


def compile_on_host(model_dir: Path) -> None:
    compiled_here(model_dir)
    readable(model_dir)


def rendered_compiled(family: str) -> ContainerSpec:
    """The predictor container `kninfer render` makes for a `compiled: true` config of
    `family` (KServe's custom container, the model at /mnt/models)."""
    from kninfer.deploy.config import DeployConfig
    from kninfer.deploy.render import kserve_documents

    config = DeployConfig.model_validate(
        {"name": "net", "predictor": family, "compiled": True, "storage_uri": "s3://m/net"}
    )
    (doc,) = kserve_documents(config)
    (spec,) = pod_containers(doc, {})
    assert local_image(spec.spec["image"]) == "localhost/kninfer:dev-onnx"
    assert spec.spec["args"][1:5] == ["--predictor", family, "--runtime", "onnx"]
    return spec


@pytest.mark.parametrize("family", ["pytorch", "mlflow"])
def test_the_onnx_image_serves_compiled_pytorch_and_mlflow_models(
    family: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`compiled: true` for the pytorch and mlflow families: the onnx image, which has neither
    torch nor mlflow, serves the graph `kninfer compile` wrote, and V2 answers what the model
    answers in this process."""
    root = tmp_path_factory.mktemp(f"mnt-models-compiled-{family}")
    container = Container(rendered_compiled(family), free_port(), free_port(), None)
    if family == "pytorch":
        pytest.importorskip("onnxscript", reason="the compile extra is not installed")
        from tests.support.torch_models import module_outputs

        container.model_dir, module = compiled_torch_dir(root)
        rng = np.random.default_rng(3)
        x = rng.standard_normal((5, 8)).astype(np.float32)
        mask = rng.integers(0, 2, (5, 8)).astype(np.int64)
        want = module_outputs(module, x, mask)
        inputs = [
            {"name": "x", "datatype": "FP32", "shape": [5, 8], "data": x.ravel().tolist()},
            {"name": "mask", "datatype": "INT64", "shape": [5, 8], "data": mask.ravel().tolist()},
        ]
    else:
        pytest.importorskip("mlflow.sklearn", reason="the mlflow extra is not installed")
        container.model_dir, estimator = compiled_mlflow_dir(root)
        rows = np.asarray([ROW, [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
        want = {"predict": estimator.predict(rows)}
        inputs = [
            {"name": "input-0", "datatype": "FP64", "shape": [3, 4], "data": rows.ravel().tolist()}
        ]
    with running(container):
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            container.probe(kind)
        meta = httpx.get(f"{container.url}/v2/models/net", timeout=30).json()
        assert meta["platform"] == f"kninfer-{family}-onnx"
        reply = httpx.post(
            f"{container.url}/v2/models/net/infer", json={"inputs": inputs}, timeout=30
        )
        assert reply.status_code == 200, reply.text
        for output in reply.json()["outputs"]:
            expected = np.asarray(want[output["name"]])
            got = np.reshape(output["data"], output["shape"])
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_the_onnx_image_cannot_import_scikit_learn_scipy_torch_or_mlflow() -> None:
    """What the onnx image leaves out is not there to import: `import sklearn` (and scipy,
    torch, mlflow) raises ModuleNotFoundError inside it; ONNX Runtime and numpy import."""
    script = (
        "import importlib\n"
        "for name in ('sklearn', 'scipy', 'torch', 'mlflow', 'onnxruntime', 'numpy'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        print(name, 'missing')\n"
        "    else:\n"
        "        print(name, 'imported')\n"
    )
    done = python_in_image("localhost/kninfer:dev-onnx", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "sklearn missing",
        "scipy missing",
        "torch missing",
        "mlflow missing",
        "onnxruntime imported",
        "numpy imported",
    ]


def test_cold_start_of_a_compiled_model_in_the_onnx_image(
    compiled: Compiled, tmp_path: Path
) -> None:
    """Spawn to the first 200 on V2 infer, the compiled churn pipeline, median of 3, in turns:
    the onnx image serving model.onnx (kserve/churn-compiled.yaml's pod), the sklearn image
    serving the same directory's scikit-learn file (the same pod, `--runtime native`), and
    `kninfer serve --runtime onnx` on the host. Reported (bench/results/images.md); asserted only
    to finish."""
    spec = compiled_spec(ROOT / "kserve" / "churn-compiled.yaml")
    args = list(spec.spec["args"])
    args[args.index("--runtime") + 1] = "native"
    native = ContainerSpec(
        spec.name,
        {**spec.spec, "image": f"{RELEASE_IMAGE}-sklearn", "args": args},
        spec.role,
        spec.grace_s,
        spec.storage_uri,
    )
    model = _model_name(spec.spec["args"])
    body = compiled.v2_body()
    times: dict[str, list[float]] = {"onnx": [], "native": [], "host": []}
    host_args = [
        "--predictor",
        "sklearn",
        "--runtime",
        "onnx",
        "--model-dir",
        str(compiled.directory),
    ]
    for _ in range(3):
        for key, which in (("onnx", spec), ("native", native)):
            container = Container(which, free_port(), free_port(), compiled.directory)
            times[key].append(image_cold_start_s(container, model, body))
        times["host"].append(host_cold_start_s(host_args, model, tmp_path, body))
    median = {key: statistics.median(values) for key, values in times.items()}
    record_cold_start(
        "onnx",
        {
            "model": "churn, compiled: Pipeline(ColumnTransformer, GradientBoostingClassifier), "
            "a string column (`kserve/churn-compiled.yaml`)",
            "image_s": round(median["onnx"], 3),
            "compared": {
                "the same model's scikit-learn file in the sklearn image (`--runtime native`)": (
                    round(median["native"], 3)
                ),
                "`kninfer serve --runtime onnx` on the host": round(median["host"], 3),
            },
            "runs": 3,
        },
    )
    print(
        f"\ncold start (spawn to first 200, compiled churn, median of 3): onnx image "
        f"{median['onnx']:.2f}s, sklearn image (native) {median['native']:.2f}s, host "
        f"{median['host']:.2f}s"
    )
    assert all(np.isfinite(list(median.values())))


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
