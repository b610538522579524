"""`monitoring` in a deploy config: the PodMonitor, PrometheusRule and dashboard `kninfer render`
writes (kninfer.deploy.monitoring) validate against the vendored Prometheus Operator CRDs, their
PromQL parses (promql-parser, the Rust PromQL parser's Python binding), and every metric they
read is one a kninfer server exports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from kninfer.deploy.config import DeployConfig
from kninfer.deploy.monitoring import CONFIG_LABEL, dashboard, monitoring_documents
from kninfer.deploy.render import PORT, render
from tests.support.paths import ROOT

RECORDED = {"kninfer:drift_psi_1h"}  # the rendered rule's own recording


def exported_metrics() -> set[str]:
    """Every series name kninfer's collectors can expose: the request metrics, the drift
    metrics, and the suffixes Prometheus' exposition adds to counters and histograms."""
    from prometheus_client import REGISTRY

    from kninfer.observability.drift.monitor import drift_metrics
    from kninfer.observability.prometheus import ensure_registered

    ensure_registered()
    drift_metrics()
    names = set()
    for metric in REGISTRY.collect():
        names |= {
            metric.name,
            *(
                f"{metric.name}{suffix}"
                for suffix in ("_total", "_bucket", "_sum", "_count", "_created")
            ),
        }
    return {n for n in names if n.startswith("kninfer_")}


def metrics_read(expr: str) -> set[str]:
    """The metric names an expression reads, after Grafana's variables are given values."""
    expr = expr.replace("$__rate_interval", "5m")
    expr = re.sub(r"\$\{?(\w+)\}?", ".*", expr)
    promql_parser.parse(expr)  # raises on a syntax error
    # A name followed by a matcher is a label (kninfer_config="iris"), not a metric.
    return set(re.findall(r"\b(kninfer[:_][\w:]*)\b(?!\s*(?:=|!=|=~|!~))", expr))


def config(**fields: Any) -> DeployConfig:
    return DeployConfig.model_validate({"name": "iris", "namespace": "models", **fields})


def test_rendered_monitoring_validates_against_the_crds(tmp_path: Path) -> None:
    (tmp_path / "iris.yaml").write_text(
        yaml.safe_dump(
            {"name": "iris", "namespace": "models", "monitoring": {"labels": {"release": "prom"}}}
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "kninfer", "render", "iris.yaml", "-o", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    kinds = [
        d["kind"]
        for d in yaml.safe_load_all((tmp_path / "out" / "monitoring" / "iris.yaml").read_text())
    ]
    assert kinds == ["PodMonitor", "PrometheusRule", "ConfigMap"]
    checked = subprocess.run(
        [sys.executable, "-m", "kninfer", "validate", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_misspelt_rule_field_is_caught(tmp_path: Path) -> None:
    """The validation above is real: the vendored PrometheusRule schema rejects a stray field."""
    docs = monitoring_documents(config(monitoring=True), PORT)
    docs[1]["spec"]["groups"][0]["rules"][1]["fore"] = "15m"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump_all(docs))
    checked = subprocess.run(
        [sys.executable, "-m", "kninfer", "validate", "bad.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 1
    assert 'unknown field "fore"' in checked.stdout + checked.stderr


def test_rules_parse_and_read_only_exported_metrics() -> None:
    exported = exported_metrics()
    assert {"kninfer_requests_total", "kninfer_drift_psi", "kninfer_drift_bin_total"} <= exported
    rule = monitoring_documents(config(monitoring=True), PORT)[1]
    rules = rule["spec"]["groups"][0]["rules"]
    assert [r.get("alert") or r.get("record") for r in rules] == [
        "kninfer:drift_psi_1h",
        "KninferFeatureDrift",
        "KninferErrors",
        "KninferUnknownCategories",
    ]
    for r in rules:
        read = metrics_read(r["expr"])
        assert read and read <= exported, (r, read - exported)
        assert f'{CONFIG_LABEL}="iris"' in r["expr"] and 'namespace="models"' in r["expr"]


def test_thresholds_come_from_the_config() -> None:
    rule = monitoring_documents(
        config(monitoring={"drift_psi": 0.1, "drift_for": "1h30m", "error_ratio": 0.01}), PORT
    )[1]
    drift, errors = rule["spec"]["groups"][0]["rules"][1:3]
    assert drift["expr"].endswith("> 0.1") and drift["for"] == "1h30m"
    assert errors["expr"].endswith("> 0.01")
    with pytest.raises(ValueError, match="drift_for"):
        config(monitoring={"drift_for": "15 minutes"})


def test_the_pod_monitor_selects_every_served_service() -> None:
    """Each model a config serves (experiment variants, a shadow) and its transformer."""
    plain = monitoring_documents(config(monitoring=True), PORT)[0]
    variants = [{"name": "a", "weight": 80}, {"name": "b", "weight": 20}]
    ab = monitoring_documents(
        config(monitoring=True, transformer={"name": "iris"}, experiment={"variants": variants}),
        PORT,
    )[0]

    def selected(doc: dict[str, Any]) -> list[str]:
        (expression,) = doc["spec"]["selector"]["matchExpressions"]
        assert expression["key"] == "serving.knative.dev/service"
        return list(expression["values"])

    assert selected(plain) == ["iris-predictor"]
    assert selected(ab) == [
        "iris-a-predictor",
        "iris-a-transformer",
        "iris-b-predictor",
        "iris-b-transformer",
    ]
    endpoint = plain["spec"]["podMetricsEndpoints"][0]
    assert endpoint["portNumber"] == PORT and endpoint["path"] == "/metrics"


def test_no_monitoring_renders_none() -> None:
    assert not any(p.startswith("monitoring/") for p in render(config(), "iris.yaml"))
    assert not any(
        p.startswith("monitoring/") for p in render(config(monitoring=False), "iris.yaml")
    )
    off = render(config(monitoring={"dashboard": False}), "iris.yaml")["monitoring/iris.yaml"]
    assert "kind: ConfigMap" not in off


def test_the_dashboard_is_a_grafana_dashboard_over_exported_metrics() -> None:
    """The checked-in dashboard: Grafana's required fields, unique panel ids, every panel on the
    data-source variable, every query (panels and variables) parsing and reading only what
    kninfer exports or the rule records."""
    board = dashboard()
    assert board["uid"] == "kninfer" and board["schemaVersion"] >= 36
    assert {"title", "panels", "templating", "time"} <= set(board)
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    readable = exported_metrics() | RECORDED
    queries = [t["expr"] for p in panels if p["type"] != "row" for t in p["targets"]]
    queries += [
        v["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0]
        for v in board["templating"]["list"]
        if v["type"] == "query"
    ]
    assert len(queries) >= 10
    for expr in queries:
        read = metrics_read(expr)
        assert read and read <= readable, (expr, read - readable)
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_the_configmap_carries_the_checked_in_dashboard() -> None:
    configmap = monitoring_documents(config(monitoring=True), PORT)[2]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["kninfer.json"]) == json.loads(
        (ROOT / "kninfer" / "deploy" / "dashboards" / "kninfer.json").read_text()
    )
