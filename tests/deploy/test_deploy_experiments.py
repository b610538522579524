"""Experiments: A/B (one InferenceService per variant behind a KServe InferenceGraph Splitter,
`kninfer experiment weights` through a fake `kubectl`) and shadow (a second Trigger feeding a
candidate whose replies reach no result consumer), rendered, validated, and run against real
`kninfer serve` processes started with the rendered arguments."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from test_deploy_canary import apply_json_patch
from test_deploy_render import exact_match

from kninfer.deploy.config import DeployConfig
from kninfer.deploy.crd_store import SchemaStore
from kninfer.deploy.experiment import ExperimentError, parse_weights, weights_patch
from kninfer.deploy.render import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    eventing_documents,
    inference_graph,
    knative_documents,
    kserve_documents,
    render,
)
from kninfer.deploy.validate import validate_document
from tests.support.paths import ROOT, SCHEMAS
from tests.support.servers import ServerProcess, server_env

V2_BODY = {
    "inputs": [
        {"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}
    ]
}


def config(**values: object) -> DeployConfig:
    return DeployConfig.model_validate({"name": "iris", "namespace": "ml", **values})


def ab(**values: object) -> DeployConfig:
    return config(
        experiment={
            "variants": [
                {"name": "a", "weight": 70},
                {"name": "b", "weight": 30, "storage_uri": "gs://b/iris/v2", "predictor": "mlflow"},
            ]
        },
        **values,
    )


def kninfer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kninfer", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(SCHEMAS)


# --- A/B: what is rendered -----------------------------------------------------------------------


def test_one_inference_service_per_variant_and_a_splitter_graph(store: SchemaStore) -> None:
    cfg = ab()
    docs = kserve_documents(cfg)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("InferenceService", "iris-a"),
        ("InferenceService", "iris-b"),
        ("InferenceGraph", "iris"),
    ]
    a, b, graph = docs
    assert graph["spec"] == {
        "nodes": {
            "root": {
                "routerType": "Splitter",
                "steps": [
                    {"name": "a", "serviceName": "iris-a", "weight": 70},
                    {"name": "b", "serviceName": "iris-b", "weight": 30},
                ],
            }
        }
    }
    assert graph["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert graph["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "Knative",
        "autoscaling.knative.dev/min-scale": "0",
    }
    # Each variant is its own model, served under the config's model name.
    (container_a,) = a["spec"]["predictor"]["containers"]
    (container_b,) = b["spec"]["predictor"]["containers"]
    assert container_a["args"] == ["serve", "--predictor", "sklearn", "--model_name=iris"]
    assert "env" not in container_a or not any(
        e["name"] == "STORAGE_URI" for e in container_a["env"]
    )
    assert container_b["args"] == [
        "serve",
        "--predictor",
        "mlflow",
        "--model-dir",
        "/mnt/models",
        "--model_name=iris",
    ]
    assert {"name": "STORAGE_URI", "value": "gs://b/iris/v2"} in container_b["env"]
    assert container_b["image"] == "ghcr.io/kninfer/kninfer:0.1.0-mlflow"
    for doc in docs:
        assert doc["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
        assert validate_document(doc, store, "iris.yaml", 1) == []


def test_runtime_variants_share_the_runtime_and_name_the_model() -> None:
    cfg = config(
        kserve="runtime",
        experiment={
            "variants": [
                {"name": "a", "weight": 50, "storage_uri": "gs://b/v1"},
                {"name": "b", "weight": 50, "storage_uri": "gs://b/v2"},
            ]
        },
    )
    runtime, a, b, _ = kserve_documents(cfg)
    assert runtime["kind"] == "ServingRuntime"
    for isvc, uri in ((a, "gs://b/v1"), (b, "gs://b/v2")):
        # After the runtime's `--model-name {{.Name}}` (the ISVC name, iris-a): ours wins.
        assert isvc["spec"]["predictor"]["model"]["args"] == ["--model_name=iris"]
        assert isvc["spec"]["predictor"]["model"]["storageUri"] == uri


def kserve_model_name(args: list[str], isvc_name: str) -> str:
    """KServe's GetModelName for a predictor's args (kserve pkg/controller/v1beta1/
    inferenceservice/utils/utils.go getModelNameFromArgs: a `--model_name` prefix, `=value` or
    the next argument), else the InferenceService's name."""
    name = ""
    for i, arg in enumerate(args):
        if arg.startswith("--model_name"):
            parts = arg.split("=")
            if len(parts) == 2:
                name = parts[1]
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                name = args[i + 1]
    return name or isvc_name


