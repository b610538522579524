"""`kninfer validate`: strict offline validation against the real KServe/Knative CRDs vendored in
kninfer/deploy/crds, plus synthetic CRDs for the structural-schema rules those files do not use."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from kninfer.deploy.config import DeployConfig
from kninfer.deploy.crd_store import SchemaStore
from kninfer.deploy.render import eventing_documents, inference_service, knative_documents
from kninfer.deploy.validate import Problem, validate_document, validate_file
from tests.support.paths import ROOT, SCHEMAS, UPSTREAM_SCHEMAS


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(SCHEMAS)


def cfg(**values: Any) -> DeployConfig:
    return DeployConfig.model_validate({"name": "iris", "namespace": "ml", **values})


@pytest.fixture
def isvc() -> dict[str, Any]:
    return inference_service(cfg(storage_uri="gs://b/iris", transformer={"name": "iris"}))


@pytest.fixture
def ksvc() -> dict[str, Any]:
    return knative_documents(cfg(storage_uri="gs://b/iris"))[0]


@pytest.fixture
def trigger() -> dict[str, Any]:
    return [d for d in eventing_documents(cfg(eventing=True)) if d["kind"] == "Trigger"][0]


def problems(doc: dict[str, Any], store: SchemaStore) -> list[tuple[str, str, str]]:
    return [
        (p.path, p.rule, p.message)
        for p in validate_document(doc, store, "f.yaml", 1)
        if p.severity == "error"
    ]


def test_rendered_documents_are_valid(
    store: SchemaStore, isvc: dict[str, Any], ksvc: dict[str, Any], trigger: dict[str, Any]
) -> None:
    for doc in (isvc, ksvc, trigger):
        assert validate_document(doc, store, "f.yaml", 1) == []


def test_unknown_field_is_an_error(store: SchemaStore, isvc: dict[str, Any]) -> None:
    isvc["spec"]["predictor"]["replicas"] = 2
    isvc["spec"]["predictor"]["containers"][0]["gpu"] = 1
    assert problems(isvc, store) == [
        ("$.spec.predictor.containers[0].gpu", "strict-fields", 'unknown field "gpu"'),
        ("$.spec.predictor.replicas", "strict-fields", 'unknown field "replicas"'),
    ]


def test_knative_container_subset_rejects_lifecycle(
    store: SchemaStore, ksvc: dict[str, Any]
) -> None:
    ksvc["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"preStop": {}}
    assert problems(ksvc, store) == [
        (
            "$.spec.template.spec.containers[0].lifecycle",
            "strict-fields",
            'unknown field "lifecycle"',
        )
    ]


def test_annotation_values_must_be_strings(
    store: SchemaStore, isvc: dict[str, Any], ksvc: dict[str, Any]
) -> None:
    isvc["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] = 0
    assert problems(isvc, store) == [
        (
            '$.metadata.annotations["autoscaling.knative.dev/min-scale"]',
            "type",
            "0 is not of type 'string'",
        )
    ]
    # The revision template's annotations too (YAML 1.1 reads an unquoted `on` as true).
    ksvc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/target"] = True
    assert problems(ksvc, store) == [
        (
            '$.spec.template.metadata.annotations["autoscaling.knative.dev/target"]',
            "type",
            "True is not of type 'string'",
        )
    ]


def test_wrong_types_and_enums(store: SchemaStore, isvc: dict[str, Any]) -> None:
    isvc["spec"]["predictor"]["minReplicas"] = "0"
    isvc["spec"]["predictor"]["scaleMetric"] = "qps"  # the upstream docs' typo
    isvc["spec"]["predictor"]["canaryTrafficPercent"] = 10.5
    assert problems(isvc, store) == [
        ("$.spec.predictor.canaryTrafficPercent", "type", "10.5 is not of type 'integer'"),
        ("$.spec.predictor.minReplicas", "type", "'0' is not of type 'integer'"),
        (
            "$.spec.predictor.scaleMetric",
            "enum",
            "'qps' is not one of ['cpu', 'memory', 'concurrency', 'rps']",
        ),
    ]


def test_quantities_int_or_string(store: SchemaStore, isvc: dict[str, Any]) -> None:
    resources = isvc["spec"]["predictor"]["containers"][0]["resources"]
    resources["limits"]["memory"] = "4GB"
    resources["limits"]["nvidia.com/gpu"] = 1  # an integer is fine
    resources["requests"]["cpu"] = 1.5  # a float is not (the API server refuses it too)
    assert problems(isvc, store) == [
        (
            "$.spec.predictor.containers[0].resources.limits.memory",
            "quantity",
            '"4GB" is not a Kubernetes quantity',
        ),
        (
            "$.spec.predictor.containers[0].resources.requests.cpu",
            "anyOf",
            "1.5 is not valid under any of the given schemas",
        ),
    ]


def test_null_is_dropped_like_the_api_server_does(store: SchemaStore, isvc: dict[str, Any]) -> None:
    isvc["spec"]["predictor"]["nodeSelector"] = None
    found = validate_document(isvc, store, "f.yaml", 1)
    assert found == [
        Problem(
            "f.yaml",
            1,
            "InferenceService",
            "iris",
            "$.spec.predictor.nodeSelector",
            "nullable",
            "null value is dropped by the API server",
            "warning",
        )
    ]


def test_list_map_keys_must_be_unique(store: SchemaStore, isvc: dict[str, Any]) -> None:
    # containerPort+protocol is the list-map key; protocol defaults to TCP before the check.
    ports = isvc["spec"]["predictor"]["containers"][0]["ports"]
    ports.append({"containerPort": 8080, "name": "again"})
    assert problems(isvc, store) == [
        (
            "$.spec.predictor.containers[0].ports[1]",
            "x-kubernetes-list-map-keys",
            "duplicate entry (containerPort=8080, protocol='TCP'); first at index 0",
        )
    ]


def test_kserve_webhook_rules(store: SchemaStore, isvc: dict[str, Any]) -> None:
    isvc["spec"]["predictor"]["model"] = {"modelFormat": {"name": "sklearn"}}
    isvc["spec"]["predictor"]["canaryTrafficPercent"] = 120
    isvc["spec"]["transformer"]["minReplicas"] = 5
    assert problems(isvc, store) == [
        (
            "$.spec.predictor",
            "kserve-webhook",
            "exactly one predictor implementation must be "
            "set (model, containers or a framework); found 2: model, containers",
        ),
        (
            "$.spec.predictor.canaryTrafficPercent",
            "knative-traffic",
            "canaryTrafficPercent must be within 0..100, got 120",
        ),
        (
            "$.spec.transformer.minReplicas",
            "kserve-webhook",
            "minReplicas (5) must not exceed maxReplicas (3)",
        ),
    ]


def test_knative_reserved_env_and_ports(store: SchemaStore, ksvc: dict[str, Any]) -> None:
    container = ksvc["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "K_SERVICE", "value": "x"}]
    container["ports"][0]["containerPort"] = 8012
    found = problems(ksvc, store)
    assert (
        "$.spec.template.spec.containers[0].env[0].name",
        "knative-runtime-contract",
        "env K_SERVICE is reserved by Knative",
    ) in found
    assert (
        "$.spec.template.spec.containers[0].ports[0].containerPort",
        "knative-runtime-contract",
        "port 8012 is reserved by Knative",
    ) in found


def test_trigger_fields_follow_the_eventing_webhook(
    store: SchemaStore, trigger: dict[str, Any]
) -> None:
    # The CRD preserves unknown fields under Trigger.spec; the webhook rejects them.
    trigger["spec"]["subscriberr"] = trigger["spec"].pop("subscriber")
    trigger["spec"]["delivery"]["timeout"] = "PT10S"  # a DeliverySpec field: allowed
    trigger["spec"]["delivery"]["retries"] = 3
    assert problems(trigger, store) == [
        ("$.spec.delivery.retries", "eventing-webhook-fields", 'unknown field "retries"'),
        ("$.spec.subscriberr", "eventing-webhook-fields", 'unknown field "subscriberr"'),
        ("$.spec.subscriber", "eventing-webhook", "a Trigger needs a subscriber"),
    ]


def test_metadata_is_object_meta(store: SchemaStore, trigger: dict[str, Any]) -> None:
    trigger["metadata"]["name"] = "Requests_1"
    trigger["metadata"]["lables"] = {}
    trigger["metadata"]["labels"]["tier"] = 3
    found = problems(trigger, store)
    assert found[0] == ("$.metadata.labels.tier", "type", "3 is not of type 'string'")
    assert found[1] == ("$.metadata.lables", "strict-fields", 'unknown field "lables"')
    assert found[2][:2] == ("$.metadata.name", "pattern")
    assert len(found) == 3


def test_core_kinds_are_checked_by_field_name(store: SchemaStore) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "datas": {"a": "b"},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replica": 1, "template": {}},
    }
    assert problems(config_map, store) == [("$.datas", "strict-fields", 'unknown field "datas"')]
    assert problems(deployment, store) == [
        ("$.spec.replica", "strict-fields", 'unknown field "replica"')
    ]
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert problems(unknown, store) == [
        (
            "$.kind",
            "schema",
            "no schema for example.com/v1 Widget: not a CRD in the CRD "
            "directory nor a known core kind",
        )
    ]
    old_version = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "w"},
    }
    assert problems(old_version, store) == [
        (
            "$.kind",
            "schema",
            "no schema for serving.kserve.io/v1alpha1 InferenceService: not a "
            "CRD in the CRD directory nor a known core kind (the CRDs define InferenceService as "
            "serving.kserve.io/v1beta1)",
        )
    ]


def test_cluster_scoped_runtime_takes_no_namespace(store: SchemaStore) -> None:
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": "r", "namespace": "ml"},
        "spec": {
            "containers": [{"name": "kserve-container", "image": "i"}],
            "supportedModelFormats": [{"name": "sklearn"}],
        },
    }
    assert problems(runtime, store) == [
        (
            "$.metadata.namespace",
            "scope",
            "ClusterServingRuntime is cluster-scoped and takes no namespace",
        )
    ]


# --- structural-schema rules, on a synthetic CRD ------------------------------------------------

WIDGET_CRD = textwrap.dedent("""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.example.com}
    spec:
      group: example.com
      scope: Namespaced
      names: {kind: Widget, plural: widgets}
      versions:
      - name: v1
        served: true
        storage: true
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                required: [size]
                properties:
                  size: {x-kubernetes-int-or-string: true}
                  note: {type: string, nullable: true}
                  mode: {type: string, enum: [fast, slow], default: fast}
                  tags:
                    type: array
                    x-kubernetes-list-type: set
                    items: {type: string}
                  extra:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
                    properties:
                      level: {type: integer}
    """)


@pytest.fixture(scope="module")
def widget_store(tmp_path_factory: pytest.TempPathFactory) -> SchemaStore:
    crds = tmp_path_factory.mktemp("crds")
    # As `kubectl get crd widgets.example.com -o yaml` prints it when given several names: a List.
    crd = yaml.safe_load(WIDGET_CRD)
    (crds / "widget.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [crd]})
    )
    return SchemaStore(crds)


def widget(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": spec,
    }


def test_int_or_string_without_any_of(widget_store: SchemaStore) -> None:
    assert problems(widget(size=3), widget_store) == []
    assert problems(widget(size="3Gi"), widget_store) == []
    assert problems(widget(size=[3]), widget_store) == [
        ("$.spec.size", "anyOf", "[3] is not valid under any of the given schemas")
    ]


def test_nullable_and_defaults(widget_store: SchemaStore) -> None:
    assert problems(widget(size=1, note=None), widget_store) == []  # nullable: kept, valid
    # `mode` is defaulted to `fast` before validation, so a missing value is fine ...
    assert problems(widget(size=1), widget_store) == []
    # ... and an explicit null on a non-nullable field is dropped (then defaulted), not an error.
    found = validate_document(widget(size=1, mode=None), widget_store, "f.yaml", 2)
    assert [(p.path, p.severity) for p in found] == [("$.spec.mode", "warning")]
    assert problems(widget(size=1, mode="medium"), widget_store) == [
        ("$.spec.mode", "enum", "'medium' is not one of ['fast', 'slow']")
    ]


def test_preserve_unknown_fields_stays_open_but_typed(widget_store: SchemaStore) -> None:
    assert problems(widget(size=1, extra={"anything": {"goes": 1}, "level": 2}), widget_store) == []
    assert problems(widget(size=1, extra={"level": "high"}), widget_store) == [
        ("$.spec.extra.level", "type", "'high' is not of type 'integer'")
    ]
    assert problems(widget(size=1, colour="red"), widget_store) == [
        ("$.spec.colour", "strict-fields", 'unknown field "colour"')
    ]


def test_list_type_set_and_required(widget_store: SchemaStore) -> None:
    assert problems(widget(size=1, tags=["a", "b", "a"]), widget_store) == [
        ("$.spec.tags[2]", "x-kubernetes-list-type", "duplicate set item 'a'; first at index 0")
    ]
    assert problems(widget(), widget_store) == [
        ("$.spec", "required", "'size' is a required property")
    ]


# --- files and the CLI --------------------------------------------------------------------------


def test_duplicate_keys_and_document_numbers(
    tmp_path: Path, store: SchemaStore, ksvc: dict[str, Any]
) -> None:
    good = yaml.safe_dump(ksvc)
    path = tmp_path / "two.yaml"
    path.write_text(
        good + "---\n" + "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n"
    )
    count, found = validate_file(path, store)
    assert count == 1
    line = good.count("\n") + 6  # `---`, apiVersion, kind, metadata, name: a, name: b
    assert [str(p) for p in found] == [
        f"{path}: document 2: $: duplicate key 'name' at line {line} [rule: duplicate-key]"
    ]


def run_validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kninfer", "validate", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_names_file_document_path_and_rule(
    tmp_path: Path, isvc: dict[str, Any], ksvc: dict[str, Any]
) -> None:
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["replicas"] = 2
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump_all([ksvc, bad]))
    result = run_validate(str(path), "--crds", str(SCHEMAS))
    assert result.returncode == 1
    assert result.stdout == (
        f"{path}: document 2 (InferenceService/iris): "
        '$.spec.predictor.replicas: unknown field "replicas" '
        "[rule: strict-fields]\n"
    )
    assert result.stderr == "2 document(s) in 1 file(s): 1 error(s)\n"


def test_cli_valid_and_missing_crd_dir(tmp_path: Path, ksvc: dict[str, Any]) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(ksvc))
    result = run_validate(str(path), "--crds", str(SCHEMAS))
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "",
        "1 document(s) in 1 file(s): valid\n",
    )
    missing = run_validate(str(path), "--crds", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr == f"kninfer validate: CRD directory {tmp_path / 'nope'} does not exist\n"


def test_the_tests_schemas_are_the_vendored_crds() -> None:
    from kninfer.deploy import VENDORED_CRDS

    assert SCHEMAS.resolve() == VENDORED_CRDS.resolve()


def test_vendored_crds_are_the_upstream_copies_byte_for_byte() -> None:
    from kninfer.deploy import VENDORED_CRDS

    if not UPSTREAM_SCHEMAS.is_dir():
        pytest.skip(
            f"{UPSTREAM_SCHEMAS} (the copies the vendored CRDs came from) is not beside "
            "this checkout; nothing to compare with"
        )
    shared = sorted(
        p.relative_to(UPSTREAM_SCHEMAS) for p in UPSTREAM_SCHEMAS.rglob("*") if p.is_file()
    )
    vendored = sorted(p.relative_to(VENDORED_CRDS) for p in VENDORED_CRDS.rglob("*") if p.is_file())
    # Every upstream copy is vendored; files vendored since from elsewhere (the
    # prometheus-operator CRD) each have their source in SOURCES.md.
    assert set(shared) <= set(vendored)
    sources = (VENDORED_CRDS / "SOURCES.md").read_text()
    for relative in set(vendored) - set(shared):
        assert str(relative) in sources, relative
    for relative in shared:
        vendored_bytes = (VENDORED_CRDS / relative).read_bytes()
        upstream_bytes = (UPSTREAM_SCHEMAS / relative).read_bytes()
        if relative.name == "SOURCES.md":  # extended at its end with the files added since
            vendored_bytes = vendored_bytes[: len(upstream_bytes)]
        assert vendored_bytes == upstream_bytes, relative


def test_validate_needs_no_crds_flag_from_any_directory(tmp_path: Path) -> None:
    rendered = tmp_path / "rendered"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kninfer",
            "render",
            str(ROOT / "deploy" / "examples" / "iris-cpu.yaml"),
            "-o",
            str(rendered),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = subprocess.run(
        [sys.executable, "-m", "kninfer", "validate", str(rendered)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = (result.stdout + result.stderr).strip()
    assert output.endswith("2 document(s) in 2 file(s): valid"), output
