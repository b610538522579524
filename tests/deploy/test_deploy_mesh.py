"""`mesh` in a deploy config: an Istio AuthorizationPolicy per rendered workload
(kninfer.deploy.mesh), selecting the pods by the labels KServe or Knative put on them and
admitting the workload's real callers, validated against the vendored Istio CRD."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from kninfer.deploy.config import DeployConfig, load_config
from kninfer.deploy.mesh import mesh_documents
from kninfer.deploy.render import policies, render
from tests.support.paths import ROOT, SCHEMAS

EXAMPLE = ROOT / "deploy" / "examples" / "iris-events-istio.yaml"
RELAYS = {"source": {"namespaces": ["knative-serving", "istio-system"]}}
PROBE_PATHS = {"to": [{"operation": {"paths": ["/healthz", "/metrics"]}}]}
BROKER_FILTER = "cluster.local/ns/knative-eventing/sa/mt-broker-filter"


def config(**values: Any) -> DeployConfig:
    return DeployConfig.model_validate({"name": "iris", "namespace": "ml", **values})


def by_name(cfg: DeployConfig, variant: str) -> dict[str, dict[str, Any]]:
    docs = mesh_documents(cfg, variant)
    assert all(
        d["apiVersion"] == "security.istio.io/v1" and d["kind"] == "AuthorizationPolicy"
        for d in docs
    )
    return {d["metadata"]["name"]: d for d in docs}


def callers(policy: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(principals, namespaces) of the policy's named-caller rule, as rendered."""
    spec = policy["spec"]
    assert spec["action"] == "ALLOW"
    rules = spec["rules"]
    # every policy ends with the relays and Knative's probe paths (knative docs,
    # serving/istio-authorization.md)
    assert rules[-2:] == [{"from": [RELAYS]}, PROBE_PATHS]
    if len(rules) == 2:
        return [], []
    (named,) = rules[:-2]
    principals = [p for s in named["from"] for p in s["source"].get("principals", [])]
    namespaces = [n for s in named["from"] for n in s["source"].get("namespaces", [])]
    return principals, namespaces


