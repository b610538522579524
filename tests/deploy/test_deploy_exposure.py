"""Private by default: every rendered or checked-in service is cluster-local unless its config says
`exposure: public`, and then only the config's entry point is public; an event-driven service
can never be public; `kninfer render` says where each service can be reached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kninfer.deploy.config import DeployConfig, load_config
from kninfer.deploy.render import exposures, knative_documents, kserve_documents, render
from tests.support.paths import ROOT

EXAMPLES = sorted((ROOT / "deploy" / "examples").glob("*.yaml"))
KNATIVE_LABEL = "networking.knative.dev/visibility"
KSERVE_LABEL = "networking.kserve.io/visibility"
SERVICE_KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"),
    ("serving.kserve.io/v1alpha1", "InferenceGraph"),
    ("serving.knative.dev/v1", "Service"),
}


def config(**values: object) -> DeployConfig:
    return DeployConfig.model_validate({"name": "iris", "namespace": "ml", **values})


def services(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Name -> document for every document a caller can reach (KServe or Knative services)."""
    return {
        d["metadata"]["name"]: d
        for d in docs
        if (d.get("apiVersion"), d.get("kind")) in SERVICE_KINDS
    }


def public(doc: dict[str, Any]) -> bool:
    """Public unless it carries the label its controller reads (and, on a KServe kind, KServe's
    own label too): read from the document, not from kninfer's helpers."""
    labels = doc["metadata"].get("labels") or {}
    if doc["kind"] == "Service":
        return labels.get(KNATIVE_LABEL) != "cluster-local"
    return not (
        labels.get(KNATIVE_LABEL) == "cluster-local" and labels.get(KSERVE_LABEL) == "cluster-local"
    )


def entry_points(cfg: DeployConfig) -> set[str]:
    """What a `public` config may publish: the graph of an experiment, else the InferenceService
    and the Knative Service that take requests first (the transformer when there is one)."""
    if cfg.experiment is not None:
        return {cfg.name}
    return {cfg.name, f"{cfg.name}-{'transformer' if cfg.transformer else 'predictor'}"}


def rendered(cfg: DeployConfig) -> list[dict[str, Any]]:
    """Every document of every file `kninfer render` writes for the config."""
    return [
        d
        for text in render(cfg, "x.yaml").values()
        for d in yaml.safe_load_all(text)
        if d is not None
    ]


def check_exposure(cfg: DeployConfig, docs: list[dict[str, Any]], where: str) -> None:
    allowed = entry_points(cfg) if cfg.exposure == "public" else set()
    found = services(docs)
    assert found, where
    for name, doc in found.items():
        assert public(doc) == (name in allowed), (
            f"{where}: {doc['kind']} {name} is {'public' if public(doc) else 'cluster-local'}; "
            f"the config says exposure: {cfg.exposure}"
        )


# --- the checked-in examples ---------------------------------------------------------------------


def test_no_checked_in_or_rendered_manifest_is_public_unless_its_config_says_so() -> None:
    """Every example's fresh render and every checked-in file under kserve/ and knative/."""
    by_name = {load_config(p).name: load_config(p) for p in EXAMPLES}
    for cfg in by_name.values():
        check_exposure(cfg, rendered(cfg), f"render of {cfg.name}")
    checked_in = sorted(ROOT.glob("kserve/*.yaml")) + sorted(ROOT.glob("knative/*.yaml"))
    assert len(checked_in) == 24
    for path in checked_in:
        cfg = by_name[path.stem.removesuffix("-eventing")]
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        check_exposure(cfg, docs, path.relative_to(ROOT).as_posix())


# --- every shape of config ------------------------------------------------------------------------

SHAPES: dict[str, dict[str, object]] = {
    "plain": {},
    "transformer": {"transformer": {"name": "iris"}},
    "grpc": {
        "serving_protocol": "grpc",
        "storage_uri": "gs://b/iris",
        "transformer": {"name": "iris"},
    },
    "runtime": {"kserve": "runtime", "storage_uri": "gs://b/iris"},
    "gpu": {"predictor": "pytorch", "storage_uri": "gs://b/net", "accelerator": "gpu"},
    "experiment": {
        "experiment": {
            "variants": [
                {"name": "a", "weight": 50},
                {"name": "b", "weight": 50, "storage_uri": "gs://b/v2"},
            ]
        }
    },
    "experiment-runtime": {
        "kserve": "runtime",
        "experiment": {
            "variants": [
                {"name": "a", "weight": 90, "storage_uri": "gs://b/v1"},
                {"name": "b", "weight": 10, "storage_uri": "gs://b/v2"},
            ]
        },
    },
}
EVENT_SHAPES: dict[str, dict[str, object]] = {
    "eventing": {"eventing": True},
    "eventing-transformer": {"eventing": True, "transformer": {"name": "iris"}},
    "shadow": {"eventing": True, "shadow": {"storage_uri": "gs://b/v2"}},
    "shadow-runtime": {
        "eventing": True,
        "kserve": "runtime",
        "storage_uri": "gs://b/v1",
        "shadow": {"storage_uri": "gs://b/v2"},
    },
    "shadow-transformer": {
        "eventing": True,
        "transformer": {"name": "iris"},
        "shadow": {"storage_uri": "gs://b/v2"},
    },
}


