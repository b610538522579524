"""`kninfer render`: manifests from one config, checked-in examples without drift, and the
rendered container args driving real `kninfer serve` processes the way KServe would run them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kninfer.deploy.config import DeployConfig
from kninfer.deploy.render import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    eventing_documents,
    inference_service,
    knative_documents,
    kserve_documents,
    render,
)
from tests.support.paths import ROOT, SCHEMAS
from tests.support.servers import ServerProcess, server_env

EXAMPLES = sorted((ROOT / "deploy" / "examples").glob("*.yaml"))


def kninfer(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kninfer", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def config(**values: object) -> DeployConfig:
    return DeployConfig.model_validate({"name": "iris", "namespace": "ml", **values})


def docs_of(text: str) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


# --- checked-in examples -------------------------------------------------------------------------


def test_checked_in_manifests_match_a_fresh_render(tmp_path: Path) -> None:
    """Re-render every example config; any drift from kserve/ and knative/ fails."""
    assert len(EXAMPLES) >= 5
    relative = [p.relative_to(ROOT).as_posix() for p in EXAMPLES]
    result = kninfer("render", *relative, "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rendered = {p.relative_to(tmp_path).as_posix(): p.read_text() for p in tmp_path.rglob("*.yaml")}
    checked_in = {
        p.relative_to(ROOT).as_posix(): p.read_text()
        for d in ("kserve", "knative")
        for p in (ROOT / d).rglob("*")
        if p.is_file()
    }
    assert sorted(checked_in) == sorted(rendered), "stale or missing files under kserve/ knative/"
    for name, text in rendered.items():
        assert checked_in[name] == text, (
            f"{name} drifted; run: kninfer render deploy/examples/*.yaml -o ."
        )


def test_render_check_flag_reports_drift(tmp_path: Path) -> None:
    example = "deploy/examples/iris-cpu.yaml"
    assert kninfer("render", example, "-o", str(tmp_path)).returncode == 0
    assert kninfer("render", example, "-o", str(tmp_path), "--check").returncode == 0
    target = tmp_path / "kserve" / "iris-cpu.yaml"
    target.write_text(target.read_text().replace("minReplicas: 0", "minReplicas: 1"))
    result = kninfer("render", example, "-o", str(tmp_path), "--check")
    assert result.returncode == 1
    assert result.stderr == (
        f"{target}: differs from the rendered output; run "
        f"`kninfer render {example} -o {tmp_path}`\n"
    )


def test_every_checked_in_manifest_validates_against_the_crds() -> None:
    result = kninfer("validate", "kserve", "knative", "--crds", str(SCHEMAS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr == "53 document(s) in 24 file(s): valid\n"


def test_examples_cover_cpu_gpu_pipeline_canary_eventing_ab_shadow_compiled() -> None:
    kinds: dict[str, list[str]] = {}
    for path in sorted(ROOT.glob("kserve/*.yaml")) + sorted(ROOT.glob("knative/*.yaml")):
        kinds[path.relative_to(ROOT).as_posix()] = [
            str(d["kind"]) for d in docs_of(path.read_text())
        ]
    assert kinds["kserve/iris-cpu.yaml"] == ["InferenceService"]
    assert kinds["kserve/iris-canary.yaml"] == ["ServingRuntime", "InferenceService"]
    assert kinds["knative/iris-pipeline.yaml"] == ["Service", "Service"]
    assert kinds["knative/iris-events-eventing.yaml"] == [
        "Service",
        "Service",
        "Broker",
        "Trigger",
        "Trigger",
    ]
    assert kinds["kserve/iris-ab.yaml"] == [
        "InferenceService",
        "InferenceService",
        "InferenceGraph",
    ]
    assert "knative/iris-ab.yaml" not in kinds  # the Splitter is KServe's
    assert kinds["kserve/iris-shadow.yaml"] == ["InferenceService", "InferenceService"]
    assert kinds["knative/iris-shadow.yaml"] == ["Service", "Service"]
    assert kinds["knative/iris-shadow-eventing.yaml"] == [
        "Service",
        "Service",
        "Broker",
        "Trigger",
        "Trigger",
        "Service",
        "Trigger",
    ]
    compiled = docs_of((ROOT / "kserve" / "churn-compiled.yaml").read_text())[0]
    container = compiled["spec"]["predictor"]["containers"][0]  # type: ignore[index]
    assert container["image"].endswith("-onnx") and "--runtime" in container["args"]
    gpu = docs_of((ROOT / "kserve" / "classifier-gpu.yaml").read_text())[0]
    container = gpu["spec"]["predictor"]["containers"][0]  # type: ignore[index]
    assert container["image"].endswith("-cuda")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def containers_of(doc: dict[str, object]) -> list[dict[str, object]]:
    spec = doc.get("spec") or {}
    assert isinstance(spec, dict)
    found: list[dict[str, object]] = []
    for part in (
        spec.get("predictor"),
        spec.get("transformer"),
        spec,
        (spec.get("template") or {}).get("spec"),
    ):
        if isinstance(part, dict):
            found += part.get("containers") or []
    return found


def test_every_rendered_serve_command_parses_into_settings() -> None:
    """The args in every checked-in manifest are accepted by the real `kninfer serve` parser
    and settings (a renamed flag would otherwise only fail inside the cluster)."""
    from kninfer.cli import build_parser
    from kninfer.settings import ServeSettings

    checked = 0
    for path in sorted(ROOT.glob("kserve/*.yaml")) + sorted(ROOT.glob("knative/*.yaml")):
        for doc in docs_of(path.read_text()):
            for container in containers_of(doc):
                args = container.get("args") or []
                assert isinstance(args, list)
                if args[:1] != ["serve"]:
                    continue
                options = build_parser().parse_args(args)
                given = {k: v for k, v in vars(options).items() if k not in ("command", "handler")}
                settings = ServeSettings(**given)
                assert settings.transformer or settings.predictor, (path, args)
                checked += 1
    # containers: 17 under kserve/ (runtime, A/B variants and shadows included), 14 under
    # knative/
    assert checked == 31


# --- InferenceService --------------------------------------------------------------------------


def test_isvc_is_serverless_scale_to_zero_with_custom_container() -> None:
    isvc = inference_service(
        config(
            storage_uri="gs://b/iris",
            container_concurrency=6,
            timeout_seconds=90,
            scale={"max": 4, "target": 2},
        )
    )
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Knative"}
    predictor = isvc["spec"]["predictor"]
    assert {
        k: predictor[k]
        for k in (
            "minReplicas",
            "maxReplicas",
            "scaleMetric",
            "scaleTarget",
            "containerConcurrency",
            "timeout",
        )
    } == {
        "minReplicas": 0,
        "maxReplicas": 4,
        "scaleMetric": "concurrency",
        "scaleTarget": 2,
        "containerConcurrency": 6,
        "timeout": 90,
    }
    assert "canaryTrafficPercent" not in predictor
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert container["args"] == [
        "serve",
        "--predictor",
        "sklearn",
        "--model-dir",
        "/mnt/models",
        "--model-name",
        "iris",
    ]
    assert container["env"] == [
        {"name": "PROTOCOL", "value": "v2"},
        {"name": "STORAGE_URI", "value": "gs://b/iris"},
    ]
    assert container["readinessProbe"] == {"httpGet": {"path": "/v2/health/ready", "port": 8080}}
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert container["securityContext"]["runAsNonRoot"] is True


def test_gpu_variant_has_gpu_limits_cuda_image_placement_and_deadline() -> None:
    isvc = inference_service(
        config(predictor="pytorch", storage_uri="s3://m/net", accelerator="gpu", gpu={"count": 2})
    )
    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["image"] == "ghcr.io/kninfer/kninfer:0.1.0-cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert container["args"][-2:] == ["--device", "cuda"]
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert predictor["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert predictor["annotations"]["serving.knative.dev/progress-deadline"] == "20m"
    assert container["startupProbe"]["failureThreshold"] * 2 == 600


def test_canary_percent_and_tag_routing() -> None:
    isvc = inference_service(config(storage_uri="gs://b/iris", canary_percent=25))
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 25
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"


def test_runtime_mode_declares_v2_and_model_format() -> None:
    runtime, isvc = kserve_documents(
        config(storage_uri="gs://b/iris", kserve="runtime", model_name="flowers")
    )
    assert runtime["kind"] == "ServingRuntime"
    assert runtime["metadata"]["name"] == "kninfer-sklearn"
    assert runtime["spec"]["protocolVersions"] == ["v2", "v1"]
    assert runtime["spec"]["supportedModelFormats"] == [
        {"name": "sklearn", "version": "1", "autoSelect": False}
    ]
    assert "--model-name" in runtime["spec"]["containers"][0]["args"]
    assert "{{.Name}}" in runtime["spec"]["containers"][0]["args"]
    assert isvc["spec"]["predictor"]["model"] == {
        "modelFormat": {"name": "sklearn"},
        "protocolVersion": "v2",
        "runtime": "kninfer-sklearn",
        "storageUri": "gs://b/iris",
        "args": ["--model-name", "flowers"],
    }
    cluster, _ = kserve_documents(
        config(
            storage_uri="gs://b/iris", kserve="runtime", runtime={"kind": "ClusterServingRuntime"}
        )
    )
    assert cluster["kind"] == "ClusterServingRuntime"
    assert "namespace" not in cluster["metadata"]


# --- Knative Service and eventing ---------------------------------------------------------------


def test_knative_service_autoscaling_annotations_are_strings() -> None:
    (service,) = knative_documents(
        config(
            storage_uri="gs://b/iris", scale={"min": 0, "max": 7, "target": 3, "retention": "90s"}
        )
    )
    template = service["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/min-scale": "0",
        "autoscaling.knative.dev/max-scale": "7",
        "autoscaling.knative.dev/metric": "concurrency",
        "autoscaling.knative.dev/target": "3",
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": "90s",
    }
    assert template["spec"]["containerConcurrency"] == 8
    assert template["spec"]["timeoutSeconds"] == 120
    (container,) = template["spec"]["containers"]
    # No storage initializer without KServe: kninfer downloads the URI itself.
    assert container["args"][:5] == [
        "serve",
        "--predictor",
        "sklearn",
        "--storage-uri",
        "gs://b/iris",
    ]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert service["metadata"]["name"] == "iris-predictor"


def test_eventing_routes_requests_to_the_entry_service_and_replies_to_the_sink() -> None:
    docs = eventing_documents(config(transformer={"name": "iris"}, eventing=True))
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert sorted(by_name) == [
        ("Broker", "default"),
        ("Service", "iris-dead-letter"),
        ("Service", "iris-results"),
        ("Trigger", "iris-requests"),
        ("Trigger", "iris-responses"),
    ]
    requests = by_name[("Trigger", "iris-requests")]["spec"]
    assert requests["filters"] == [{"exact": {"type": REQUEST_TYPE, "kninfermodel": "iris"}}]
    assert requests["subscriber"] == {
        "ref": {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "name": "iris-transformer",
        },
        "uri": "/v2/models/iris/infer",
    }
    assert requests["delivery"] == {
        "retry": 5,
        "backoffPolicy": "exponential",
        "backoffDelay": "PT0.5S",
        "deadLetterSink": {
            "ref": {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "name": "iris-dead-letter",
            }
        },
    }
    replies = by_name[("Trigger", "iris-responses")]["spec"]
    assert replies["filters"] == [
        {"exact": {"type": RESPONSE_TYPE, "source": "kninfer/iris-transformer/models/iris"}}
    ]
    assert replies["subscriber"]["ref"]["name"] == "iris-results"
    # A reply never matches the request trigger, so it cannot loop back into the model.
    assert RESPONSE_TYPE != REQUEST_TYPE


def test_eventing_off_and_external_sinks() -> None:
    assert eventing_documents(config(eventing=False)) == []
    docs = eventing_documents(
        config(
            eventing={
                "path": "root",
                "match_model": False,
                "create_broker": False,
                "results_sink": {"uri": "http://results.example/"},
                "dead_letter_sink": {"service": "dlq"},
            }
        )
    )
    assert [d["kind"] for d in docs] == ["Trigger", "Trigger"]
    assert docs[0]["spec"]["filters"] == [{"exact": {"type": REQUEST_TYPE}}]
    assert docs[0]["spec"]["subscriber"]["uri"] == "/"
    assert docs[0]["spec"]["delivery"]["deadLetterSink"]["ref"]["name"] == "dlq"
    assert docs[1]["spec"]["subscriber"] == {"uri": "http://results.example/"}


# --- output and config errors --------------------------------------------------------------------


def test_output_is_deterministic_and_annotation_values_stay_strings() -> None:
    cfg = config(storage_uri="gs://b/iris", eventing=True)
    first, second = render(cfg, "x.yaml"), render(cfg, "x.yaml")
    assert first == second
    assert sorted(first) == ["knative/iris-eventing.yaml", "knative/iris.yaml", "kserve/iris.yaml"]
    text = first["knative/iris.yaml"]
    assert "autoscaling.knative.dev/min-scale: '0'" in text  # quoted: YAML would read 0 as int
    assert text.startswith("# Generated by `kninfer render x.yaml`")


def test_image_override_on_the_command_line(tmp_path: Path) -> None:
    result = kninfer(
        "render",
        "deploy/examples/classifier-gpu.yaml",
        "-o",
        str(tmp_path),
        "--image",
        "registry.local/kninfer:dev-cuda",
    )
    assert result.returncode == 0, result.stderr
    isvc = docs_of((tmp_path / "kserve" / "classifier-gpu.yaml").read_text())[0]
    assert isvc["spec"]["predictor"]["containers"][0]["image"] == (  # type: ignore[index]
        "registry.local/kninfer:dev-cuda"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("name: iris\nscal: {min: 1}\n", "scal: Extra inputs are not permitted"),
        (
            "name: iris\ncanary_percent: 120\n",
            "canary_percent: Input should be less than or equal to 100",
        ),
        (
            "name: Iris_1\n",
            "(top level): name 'Iris_1' must match ^[a-z]([-a-z0-9]*[a-z0-9])?$ and be "
            "at most 45 characters (generated revision names must fit 63)",
        ),
        (
            "name: iris\npredictor: pytorch\n",
            "(top level): predictor pytorch needs storage_uri (only "
            "sklearn has an embedded default model)",
        ),
        ("name: iris\nscale: {min: 3, max: 2}\n", "scale: scale.min (3) is above scale.max (2)"),
        (
            "name: iris\nresources: {limits: {memory: 4GB}}\n",
            "resources.limits: memory: '4GB' is not a Kubernetes quantity (e.g. 500m, 2Gi, 1)",
        ),
        (
            "name: iris\nenv: {PORT: '9000'}\n",
            "(top level): env sets PORT, reserved by Knative's runtime contract",
        ),
    ],
)
def test_config_mistakes_are_reported_with_file_and_field(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(body)
    result = kninfer("render", str(path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr == f"{path}: {message}\n"
    assert not (tmp_path / "out").exists()


# --- the rendered args run for real -------------------------------------------------------------


def kserve_appends(args: list[str], isvc: str, namespace: str, concurrency: int) -> list[str]:
    """What KServe adds to a custom transformer container's args (kserve
    pkg/apis/serving/v1beta1/transformer_custom.go GetContainer; IncludesArg is a prefix test)."""

    def includes(flag: str) -> bool:
        return any(a == flag or a.startswith(flag) for a in args)

    out = list(args)
    if not includes("--model_name"):
        out += ["--model_name", isvc]
    if not includes("--predictor_host"):
        out += ["--predictor_host", f"{isvc}-predictor.{namespace}"]
    if not includes("--http_port"):
        out += ["--http_port", "8080"]
    if not includes("--workers"):
        out += ["--workers", str(concurrency)]
    return out


@pytest.fixture(scope="module")
def pipeline(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """(predictor, transformer): the ISVC's containers, started with their rendered args and the
    K_SERVICE Knative would give them."""
    tmp = tmp_path_factory.mktemp("pipeline")
    cfg = config(transformer={"name": "iris"}, container_concurrency=8)
    isvc = inference_service(cfg)
    predictor_args = isvc["spec"]["predictor"]["containers"][0]["args"]
    predictor = ServerProcess(
        predictor_args[1:], server_env(tmp, K_SERVICE="iris-predictor"), tmp / "predictor.log"
    )
    predictor.start(timeout=120)
    transformer_args = isvc["spec"]["transformer"]["containers"][0]["args"]
    final = kserve_appends(transformer_args, "iris", "ml", 8)
    # Only the HTTP port is appended; our values for name, host and workers are kept.
    assert final == [*transformer_args, "--http_port", "8080"]
    transformer = ServerProcess(
        [], server_env(tmp, K_SERVICE="iris-transformer"), tmp / "transformer.log"
    )
    # Run exactly those args (KServe's `--http_port` spelling included), pointed at loopback.
    local = [
        a.replace("iris-predictor.ml:80", predictor.url.removeprefix("http://"))
        for a in final[1:-1]
    ] + [str(transformer.http_port)]
    transformer.args = local
    try:
        transformer.start(timeout=120)
        yield predictor, transformer
    finally:
        transformer.stop()
        predictor.stop()


def test_rendered_transformer_args_reach_the_rendered_predictor(
    pipeline: tuple[ServerProcess, ServerProcess],
) -> None:
    _, transformer = pipeline
    record = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    response = httpx.post(
        f"{transformer.url}/v1/models/iris:predict", json={"instances": [record]}, timeout=30
    )
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["label"] == "setosa"
    assert json.dumps(sorted(prediction["probabilities"])) == json.dumps(
        ["setosa", "versicolor", "virginica"]
    )


def exact_match(trigger: dict[str, Any], attributes: dict[str, Any]) -> bool:
    """Does an event with these attributes pass the Trigger's `filters: [{exact: ...}]`?"""
    return all(
        all(attributes.get(k) == v for k, v in f["exact"].items())
        for f in trigger["spec"]["filters"]
    )