def router_path(isvc: dict[str, Any]) -> str:
    """The path KServe's InferenceGraph controller gives a `serviceName` step
    (GetPredictorEndpoint: the PROTOCOL env of a custom container, v2 -> /v2/models/M/infer)."""
    (container,) = isvc["spec"]["predictor"]["containers"]
    protocol = {e["name"]: e["value"] for e in container.get("env", [])}.get("PROTOCOL", "v1")
    model = kserve_model_name(container["args"], isvc["metadata"]["name"])
    return f"/v2/models/{model}/infer" if protocol == "v2" else f"/v1/models/{model}:predict"


@pytest.fixture(scope="module")
def variant_a(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, Any], ServerProcess]]:
    """Variant a of the A/B config (the embedded iris model), run with its rendered args."""
    tmp = tmp_path_factory.mktemp("variant-a")
    isvc = kserve_documents(ab())[0]
    args = isvc["spec"]["predictor"]["containers"][0]["args"]
    server = ServerProcess(
        args[1:], server_env(tmp, K_SERVICE="iris-a-predictor"), tmp / "a.log"
    ).start(timeout=120)
    try:
        yield isvc, server
    finally:
        server.stop()


def test_the_router_reaches_a_variant_at_its_served_model(
    variant_a: tuple[dict[str, Any], ServerProcess],
) -> None:
    isvc, server = variant_a
    assert router_path(isvc) == "/v2/models/iris/infer"
    reply = httpx.post(server.url + router_path(isvc), json=V2_BODY, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model_name"] == "iris"
    # With kninfer's own spelling KServe would fall back to the ISVC's name: a 404.
    plain = copy.deepcopy(isvc)
    plain["spec"]["predictor"]["containers"][0]["args"] = [
        "serve",
        "--predictor",
        "sklearn",
        "--model-name",
        "iris",
    ]
    assert router_path(plain) == "/v2/models/iris-a/infer"
    assert httpx.post(server.url + router_path(plain), json=V2_BODY, timeout=30).status_code == 404


def test_experiment_is_kserve_only_and_never_silently_dropped(tmp_path: Path) -> None:
    assert "knative/iris.yaml" not in render(ab(), "x.yaml")
    path = tmp_path / "ab.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "iris",
                "experiment": {
                    "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]
                },
            }
        )
    )
    alone = kninfer("render", str(path), "-o", str(tmp_path / "out"), "--variant", "knative")
    assert alone.returncode == 2
    assert alone.stderr == (
        f"{path}: cannot render plain Knative: an experiment needs KServe's "
        "InferenceGraph (its Splitter router); plain Knative has no router "
        "between Services: render the kserve variant\n"
    )


VARIANTS_OK = [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]


