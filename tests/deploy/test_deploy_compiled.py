"""`compiled: true` in a deploy config (docs/deploy.md, "Compiled models"): the predictor runs from
the onnx image (ONNX Runtime, no scikit-learn) with `--runtime onnx`, in every form a predictor is
rendered in (custom container, ServingRuntime, plain Knative, experiment variants and shadows);
the manifests validate strictly against the vendored CRDs; and the rendered args serve a model
compiled by the real `kninfer compile`, and refuse a directory without model.onnx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kninfer.deploy.config import DeployConfig
from kninfer.deploy.crd_store import SchemaStore
from kninfer.deploy.render import knative_documents, kserve_documents, render
from kninfer.deploy.validate import validate_document
from tests.support.compiled_models import Compiled, churn
from tests.support.paths import ROOT, SCHEMAS
from tests.support.servers import ServerProcess, server_env

ONNX_IMAGE = "ghcr.io/kninfer/kninfer:0.1.0-onnx"
SKLEARN_IMAGE = "ghcr.io/kninfer/kninfer:0.1.0-sklearn"


def config(**values: Any) -> DeployConfig:
    return DeployConfig.model_validate({"name": "churn", "namespace": "ml", **values})


def predictor_containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each predictor container by the name of the document (or runtime) that declares it."""
    found: dict[str, dict[str, Any]] = {}
    for doc in docs:
        spec = doc["spec"]
        if doc["kind"] == "InferenceService" and "containers" in spec["predictor"]:
            found[doc["metadata"]["name"]] = spec["predictor"]["containers"][0]
        elif doc["kind"] in ("ServingRuntime", "ClusterServingRuntime"):
            found[doc["metadata"]["name"]] = spec["containers"][0]
        elif doc["kind"] == "Service" and doc["apiVersion"].startswith("serving.knative.dev"):
            container = spec["template"]["spec"]["containers"][0]
            if (
                container.get("args", [])[:1] == ["serve"]
                and "--transformer" not in container["args"]
            ):
                found[doc["metadata"]["name"]] = container
    return found


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(SCHEMAS)


def assert_valid(files: dict[str, str], store: SchemaStore) -> None:
    for name, text in files.items():
        for index, doc in enumerate(d for d in yaml.safe_load_all(text) if d):
            assert validate_document(doc, store, name, index + 1) == [], (name, doc["kind"])


def test_a_compiled_model_runs_from_the_onnx_image_with_runtime_onnx(store: SchemaStore) -> None:
    cfg = config(compiled=True, storage_uri="s3://models/churn/v1")
    (isvc,) = kserve_documents(cfg)
    (container,) = isvc["spec"]["predictor"]["containers"]
    assert container["image"] == ONNX_IMAGE
    assert container["args"] == [
        "serve",
        "--predictor",
        "sklearn",
        "--runtime",
        "onnx",
        "--model-dir",
        "/mnt/models",
        "--model-name",
        "churn",
    ]
    (service,) = knative_documents(cfg)
    (container,) = service["spec"]["template"]["spec"]["containers"]
    assert container["image"] == ONNX_IMAGE
    assert container["args"][:7] == [
        "serve",
        "--predictor",
        "sklearn",
        "--runtime",
        "onnx",
        "--storage-uri",
        "s3://models/churn/v1",
    ]
    assert_valid(render(cfg, "churn.yaml"), store)


@pytest.mark.parametrize("family", ["mlflow", "pytorch"])
def test_a_compiled_model_of_any_family_runs_from_the_onnx_image(
    store: SchemaStore, family: str
) -> None:
    """An MLflow model of the sklearn flavor compiled beside its MLmodel, or a compiled PyTorch
    model: the onnx image (no mlflow, no torch there) serves it with --predictor FAMILY --runtime
    onnx, under a runtime of its own."""
    cfg = config(predictor=family, compiled=True, storage_uri="s3://models/m/v1", kserve="runtime")
    runtime, isvc = kserve_documents(cfg)
    assert runtime["metadata"]["name"] == f"kninfer-{family}-onnx"
    (container,) = runtime["spec"]["containers"]
    assert container["image"] == ONNX_IMAGE
    assert container["args"][:5] == ["serve", "--predictor", family, "--runtime", "onnx"]
    assert_valid(render(cfg, "churn.yaml"), store)