def test_broker_delivery_through_the_rendered_triggers(
    pipeline: tuple[ServerProcess, ServerProcess],
) -> None:
    """Play the broker: an event matching the request Trigger goes to its subscriber path on the
    predictor; the reply must match the reply Trigger and never the request Trigger (no loop)."""
    from kninfer.cloudevents.client import build_request_event

    predictor, _ = pipeline
    triggers = {
        d["metadata"]["name"]: d
        for d in eventing_documents(config(eventing=True))
        if d["kind"] == "Trigger"
    }
    requests, responses = triggers["iris-requests"], triggers["iris-responses"]
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "datatype": "FP64",
                    "shape": [1, 4],
                    "data": [5.1, 3.5, 1.4, 0.2],
                }
            ]
        }
    ).encode()
    headers, data = build_request_event(
        body, structured=False, source="test/broker", event_id="e-1", model="iris"
    )
    sent = {k.removeprefix("ce-"): v for k, v in headers.items() if k.startswith("ce-")}
    assert exact_match(requests, sent) and not exact_match(responses, sent)
    assert requests["spec"]["subscriber"]["ref"]["name"] == "iris-predictor"
    reply = httpx.post(
        predictor.url + requests["spec"]["subscriber"]["uri"],
        content=data,
        headers=headers,
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    got = {k.removeprefix("ce-"): v for k, v in reply.headers.items() if k.startswith("ce-")}
    assert got["type"] == RESPONSE_TYPE
    assert exact_match(responses, got), got
    assert not exact_match(requests, got)


def test_canary_is_never_dropped_silently_from_plain_knative(tmp_path: Path) -> None:
    example = "deploy/examples/iris-canary.yaml"
    both = kninfer("render", example, "-o", str(tmp_path / "both"))
    assert both.returncode == 0, both.stderr
    assert (tmp_path / "both" / "kserve" / "iris-canary.yaml").is_file()
    assert not (tmp_path / "both" / "knative").exists()
    assert (
        "knative/iris-canary.yaml not rendered: canary_percent needs KServe's "
        "InferenceService (canaryTrafficPercent)"
    ) in both.stderr
    alone = kninfer("render", example, "-o", str(tmp_path / "alone"), "--variant", "knative")
    assert alone.returncode == 2
    assert f"{example}: cannot render plain Knative: canary_percent needs KServe" in alone.stderr
    assert not (tmp_path / "alone").exists()


def test_service_account_reaches_every_pod() -> None:
    from kninfer.deploy.render import inference_service, knative_documents

    cfg = config(
        service_account="model-reader", storage_uri="s3://bucket/iris", transformer={"name": "iris"}
    )
    isvc = inference_service(cfg)
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "model-reader"
    assert isvc["spec"]["transformer"]["serviceAccountName"] == "model-reader"
    for service in knative_documents(cfg):
        assert service["spec"]["template"]["spec"]["serviceAccountName"] == "model-reader"
    with pytest.raises(ValueError, match="service_account 'Model_Reader' is not a DNS-1123"):
        config(service_account="Model_Reader")


def test_grpc_serving_protocol_exposes_one_h2c_port_with_tcp_probes() -> None:
    from kninfer.deploy.render import inference_service, knative_documents

    cfg = config(
        serving_protocol="grpc", storage_uri="s3://bucket/iris", transformer={"name": "iris"}
    )
    isvc = inference_service(cfg)
    pods = [
        isvc["spec"]["predictor"]["containers"][0],
        isvc["spec"]["transformer"]["containers"][0],
    ]
    pods += [s["spec"]["template"]["spec"]["containers"][0] for s in knative_documents(cfg)]
    for container in pods:
        assert container["ports"] == [{"name": "h2c", "containerPort": 8081, "protocol": "TCP"}]
        assert container["readinessProbe"] == {"tcpSocket": {"port": 8081}}
        assert container["args"][-2:] == ["--http-port", "8080"]  # $PORT is the h2c port
    assert "--predictor-protocol" in pods[1]["args"]
    assert pods[1]["args"][pods[1]["args"].index("--predictor-protocol") + 1] == "grpc-v2"
    env = {e["name"]: e["value"] for e in pods[0]["env"]}
    assert env["PROTOCOL"] == "grpc-v2"
    with pytest.raises(ValueError, match="eventing needs serving_protocol http"):
        config(serving_protocol="grpc", eventing=True)


def test_pvc_storage_is_mounted_not_downloaded_on_plain_knative() -> None:
    from kninfer.deploy.render import inference_service, knative_documents

    cfg = config(storage_uri="pvc://models/iris/v3")
    (service,) = knative_documents(cfg)
    spec = service["spec"]["template"]["spec"]
    assert spec["volumes"] == [
        {"name": "model", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}
    ]
    container = spec["containers"][0]
    assert container["volumeMounts"] == [
        {"name": "model", "mountPath": "/mnt/models", "readOnly": True}
    ]
    assert container["args"][container["args"].index("--model-dir") + 1] == "/mnt/models/iris/v3"
    assert "--storage-uri" not in container["args"]
    # KServe mounts the claim itself from STORAGE_URI.
    env = {
        e["name"]: e["value"]
        for e in inference_service(cfg)["spec"]["predictor"]["containers"][0]["env"]
    }
    assert env["STORAGE_URI"] == "pvc://models/iris/v3"


def test_oci_modelcar_renders_for_kserve_and_says_why_not_for_knative(tmp_path: Path) -> None:
    from kninfer.deploy.render import knative_gap, render

    cfg = config(storage_uri="oci://registry.example.com/models/iris:3")
    files = render(cfg, "iris.yaml")
    assert sorted(files) == ["kserve/iris.yaml"]
    assert "STORAGE_URI" in files["kserve/iris.yaml"]
    assert "oci://registry.example.com/models/iris:3" in files["kserve/iris.yaml"]
    assert "KServe modelcar" in (knative_gap(cfg) or "")