@pytest.mark.parametrize(
    ("experiment", "extra", "message"),
    [
        (
            {"variants": [{"name": "a", "weight": 60}, {"name": "b", "weight": 30}]},
            "",
            "experiment: variant weights must sum to 100, got 90 (a=60, b=30)",
        ),
        (
            {"variants": [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]},
            "",
            "experiment: variant names must be unique; repeated: a",
        ),
        (
            {"variants": [{"name": "Blue", "weight": 50}, {"name": "b", "weight": 50}]},
            "",
            "experiment: variant name 'Blue' is not a DNS-1123 label (lower-case letters, digits "
            "and "
            "'-', at most 63 characters)",
        ),
        (
            {"variants": [{"name": "a", "weight": 100}]},
            "",
            "experiment.variants: List should have at least 2 items after validation, not 1",
        ),
        (
            {"variants": [{"name": "a", "weight": 150}, {"name": "b", "weight": -50}]},
            "",
            "experiment.variants.0.weight: Input should be less than or equal to 100",
        ),
        (
            {"variants": VARIANTS_OK},
            "eventing: true\n",
            "(top level): experiment and eventing are alternatives: the variants name the models, "
            "the "
            "InferenceGraph splits the HTTP traffic (for event-driven services use shadow)",
        ),
        (
            {"variants": VARIANTS_OK},
            "storage_uri: gs://b/iris\n",
            "(top level): experiment and storage_uri are alternatives: the variants name the "
            "models, "
            "the InferenceGraph splits the HTTP traffic (for event-driven services use shadow)",
        ),
        (
            {"variants": [{"name": "a", "weight": 50, "predictor": "pytorch"}, VARIANTS_OK[1]]},
            "",
            "(top level): experiment variant a: predictor pytorch needs storage_uri (only sklearn "
            "has "
            "an embedded default model)",
        ),
        (
            {"variants": [{"name": "a" * 41, "weight": 50}, VARIANTS_OK[1]]},
            "",
            f"(top level): experiment variant {'a' * 41}: name 'iris-{'a' * 41}' must match "
            "^[a-z]([-a-z0-9]*[a-z0-9])?$ and be at most 45 characters (generated revision names "
            "must "
            "fit 63)",
        ),
        (
            {
                "variants": [
                    {"name": "a", "weight": 50, "storage_uri": "gs://b/1"},
                    {"name": "b", "weight": 50, "storage_uri": "gs://b/2", "image": "x/y:2"},
                ]
            },
            "kserve: runtime\n",
            "(top level): kserve: runtime: one ServingRuntime (kninfer-sklearn) declares one "
            "family and "
            "one image, but the models here differ in them (use kserve: container, or one family "
            "and "
            "image)",
        ),
    ],
)
def test_experiment_mistakes_are_refused_with_file_and_field(
    tmp_path: Path, experiment: dict[str, Any], extra: str, message: str
) -> None:
    path = tmp_path / "ab.yaml"
    path.write_text("name: iris\n" + extra + yaml.safe_dump({"experiment": experiment}))
    result = kninfer("render", str(path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == f"{path}: {message}"
    assert not (tmp_path / "out").exists()


# --- A/B: the InferenceGraph webhook rules ------------------------------------------------------


def graph_problems(graph: dict[str, Any], store: SchemaStore) -> list[tuple[str, str, str]]:
    return [(p.path, p.rule, p.message) for p in validate_document(graph, store, "g.yaml", 1)]


def test_validate_applies_kserves_inference_graph_webhook(store: SchemaStore) -> None:
    graph = inference_graph(ab())
    steps = graph["spec"]["nodes"]["root"]["steps"]
    steps[0]["weight"] = 80
    assert graph_problems(graph, store) == [
        (
            "$.spec.nodes.root.steps",
            "kserve-webhook",
            "the weights of a Splitter node must sum to 100, got 110",
        )
    ]
    del steps[1]["weight"]
    steps[1]["serviceUrl"] = "http://iris-b.ml.svc.cluster.local"
    steps.append({"name": "a", "nodeName": "other", "weight": 0})
    assert graph_problems(graph, store) == [
        (
            "$.spec.nodes.root.steps[1]",
            "kserve-webhook",
            "a step names exactly one of nodeName, "
            "serviceName, serviceUrl; found 2: serviceName, serviceUrl",
        ),
        (
            "$.spec.nodes.root.steps[2].name",
            "kserve-webhook",
            "node 'root' has more than one step named 'a'",
        ),
        (
            "$.spec.nodes.root.steps[1].weight",
            "kserve-webhook",
            "every step of a Splitter node needs a weight",
        ),
    ]
    graph["spec"]["nodes"] = {"start": graph["spec"]["nodes"]["root"] | {"steps": []}}
    graph["metadata"]["name"] = "1iris"  # a Kubernetes name, not KServe's
    assert [p[2] for p in graph_problems(graph, store)] == [
        "InferenceGraph name '1iris' must match ^[a-z]([-a-z0-9]*[a-z0-9])?$",
        "an InferenceGraph needs a node named 'root' (its entry point)",
        "the weights of a Splitter node must sum to 100, got 0",
    ]
    graph["spec"]["nodes"]["start"]["routerType"] = "Splitterr"
    assert ("$.spec.nodes.start.routerType", "enum") in [
        p[:2] for p in graph_problems(graph, store)
    ]


# --- A/B: kninfer experiment weights -------------------------------------------------------------


def test_weights_patch_moves_each_step_guarded_by_its_service(store: SchemaStore) -> None:
    graph = inference_graph(ab())
    patch = weights_patch(graph, {"a": 40, "b": 60})
    assert patch.kind == "json"
    assert patch.body == [
        {"op": "test", "path": "/spec/nodes/root/steps/0/serviceName", "value": "iris-a"},
        {"op": "add", "path": "/spec/nodes/root/steps/0/weight", "value": 40},
        {"op": "test", "path": "/spec/nodes/root/steps/1/serviceName", "value": "iris-b"},
        {"op": "add", "path": "/spec/nodes/root/steps/1/weight", "value": 60},
    ]
    moved = apply_json_patch(graph, patch.body)
    assert [s["weight"] for s in moved["spec"]["nodes"]["root"]["steps"]] == [40, 60]
    assert validate_document(moved, store, "moved.yaml", 1) == []
    # A step reordered since the read: the `test` op fails, nothing moves.
    reordered = copy.deepcopy(graph)
    reordered["spec"]["nodes"]["root"]["steps"].reverse()
    with pytest.raises(AssertionError):
        apply_json_patch(reordered, patch.body)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"a": 70, "b": 40}, "weights must sum to 100, got 110 (a=70, b=40)"),
        ({"a": 70, "c": 30}, "unknown variant(s) c; the graph's variants: a, b"),
        ({"a": 100}, "give every variant a weight; missing: b"),
    ],
)
def test_weights_patch_refuses(weights: dict[str, int], message: str) -> None:
    with pytest.raises(ExperimentError) as error:
        weights_patch(inference_graph(ab()), weights)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["a=70", "b"], "'b' is not VARIANT=WEIGHT (e.g. a=70)"),
        (["a=70", "b=thirty"], "'b=thirty': a weight is a whole percent within 0..100"),
        (["a=170"], "'a=170': a weight is a whole percent within 0..100"),
        (["a=-5"], "'a=-5': a weight is a whole percent within 0..100"),
        (["a=50", "a=50"], "variant 'a' is given twice"),
    ],
)
def test_weight_arguments_are_parsed_strictly(pairs: list[str], message: str) -> None:
    with pytest.raises(ExperimentError) as error:
        parse_weights(pairs)
    assert str(error.value) == message