def test_without_compiled_nothing_changes() -> None:
    (isvc,) = kserve_documents(config(storage_uri="s3://models/churn/v1"))
    (container,) = isvc["spec"]["predictor"]["containers"]
    assert container["image"] == SKLEARN_IMAGE
    assert "--runtime" not in container["args"]


def test_an_image_of_the_configs_own_wins(store: SchemaStore) -> None:
    cfg = config(compiled=True, storage_uri="s3://m/churn", image="registry.example/k:1-onnx")
    (isvc,) = kserve_documents(cfg)
    assert isvc["spec"]["predictor"]["containers"][0]["image"] == "registry.example/k:1-onnx"


def test_a_serving_runtime_of_its_own_for_compiled_models(store: SchemaStore) -> None:
    """`kserve: runtime`: the compiled model's ServingRuntime is not the scikit-learn one (each
    declares one image), so a namespace can hold both."""
    cfg = config(compiled=True, storage_uri="s3://m/churn", kserve="runtime")
    runtime, isvc = kserve_documents(cfg)
    assert runtime["metadata"]["name"] == "kninfer-sklearn-onnx"
    (container,) = runtime["spec"]["containers"]
    assert container["image"] == ONNX_IMAGE
    assert container["args"][:5] == ["serve", "--predictor", "sklearn", "--runtime", "onnx"]
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "kninfer-sklearn-onnx"
    assert_valid(render(cfg, "churn.yaml"), store)


def test_a_compiled_shadow_of_a_scikit_learn_model(store: SchemaStore) -> None:
    """Trying the graph on real traffic next to the scikit-learn model it was compiled from: the
    candidate gets the onnx image; a candidate says `compiled` for itself, else takes the
    config's."""
    cfg = config(
        storage_uri="s3://m/churn/v1",
        eventing=True,
        shadow={"storage_uri": "s3://m/churn/v1", "compiled": True},
    )
    files = render(cfg, "churn.yaml")
    containers = predictor_containers([d for d in yaml.safe_load_all(files["kserve/churn.yaml"])])
    assert containers["churn"]["image"] == SKLEARN_IMAGE
    assert containers["churn-candidate"]["image"] == ONNX_IMAGE
    assert "--runtime" not in containers["churn"]["args"]
    assert ["--runtime", "onnx"] == containers["churn-candidate"]["args"][3:5]
    knative = predictor_containers([d for d in yaml.safe_load_all(files["knative/churn.yaml"])])
    assert knative["churn-candidate-predictor"]["image"] == ONNX_IMAGE
    assert knative["churn-predictor"]["image"] == SKLEARN_IMAGE
    assert_valid(files, store)
    # The other way round, and inherited.
    compiled = config(
        compiled=True,
        storage_uri="s3://m/churn/v2",
        eventing=True,
        shadow={"storage_uri": "s3://m/churn/v3"},
    )
    shadow = compiled.shadow_config()
    assert shadow is not None and shadow.compiled and shadow.cpu_image == ONNX_IMAGE
    native = config(
        compiled=True,
        storage_uri="s3://m/churn/v2",
        eventing=True,
        shadow={"storage_uri": "s3://m/churn/v1", "compiled": False},
    ).shadow_config()
    assert native is not None and not native.compiled and native.cpu_image == SKLEARN_IMAGE


