"""`kninfer render` for a config with `monitoring`: what lets Prometheus and Grafana watch its
services (docs/monitoring.md, "Alerting"). Written to monitoring/<name>.yaml:

- a PodMonitor (Prometheus Operator, monitoring.coreos.com/v1) scraping `/metrics` on each of
  the config's pods, selected by the `serving.knative.dev/service` label Knative puts on every
  pod of a Knative Service, which KServe's Services carry too. Relabelling adds `revision` and
  `service` from the pod's Knative labels and `kninfer_config` (the config's name), which the
  rules and the dashboard select on; the Operator adds `namespace` and `pod`;
- a PrometheusRule: a recording rule for PSI over the last hour from the bin counters (every
  replica's counts, so a feature's drift survives scale to zero), and alerts on drift (the
  live PSI gauge), on the error ratio and on categories training never saw;
- with `dashboard` (the default), a ConfigMap holding the Grafana dashboard
  (kninfer/deploy/dashboards/kninfer.json, checked in), labelled for the Grafana Helm chart's
  dashboard sidecar (`grafana_dashboard: "1"`).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from kninfer.deploy.config import DeployConfig, Monitoring
from kninfer.deploy.k8s_names import recommended_labels

Doc = dict[str, Any]

PROMETHEUS_OPERATOR = "monitoring.coreos.com/v1"
KNATIVE_SERVICE_LABEL = "serving.knative.dev/service"
CONFIG_LABEL = "kninfer_config"  # added to every series scraped from the config's pods
DASHBOARD_FILE = "kninfer.json"
# The span drift alerts look over: the PSI gauge's average, the unknown categories' rate.
DRIFT_SMOOTHING = "5m"
DASHBOARD_CONFIGMAP = "kninfer-dashboard"  # one per namespace: the same dashboard for all
# The Grafana Helm chart's sidecar loads ConfigMaps with this label (its default `label`).
GRAFANA_SIDECAR_LABEL = "grafana_dashboard"


def dashboard() -> Doc:
    """The checked-in Grafana dashboard: traffic, errors, latency and drift per model, version
    and revision, with namespace, config, model and version as variables."""
    text = resources.files("kninfer.deploy").joinpath("dashboards", DASHBOARD_FILE).read_text()
    doc: Doc = json.loads(text)
    return doc


def psi_from_counters(selector: str, window: str) -> str:
    """PSI per feature over WINDOW from the bin counters and the reference shares, empty shares
    taken as 0.0001 as the server does (kninfer.observability.drift.monitor)."""
    by = "namespace, model, version, feature"
    live = (
        f"(sum by ({by}, bin) (increase(kninfer_drift_bin_total{{{selector}}}[{window}]))"
        f" / on ({by}) group_left sum by ({by}) "
        f"(increase(kninfer_drift_bin_total{{{selector}}}[{window}])))"
    )
    reference = f"max by ({by}, bin) (kninfer_drift_reference_ratio{{{selector}}})"
    live_share = f"clamp_min({live}, 0.0001)"
    reference_share = f"clamp_min({reference}, 0.0001)"
    return (
        f"sum by ({by}) (({live_share} - on ({by}, bin) {reference_share}) "
        f"* ln({live_share} / on ({by}, bin) {reference_share}))"
    )


def _services(config: DeployConfig) -> list[str]:
    """The Knative Services whose pods serve the config: each served model's predictor and,
    with a transformer, its transformer."""
    if config.experiment is not None:
        served = [c for _, c in config.variant_configs()]
    else:
        shadow = config.shadow_config()
        served = [config] + ([] if shadow is None else [shadow])
    names = []
    for c in served:
        names.append(f"{c.name}-predictor")
        if c.transformer is not None:
            names.append(f"{c.name}-transformer")
    return names


def _meta(config: DeployConfig, name: str, monitoring: Monitoring) -> Doc:
    labels = {**recommended_labels(config.name, "monitoring"), **monitoring.labels}
    return {"name": name, "namespace": config.namespace, "labels": labels}


def pod_monitor(config: DeployConfig, monitoring: Monitoring, port: int) -> Doc:
    return {
        "apiVersion": PROMETHEUS_OPERATOR,
        "kind": "PodMonitor",
        "metadata": _meta(config, f"{config.name}-kninfer", monitoring),
        "spec": {
            "selector": {
                "matchExpressions": [
                    {"key": KNATIVE_SERVICE_LABEL, "operator": "In", "values": _services(config)}
                ]
            },
            "podMetricsEndpoints": [
                {
                    # The container's own port, not the queue-proxy's: /metrics is kninfer's.
                    "portNumber": port,
                    "path": "/metrics",
                    "relabelings": [
                        {
                            "sourceLabels": [
                                "__meta_kubernetes_pod_label_serving_knative_dev_revision"
                            ],
                            "targetLabel": "revision",
                        },
                        {
                            "sourceLabels": [
                                "__meta_kubernetes_pod_label_serving_knative_dev_service"
                            ],
                            "targetLabel": "service",
                        },
                        {"targetLabel": CONFIG_LABEL, "replacement": config.name},
                    ],
                }
            ],
        },
    }


def prometheus_rule(config: DeployConfig, monitoring: Monitoring) -> Doc:
    selector = f'namespace="{config.namespace}", {CONFIG_LABEL}="{config.name}"'
    by = "namespace, model, version"
    errors = (
        f"sum by ({by}) (rate(kninfer_request_errors_total{{{selector}}}[5m])) / "
        f"sum by ({by}) (rate(kninfer_requests_total{{{selector}}}[5m]))"
    )
    return {
        "apiVersion": PROMETHEUS_OPERATOR,
        "kind": "PrometheusRule",
        "metadata": _meta(config, f"{config.name}-kninfer", monitoring),
        "spec": {
            "groups": [
                {
                    "name": f"kninfer-{config.name}",
                    "rules": [
                        {
                            "record": "kninfer:drift_psi_1h",
                            "expr": psi_from_counters(selector, "1h"),
                            "labels": {CONFIG_LABEL: config.name},
                        },
                        # The window's PSI averaged over DRIFT_SMOOTHING: a drift near the
                        # threshold wobbles across it from one window to the next (binomial
                        # noise on the bins' counts), and a single evaluation below it would
                        # restart `for` (bench/dashboard.py's run of the docs' drifted traffic
                        # showed the raw gauge do so).
                        {
                            "alert": "KninferFeatureDrift",
                            "expr": (
                                f"max by ({by}, feature) (avg_over_time("
                                f"kninfer_drift_psi{{{selector}}}[{DRIFT_SMOOTHING}])) > "
                                f"{monitoring.drift_psi:g}"
                            ),
                            "for": monitoring.drift_for,
                            "labels": {"severity": "warning"},
                            "annotations": {
                                "summary": (
                                    "{{ $labels.model }} {{ $labels.version }}: "
                                    "{{ $labels.feature }} drifted (PSI {{ $value }})"
                                ),
                                "description": (
                                    "The served values of a feature no longer look like the "
                                    "training data (docs/monitoring.md)."
                                ),
                            },
                        },
                        {
                            "alert": "KninferErrors",
                            "expr": f"{errors} > {monitoring.error_ratio:g}",
                            "for": monitoring.errors_for,
                            "labels": {"severity": "warning"},
                            "annotations": {
                                "summary": "{{ $labels.model }} {{ $labels.version }}: "
                                "{{ $value | humanizePercentage }} of requests failed"
                            },
                        },
                        {
                            "alert": "KninferUnknownCategories",
                            "expr": f"sum by ({by}, feature) "
                            f"(rate(kninfer_drift_unknown_category_total{{{selector}}}"
                            f"[{DRIFT_SMOOTHING}])) > 0",
                            "for": monitoring.drift_for,
                            "labels": {"severity": "info"},
                            "annotations": {
                                "summary": "{{ $labels.model }} {{ $labels.version }}: "
                                "{{ $labels.feature }} receives categories training never "
                                "saw"
                            },
                        },
                    ],
                }
            ]
        },
    }


def dashboard_configmap(config: DeployConfig, monitoring: Monitoring) -> Doc:
    meta = _meta(config, DASHBOARD_CONFIGMAP, monitoring)
    meta["labels"][GRAFANA_SIDECAR_LABEL] = "1"
    meta["labels"]["app.kubernetes.io/name"] = "kninfer"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {DASHBOARD_FILE: json.dumps(dashboard(), indent=2) + "\n"},
    }


def monitoring_documents(config: DeployConfig, port: int) -> list[Doc]:
    monitoring = config.monitoring
    if monitoring is None:
        return []
    docs = [pod_monitor(config, monitoring, port), prometheus_rule(config, monitoring)]
    if monitoring.dashboard:
        docs.append(dashboard_configmap(config, monitoring))
    return docs