def selector(policy: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = policy["spec"]["selector"]["matchLabels"]
    return labels


# --- the config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mesh", "message"),
    [
        (
            {"allow": {"service_accounts": ["checkout"]}},
            "'checkout' is not <namespace>/<service account>",
        ),
        (
            {"allow": {"service_accounts": ["Shop/checkout"]}},
            "'Shop/checkout' is not <namespace>/<service account>",
        ),
        (
            {"allow": {"service_accounts": ["shop/check_out"]}},
            "'shop/check_out' is not <namespace>/<service account>",
        ),
        ({"allow": {"namespaces": ["web-"]}}, "'web-' is not a namespace name"),
        ({"allow": {"namespaces": ["web", "web"]}}, "mesh.allow.namespaces repeats web"),
        ({"allow": {"principals": ["x"]}}, "Extra inputs are not permitted"),
        ({"alow": {}}, "Extra inputs are not permitted"),
        ({"provider": "linkerd"}, "Input should be 'istio'"),
        ({"trust_domain": "Cluster.Local"}, "'Cluster.Local' is not a trust domain"),
    ],
)
def test_a_bad_mesh_block_is_refused_with_its_field(mesh: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(mesh=mesh)
    assert message in str(caught.value)
    assert "mesh" in str(caught.value)


def test_a_bad_mesh_block_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "iris.yaml"
    path.write_text("name: iris\nmesh:\n  allow:\n    service_accounts: [checkout]\n")
    done = subprocess.run(
        [sys.executable, "-m", "kninfer", "render", str(path), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"{path}: mesh.allow.service_accounts: 'checkout' is not <namespace>/<service account>"
    )


def test_mesh_true_takes_the_defaults_and_no_mesh_renders_no_policy() -> None:
    on = config(mesh=True)
    assert on.mesh is not None and on.mesh.trust_domain == "cluster.local"
    assert on.mesh.allow.service_accounts == [] and on.mesh.allow.namespaces == []
    assert config(mesh=False).mesh is None
    assert mesh_documents(config(), "kserve") == mesh_documents(config(), "knative") == []
    files = render(config(), "x.yaml")
    assert "AuthorizationPolicy" not in "".join(files.values())


def test_only_the_istio_example_renders_policies() -> None:
    """Existing examples stay as they were: no `mesh`, no policy in their checked-in files."""
    for path in sorted((ROOT / "deploy" / "examples").glob("*.yaml")):
        cfg = load_config(path)
        assert (cfg.mesh is not None) == (path == EXAMPLE), path
    for path in sorted(ROOT.glob("kserve/*.yaml")) + sorted(ROOT.glob("knative/*.yaml")):
        has_policy = "kind: AuthorizationPolicy" in path.read_text()
        assert has_policy == (path.name == "iris-events-istio.yaml"), path


# --- what is rendered --------------------------------------------------------------------------


def test_predictor_selected_by_its_controllers_labels_admits_the_allowed_callers() -> None:
    cfg = config(
        mesh={
            "allow": {
                "service_accounts": ["shop/checkout", "web/frontend"],
                "namespaces": ["batch"],
            }
        }
    )
    (kserve,) = by_name(cfg, "kserve").values()
    (knative,) = by_name(cfg, "knative").values()
    assert kserve["metadata"]["name"] == knative["metadata"]["name"] == "iris-predictor"
    assert kserve["metadata"]["namespace"] == "ml"
    # KServe: the InferenceService and component labels on the predictor's pods; plain Knative:
    # the Knative Service label on every revision's pods.
    assert selector(kserve) == {
        "serving.kserve.io/inferenceservice": "iris",
        "component": "predictor",
    }
    assert selector(knative) == {"serving.knative.dev/service": "iris-predictor"}
    for policy in (kserve, knative):
        assert callers(policy) == (
            ["cluster.local/ns/shop/sa/checkout", "cluster.local/ns/web/sa/frontend"],
            ["batch"],
        )


def test_the_selected_names_are_the_rendered_services() -> None:
    """Each Knative-variant policy selects a Knative Service that the same file renders, and each
    KServe-variant policy an InferenceService of that file."""
    cfg = config(transformer={"name": "iris"}, eventing=True, shadow={}, mesh=True)
    files = render(cfg, "x.yaml")
    for variant in ("kserve", "knative"):
        docs = list(yaml.safe_load_all(files[f"{variant}/iris.yaml"]))
        names = {d["metadata"]["name"] for d in docs if d["kind"] != "AuthorizationPolicy"}
        found = [d for d in docs if d["kind"] == "AuthorizationPolicy"]
        assert len(found) == 4
        for policy in found:
            labels = selector(policy)
            target = (
                labels.get("serving.knative.dev/service")
                or labels["serving.kserve.io/inferenceservice"]
            )
            assert target in names, (variant, labels)


def test_transformer_admits_the_callers_and_its_predictor_only_the_transformer() -> None:
    for account, principal in (
        (None, "cluster.local/ns/ml/sa/default"),
        ("iris-runner", "cluster.local/ns/ml/sa/iris-runner"),
    ):
        cfg = config(
            transformer={"name": "iris"},
            service_account=account,
            mesh={"allow": {"namespaces": ["web"]}},
        )
        policies_ = by_name(cfg, "kserve")
        assert list(policies_) == ["iris-predictor", "iris-transformer"]
        assert selector(policies_["iris-transformer"]) == {
            "serving.kserve.io/inferenceservice": "iris",
            "component": "transformer",
        }
        assert callers(policies_["iris-transformer"]) == ([], ["web"])
        assert callers(policies_["iris-predictor"]) == ([principal], [])
        knative = by_name(cfg, "knative")
        assert selector(knative["iris-transformer"]) == {
            "serving.knative.dev/service": "iris-transformer"
        }
        assert callers(knative["iris-predictor"]) == ([principal], [])


def test_event_driven_entry_admits_the_brokers_filter() -> None:
    cfg = config(eventing=True, mesh={"allow": {"service_accounts": ["shop/checkout"]}})
    (policy,) = by_name(cfg, "knative").values()
    assert callers(policy) == (["cluster.local/ns/shop/sa/checkout", BROKER_FILTER], [])
    # Another broker class dispatches from its own data plane in knative-eventing.
    kafka = config(eventing={"broker_class": "Kafka"}, mesh=True)
    (policy,) = by_name(kafka, "kserve").values()
    assert callers(policy) == ([], ["knative-eventing"])


def test_trust_domain_is_used_in_every_principal() -> None:
    cfg = config(
        eventing=True,
        transformer={"name": "iris"},
        mesh={"trust_domain": "prod.example.com", "allow": {"service_accounts": ["shop/checkout"]}},
    )
    named = [p for policy in by_name(cfg, "kserve").values() for p in callers(policy)[0]]
    assert sorted(named) == [
        "prod.example.com/ns/knative-eventing/sa/mt-broker-filter",
        "prod.example.com/ns/ml/sa/default",
        "prod.example.com/ns/shop/sa/checkout",
    ]


def test_experiment_variants_admit_the_router_and_the_graph_the_callers() -> None:
    cfg = config(
        experiment={"variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]},
        mesh={"allow": {"service_accounts": ["shop/checkout"]}},
    )
    kserve = by_name(cfg, "kserve")
    assert list(kserve) == ["iris-a-predictor", "iris-b-predictor", "iris"]
    for variant in ("a", "b"):
        policy = kserve[f"iris-{variant}-predictor"]
        assert selector(policy) == {
            "serving.kserve.io/inferenceservice": f"iris-{variant}",
            "component": "predictor",
        }
        # KServe's router pod names no service account: it runs as the namespace's default.
        assert callers(policy) == (["cluster.local/ns/ml/sa/default"], [])
    assert selector(kserve["iris"]) == {"serving.kserve.io/inferencegraph": "iris"}
    assert callers(kserve["iris"]) == (["cluster.local/ns/shop/sa/checkout"], [])
    # The Splitter is KServe's: no plain Knative file, so no Knative-variant policy either.
    files = render(cfg, "x.yaml")
    assert "knative/iris.yaml" not in files
    assert policies(cfg) == policies(cfg, ("kserve",))
    assert len(policies(cfg)) == 3


def test_event_shadow_candidate_admits_the_brokers_filter() -> None:
    cfg = config(eventing=True, shadow={}, mesh={"allow": {"namespaces": ["web"]}})
    for variant in ("kserve", "knative"):
        found = by_name(cfg, variant)
        assert list(found) == ["iris-predictor", "iris-candidate-predictor"]
        assert callers(found["iris-predictor"]) == ([BROKER_FILTER], ["web"])
        # The candidate is no entry point: the allow list stays off it.
        assert callers(found["iris-candidate-predictor"]) == ([BROKER_FILTER], [])
    assert selector(by_name(cfg, "kserve")["iris-candidate-predictor"]) == {
        "serving.kserve.io/inferenceservice": "iris-candidate",
        "component": "predictor",
    }


def test_http_shadow_feeds_the_candidates_predictor_through_the_broker() -> None:
    cfg = config(
        transformer={"name": "iris"},
        shadow={},
        mesh={"allow": {"service_accounts": ["shop/checkout"]}},
    )
    found = by_name(cfg, "kserve")
    assert list(found) == [
        "iris-predictor",
        "iris-transformer",
        "iris-candidate-predictor",
        "iris-candidate-transformer",
    ]
    assert callers(found["iris-transformer"]) == (["cluster.local/ns/shop/sa/checkout"], [])
    assert callers(found["iris-predictor"]) == (["cluster.local/ns/ml/sa/default"], [])
    # The payload log's Trigger posts to the candidate's predictor; its transformer, which
    # nothing calls, admits only the relays.
    assert callers(found["iris-candidate-predictor"]) == (
        ["cluster.local/ns/ml/sa/default", BROKER_FILTER],
        [],
    )
    assert callers(found["iris-candidate-transformer"]) == ([], [])


# --- validation against the vendored CRD -------------------------------------------------------


def kninfer(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kninfer", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rendered_policies_validate_strictly_and_render_says_so(tmp_path: Path) -> None:
    (tmp_path / "iris.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "iris",
                "namespace": "ml",
                "transformer": {"name": "iris"},
                "eventing": True,
                "shadow": {},
                "mesh": {"allow": {"service_accounts": ["shop/checkout"]}},
            }
        )
    )
    done = kninfer("render", "iris.yaml", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "AuthorizationPolicy" in line]
    assert lines[:2] == [
        "iris-predictor: AuthorizationPolicy in kserve/iris.yaml: allows "
        "cluster.local/ns/ml/sa/default; plus the relays in knative-serving, istio-system",
        "iris-transformer: AuthorizationPolicy in kserve/iris.yaml: allows "
        f"cluster.local/ns/shop/sa/checkout, {BROKER_FILTER}; plus the relays in "
        "knative-serving, istio-system",
    ]
    assert len(lines) == 8  # four workloads, in each variant's file
    checked = kninfer("validate", "out", "--crds", str(SCHEMAS), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stderr == "21 document(s) in 3 file(s): valid\n"


def test_a_broken_policy_is_caught_by_the_vendored_schema(tmp_path: Path) -> None:
    """The validation above is real: the Istio schema rejects a stray field, a wrong action and
    a selector value of the wrong type."""
    cfg = config(transformer={"name": "iris"}, mesh=True)
    docs = mesh_documents(cfg, "kserve")
    docs[0]["spec"]["action"] = "PERMIT"
    docs[0]["spec"]["rules"][0]["from"][0]["source"]["principal"] = ["x"]
    docs[1]["spec"]["selector"]["matchLabels"]["component"] = 1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump_all(docs))
    checked = kninfer("validate", "bad.yaml", "--crds", str(SCHEMAS), cwd=tmp_path)
    assert checked.returncode == 1
    out = checked.stdout
    assert (
        "document 1 (AuthorizationPolicy/iris-predictor): $.spec.action: 'PERMIT' is not "
        "one of ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] [rule: enum]"
    ) in out
    assert (
        "document 1 (AuthorizationPolicy/iris-predictor): "
        '$.spec.rules[0].from[0].source.principal: unknown field "principal"'
    ) in out
    assert (
        "document 2 (AuthorizationPolicy/iris-transformer): "
        "$.spec.selector.matchLabels.component: 1 is not of type 'string'"
    ) in out
    assert checked.stderr == "2 document(s) in 1 file(s): 3 error(s)\n"


def test_the_istio_crd_serves_v1_and_v1beta1() -> None:
    from kninfer.deploy.crd_store import SchemaStore

    store = SchemaStore(SCHEMAS)
    assert store.versions_of("AuthorizationPolicy") == [
        "security.istio.io/v1",
        "security.istio.io/v1beta1",
    ]
    entry = store.entry("security.istio.io/v1", "AuthorizationPolicy")
    assert entry is not None and entry["scope"] == "Namespaced"


# --- the checked-in example --------------------------------------------------------------------


def test_the_istio_example_re_renders_identically_with_its_policies(tmp_path: Path) -> None:
    done = kninfer("render", str(EXAMPLE.relative_to(ROOT)), "-o", str(tmp_path), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for relative in (
        "kserve/iris-events-istio.yaml",
        "knative/iris-events-istio.yaml",
        "knative/iris-events-istio-eventing.yaml",
    ):
        assert (tmp_path / relative).read_text() == (ROOT / relative).read_text(), relative
    kserve = [
        d for d in yaml.safe_load_all((ROOT / "kserve" / "iris-events-istio.yaml").read_text())
    ]
    assert [d["kind"] for d in kserve] == [
        "InferenceService",
        "AuthorizationPolicy",
        "AuthorizationPolicy",
    ]
    predictor, transformer = kserve[1:]
    assert callers(predictor) == (["cluster.local/ns/kninfer/sa/default"], [])
    assert callers(transformer) == (["cluster.local/ns/shop/sa/checkout", BROKER_FILTER], [])
    # The Broker's Trigger delivers to the Knative Service the transformer policy guards.
    events = list(
        yaml.safe_load_all((ROOT / "knative" / "iris-events-istio-eventing.yaml").read_text())
    )
    (requests,) = [d for d in events if d["metadata"]["name"] == "iris-events-istio-requests"]
    assert requests["spec"]["subscriber"]["ref"]["name"] == "iris-events-istio-transformer"
    knative = [
        d for d in yaml.safe_load_all((ROOT / "knative" / "iris-events-istio.yaml").read_text())
    ]
    assert [selector(d) for d in knative if d["kind"] == "AuthorizationPolicy"] == [
        {"serving.knative.dev/service": "iris-events-istio-predictor"},
        {"serving.knative.dev/service": "iris-events-istio-transformer"},
    ]