def test_experiment_variants_and_runtimes(store: SchemaStore) -> None:
    """A/B between the scikit-learn model and its graph, each through its own ServingRuntime."""
    cfg = config(
        kserve="runtime",
        experiment={
            "variants": [
                {"name": "native", "weight": 50, "storage_uri": "s3://m/churn/v1"},
                {
                    "name": "onnx",
                    "weight": 50,
                    "storage_uri": "s3://m/churn/v1",
                    "compiled": True,
                },
            ]
        },
    )
    docs = [d for t in render(cfg, "churn.yaml").values() for d in yaml.safe_load_all(t) if d]
    runtimes = {
        d["metadata"]["name"]: d["spec"]["containers"][0]["image"]
        for d in docs
        if d["kind"] == "ServingRuntime"
    }
    assert runtimes == {"kninfer-sklearn": SKLEARN_IMAGE, "kninfer-sklearn-onnx": ONNX_IMAGE}
    models = {
        d["metadata"]["name"]: d["spec"]["predictor"]["model"]["runtime"]
        for d in docs
        if d["kind"] == "InferenceService"
    }
    assert models == {"churn-native": "kninfer-sklearn", "churn-onnx": "kninfer-sklearn-onnx"}
    assert_valid(render(cfg, "churn.yaml"), store)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "name: churn\ncompiled: true\n",
            "(top level): compiled: true needs storage_uri, the directory holding model.onnx and "
            "compile.json (the onnx image has no embedded model)",
        ),
        (
            "name: churn\ncompiled: true\nstorage_uri: s3://m/churn\naccelerator: gpu\n",
            "(top level): compiled: true runs on the CPU: the onnx image carries ONNX Runtime's "
            "CPU build (use accelerator: cpu)",
        ),
        (
            "name: churn\ncompiled: yes please\nstorage_uri: s3://m/churn\n",
            "compiled: Input should be a valid boolean, unable to interpret input",
        ),
    ],
)
def test_config_mistakes(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(body)
    done = subprocess.run(
        [sys.executable, "-m", "kninfer", "render", str(path), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (2, f"{path}: {message}\n")


def test_the_example_is_checked_in_and_uses_the_onnx_image() -> None:
    for variant in ("kserve", "knative"):
        docs = list(yaml.safe_load_all((ROOT / variant / "churn-compiled.yaml").read_text()))
        (container,) = predictor_containers([d for d in docs if d]).values()
        assert container["image"] == ONNX_IMAGE
        assert container["args"][1:5] == ["--predictor", "sklearn", "--runtime", "onnx"]


# --- the rendered args, run for real ----------------------------------------------------------


@pytest.fixture(scope="module")
def compiled_model(tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    pytest.importorskip("skl2onnx", reason="the compile extra is not installed")
    return churn(tmp_path_factory.mktemp("compiled") / "churn")


def local_args(container: dict[str, Any], model_dir: Path) -> list[str]:
    """The container's `kninfer serve` args with the storage initializer's /mnt/models here."""
    args = [a.replace("/mnt/models", str(model_dir)) for a in container["args"]]
    assert args[0] == "serve"
    return args[1:]


def test_the_rendered_args_serve_the_graph(compiled_model: Compiled, tmp_path: Path) -> None:
    (isvc,) = kserve_documents(config(compiled=True, storage_uri="s3://m/churn"))
    args = local_args(isvc["spec"]["predictor"]["containers"][0], compiled_model.directory)
    server = ServerProcess(args, server_env(tmp_path), tmp_path / "serve.log")
    try:
        server.start(timeout=120)
        reply = httpx.post(
            f"{server.url}/v2/models/churn/infer", json=compiled_model.v2_body(), timeout=30
        )
        assert reply.status_code == 200, reply.text
        expected = compiled_model.estimator.predict(compiled_model.rows).tolist()
        assert reply.json()["outputs"][0]["data"] == expected
        meta = httpx.get(f"{server.url}/v2/models/churn", timeout=30).json()
        assert meta["platform"] == "kninfer-sklearn-onnx"
    finally:
        assert server.stop() == 0, server.log()


def test_the_rendered_args_refuse_a_model_that_is_not_compiled(
    compiled_model: Compiled, tmp_path: Path
) -> None:
    """A storage_uri whose directory holds the scikit-learn file alone fails to start, in one
    line, instead of being served by a scikit-learn the onnx image does not have."""
    directory = compiled_model.directory
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.joblib").write_bytes((directory / "model.joblib").read_bytes())
    (isvc,) = kserve_documents(config(compiled=True, storage_uri="s3://m/churn"))
    args = local_args(isvc["spec"]["predictor"]["containers"][0], plain)
    done = subprocess.run(
        [sys.executable, "-m", "kninfer", "serve", "--http-port", "0", "--grpc-port", "0", *args],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    (error,) = [ln for ln in done.stderr.splitlines() if "model failed to load" in ln]
    assert f"no model.onnx in {plain.resolve()}: --runtime onnx serves a model compiled" in error