FAKE_KUBECTL = """\
#!{python}
# Records its argv, answers `get` with a recorded InferenceGraph, `patch` like kubectl does.
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if "get" in args:
    sys.stdout.write(open(os.environ["FAKE_KUBECTL_GRAPH"]).read())
elif "patch" in args:
    print("inferencegraph.serving.kserve.io/" + args[args.index("patch") + 2] + " patched")
"""
NS = "kninfer"
GET = ["--namespace", NS, "get", "inferencegraph", "iris-ab", "--output", "json"]


@pytest.fixture
def fake_kubectl(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kubectl"
    script.write_text(FAKE_KUBECTL.format(python=sys.executable))
    script.chmod(0o755)
    # The checked-in graph, as `kubectl get -o json` returns it once applied.
    docs = yaml.safe_load_all((ROOT / "kserve" / "iris-ab.yaml").read_text())
    graph = next(d for d in docs if d["kind"] == "InferenceGraph")
    graph["metadata"].update(generation=2, uid="0c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f")
    graph["status"] = {
        "url": f"http://iris-ab.{NS}.svc.cluster.local",
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    (tmp_path / "graph.json").write_text(json.dumps(graph))
    env = {k: v for k, v in os.environ.items() if k != "KUBECTL"}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_KUBECTL_LOG=str(tmp_path / "argv.jsonl"),
        FAKE_KUBECTL_GRAPH=str(tmp_path / "graph.json"),
    )
    return env


def calls(env: dict[str, str]) -> list[list[str]]:
    path = Path(env["FAKE_KUBECTL_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


PATCH_50_50 = json.dumps(
    [
        {"op": "test", "path": "/spec/nodes/root/steps/0/serviceName", "value": "iris-ab-a"},
        {"op": "add", "path": "/spec/nodes/root/steps/0/weight", "value": 50},
        {"op": "test", "path": "/spec/nodes/root/steps/1/serviceName", "value": "iris-ab-b"},
        {"op": "add", "path": "/spec/nodes/root/steps/1/weight", "value": 50},
    ],
    separators=(",", ":"),
    sort_keys=True,
)


def test_cli_weights_gets_then_patches(fake_kubectl: dict[str, str]) -> None:
    result = kninfer("experiment", "weights", "iris-ab", "a=50", "b=50", "-n", NS, env=fake_kubectl)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "inferencegraph.serving.kserve.io/iris-ab patched\n"
    assert calls(fake_kubectl) == [
        GET,
        [
            "--namespace",
            NS,
            "patch",
            "inferencegraph",
            "iris-ab",
            "--type",
            "json",
            "--patch",
            PATCH_50_50,
        ],
    ]


def test_cli_weights_dry_run_prints_the_patch_and_changes_nothing(
    fake_kubectl: dict[str, str],
) -> None:
    result = kninfer(
        "experiment", "weights", "iris-ab", "a=50", "b=50", "-n", NS, "--dry-run", env=fake_kubectl
    )
    assert result.returncode == 0, result.stderr
    body, end = json.JSONDecoder().raw_decode(result.stdout)
    assert json.dumps(body, separators=(",", ":"), sort_keys=True) == PATCH_50_50
    assert result.stdout[end:] == (
        f"\nkubectl --namespace {NS} patch inferencegraph iris-ab "
        f"--type json --patch '{PATCH_50_50}'\n"
    )
    assert calls(fake_kubectl) == [GET]  # read, never patched


@pytest.mark.parametrize(
    ("args", "message", "kubectl_calls"),
    [
        (["a=60", "b=50"], "weights must sum to 100, got 110 (a=60, b=50)", [GET]),
        (["a=50", "c=50"], "unknown variant(s) c; the graph's variants: a, b", [GET]),
        (["a=50", "b:50"], "'b:50' is not VARIANT=WEIGHT (e.g. a=70)", []),
    ],
)
def test_cli_weights_refuses_without_patching(
    fake_kubectl: dict[str, str], args: list[str], message: str, kubectl_calls: list[Any]
) -> None:
    result = kninfer("experiment", "weights", "iris-ab", *args, "-n", NS, env=fake_kubectl)
    assert result.returncode == 1
    assert result.stderr == f"kninfer experiment weights: {message}\n"
    assert result.stdout == ""
    assert calls(fake_kubectl) == kubectl_calls


def test_cli_status_and_offline_from_the_rendered_file(
    fake_kubectl: dict[str, str], tmp_path: Path
) -> None:
    status = kninfer("experiment", "status", "iris-ab", "-n", NS, env=fake_kubectl)
    assert status.returncode == 0, status.stderr
    assert status.stdout == (
        "VARIANT  SERVICE    WEIGHT\na        iris-ab-a  80%\nb        iris-ab-b  20%\n"
    )
    offline = {k: v for k, v in os.environ.items() if k != "KUBECTL"}
    offline["PATH"] = str(tmp_path)  # no kubectl at all: --from-file and --dry-run need none
    result = kninfer(
        "experiment",
        "weights",
        "iris-ab",
        "a=50",
        "b=50",
        "--from-file",
        "kserve/iris-ab.yaml",
        "--dry-run",
        env=offline,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(
        f"\nkubectl --namespace {NS} patch inferencegraph iris-ab "
        f"--type json --patch '{PATCH_50_50}'\n"
    )


# --- shadow --------------------------------------------------------------------------------------


def shadowed(**values: object) -> DeployConfig:
    return config(eventing=True, shadow={}, **values)  # the candidate: the embedded iris model


def test_shadow_is_a_second_trigger_with_the_same_filter(store: SchemaStore) -> None:
    cfg = shadowed()
    events = {(d["kind"], d["metadata"]["name"]): d for d in eventing_documents(cfg)}
    requests = events[("Trigger", "iris-requests")]["spec"]
    copy_of = events[("Trigger", "iris-candidate-requests")]["spec"]
    assert copy_of["broker"] == requests["broker"] == "default"
    assert (
        copy_of["filters"]
        == requests["filters"]
        == [{"exact": {"type": REQUEST_TYPE, "kninfermodel": "iris"}}]
    )
    assert copy_of["subscriber"] == {
        "ref": {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "name": "iris-candidate-predictor",
        },
        "uri": "/v2/models/iris/infer",
    }
    # Failures go to the candidate's own dead-letter sink, never the baseline's.
    assert copy_of["delivery"]["deadLetterSink"]["ref"]["name"] == "iris-candidate-dead-letter"
    assert requests["delivery"]["deadLetterSink"]["ref"]["name"] == "iris-dead-letter"
    assert ("Service", "iris-candidate-dead-letter") in events
    # The candidate itself, for KServe and for plain Knative; all private.
    isvcs = [d["metadata"]["name"] for d in kserve_documents(cfg)]
    ksvcs = [d["metadata"]["name"] for d in knative_documents(cfg)]
    assert isvcs == ["iris", "iris-candidate"]
    assert ksvcs == ["iris-predictor", "iris-candidate-predictor"]
    candidate = kserve_documents(cfg)[1]
    assert candidate["spec"]["predictor"]["containers"][0]["args"] == [
        "serve",
        "--predictor",
        "sklearn",
        "--model-name",
        "iris",
    ]
    for doc in kserve_documents(cfg) + knative_documents(cfg) + eventing_documents(cfg):
        assert validate_document(doc, store, "shadow.yaml", 1) == []


def test_shadow_follows_a_transformer_and_without_eventing_reads_the_payload_log() -> None:
    cfg = shadowed(transformer={"name": "iris"})
    trigger = next(
        d for d in eventing_documents(cfg) if d["metadata"]["name"] == "iris-candidate-requests"
    )
    assert trigger["spec"]["subscriber"]["ref"]["name"] == "iris-candidate-transformer"
    # Plain HTTP traffic: the payload logger is turned on, and the Trigger takes its request
    # events of this InferenceService to the candidate's predictor (what the predictor logs
    # is its transformer's output).
    http = config(shadow={"storage_uri": "gs://b/v2"}, transformer={"name": "iris"})
    assert http.logger is not None and http.logger.mode == "all"
    trigger = next(d for d in eventing_documents(http) if d["kind"] == "Trigger")
    assert trigger["spec"]["filters"] == [
        {
            "exact": {
                "type": "org.kubeflow.serving.inference.request",
                "inferenceservicename": "iris",
            }
        }
    ]
    assert trigger["spec"]["subscriber"] == {
        "ref": {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "name": "iris-candidate-predictor",
        },
        "uri": "/v2/models/iris/infer",
    }
    assert config(eventing={"enabled": False}, shadow={}).logger is not None
    with pytest.raises(ValueError, match="leave logger.url unset"):
        config(shadow={}, logger={"url": "http://sink.example/"})
    with pytest.raises(ValueError, match="logger.mode all or request"):
        config(shadow={}, logger={"mode": "response"})
    with pytest.raises(ValueError, match="shadow: predictor pytorch needs storage_uri"):
        config(eventing=True, shadow={"predictor": "pytorch"})


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The shadow candidate, run with its rendered plain-Knative args and the K_SERVICE Knative
    gives its Service."""
    tmp = tmp_path_factory.mktemp("candidate")
    service = knative_documents(shadowed())[1]
    name = service["metadata"]["name"]
    args = service["spec"]["template"]["spec"]["containers"][0]["args"]
    server = ServerProcess(args[1:], server_env(tmp, K_SERVICE=name), tmp / "candidate.log").start(
        timeout=120
    )
    try:
        yield server
    finally:
        server.stop()


def test_the_candidates_replies_reach_no_result_consumer(candidate: ServerProcess) -> None:
    """Play the broker: a request event matches both request Triggers; the candidate answers it,
    and its reply (re-enqueued into the broker, as every Trigger subscriber's reply is) matches
    none of the rendered Triggers: not the results Trigger the baseline's consumers read."""
    from kninfer.cloudevents.client import build_request_event

    triggers = {
        d["metadata"]["name"]: d for d in eventing_documents(shadowed()) if d["kind"] == "Trigger"
    }
    assert sorted(triggers) == ["iris-candidate-requests", "iris-requests", "iris-responses"]
    headers, data = build_request_event(
        json.dumps(V2_BODY).encode(),
        structured=False,
        source="test/broker",
        event_id="e-1",
        model="iris",
    )
    sent = {k.removeprefix("ce-"): v for k, v in headers.items() if k.startswith("ce-")}
    assert [n for n, t in sorted(triggers.items()) if exact_match(t, sent)] == [
        "iris-candidate-requests",
        "iris-requests",
    ]
    shadow = triggers["iris-candidate-requests"]["spec"]["subscriber"]
    reply = httpx.post(candidate.url + shadow["uri"], content=data, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    got = {k.removeprefix("ce-"): v for k, v in reply.headers.items() if k.startswith("ce-")}
    assert got["type"] == RESPONSE_TYPE
    assert got["source"] == "kninfer/iris-candidate-predictor/models/iris"
    assert [n for n, t in triggers.items() if exact_match(t, got)] == []