@pytest.mark.parametrize("shape", sorted(SHAPES) + sorted(EVENT_SHAPES))
def test_every_service_is_cluster_local_by_default(shape: str) -> None:
    cfg = config(**{**SHAPES, **EVENT_SHAPES}[shape])
    assert cfg.exposure == "cluster-local"
    docs = rendered(cfg)
    check_exposure(cfg, docs, shape)
    assert not any(public(d) for d in services(docs).values())


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_public_publishes_the_entry_point_only(shape: str) -> None:
    cfg = config(exposure="public", **SHAPES[shape])
    docs = rendered(cfg)
    check_exposure(cfg, docs, shape)
    assert any(public(d) for d in services(docs).values())


def test_labels_sit_where_knative_and_kserve_read_them() -> None:
    cfg = config(transformer={"name": "iris"})
    isvc = kserve_documents(cfg)[0]
    assert isvc["metadata"]["labels"][KNATIVE_LABEL] == "cluster-local"
    assert isvc["metadata"]["labels"][KSERVE_LABEL] == "cluster-local"
    for service in knative_documents(cfg):
        assert service["metadata"]["labels"][KNATIVE_LABEL] == "cluster-local"
        # Not on the revision template: KServe strips it there (kserve pkg/constants
        # RevisionTemplateLabelDisallowedList).
        assert KNATIVE_LABEL not in service["spec"]["template"]["metadata"]["labels"]
    # `public`: no visibility label anywhere on the entry, the predictor behind it stays private.
    open_cfg = config(transformer={"name": "iris"}, exposure="public")
    labels = kserve_documents(open_cfg)[0]["metadata"]["labels"]
    assert KNATIVE_LABEL not in labels and KSERVE_LABEL not in labels
    predictor, transformer = knative_documents(open_cfg)
    assert predictor["metadata"]["labels"][KNATIVE_LABEL] == "cluster-local"
    assert KNATIVE_LABEL not in transformer["metadata"]["labels"]


def test_an_event_driven_service_can_never_be_public(tmp_path: Path) -> None:
    path = tmp_path / "events.yaml"
    path.write_text("name: iris-events\neventing: true\nexposure: public\n")
    result = subprocess.run(
        [sys.executable, "-m", "kninfer", "render", str(path), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"{path}: (top level): exposure: public is refused for an event-driven service: its only "
        "caller is the Broker, which reaches it inside the cluster; to serve HTTP callers outside "
        "the cluster too, deploy the model again from a second config without eventing\n"
    )
    assert not (tmp_path / "out").exists()
    # Eventing switched off is no longer event-driven: public is fine.
    assert config(eventing={"enabled": False}, exposure="public").exposure == "public"
    with pytest.raises(ValueError, match="exposure"):
        config(exposure="internal")


def test_render_prints_each_services_exposure(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kninfer",
            "render",
            "deploy/examples/iris-events.yaml",
            "-o",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    written = [
        str(tmp_path / f)
        for f in (
            "knative/iris-events-eventing.yaml",
            "knative/iris-events.yaml",
            "kserve/iris-events.yaml",
        )
    ]
    assert result.stdout.splitlines() == written + [
        f"{name}: cluster-local (http://{name}.kninfer.svc.cluster.local)"
        for name in (
            "iris-events",
            "iris-events-predictor",
            "iris-events-dead-letter",
            "iris-events-results",
        )
    ]


def test_exposure_lines_follow_the_rendered_labels() -> None:
    cfg = config(exposure="public", transformer={"name": "iris"})
    assert exposures(cfg) == [
        "iris: public (outside the cluster through the ingress domain; inside it "
        "http://iris.ml.svc.cluster.local)",
        "iris-predictor: cluster-local (http://iris-predictor.ml.svc.cluster.local)",
        "iris-transformer: public (outside the cluster through the ingress domain; inside it "
        "http://iris-transformer.ml.svc.cluster.local)",
    ]
    assert exposures(cfg, ("knative",)) == exposures(cfg)[1:]
    files = render(cfg, "x.yaml")
    assert "networking.knative.dev/visibility: cluster-local" in files["knative/iris.yaml"]
    assert "visibility" not in files["kserve/iris.yaml"]
