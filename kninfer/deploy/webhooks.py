"""Admission-webhook rules KServe and Knative enforce beyond the CRD schema.

Two sorts:

- subtrees a webhook decodes strictly although the CRD leaves them open: the Knative Eventing
  webhook decodes Trigger/Broker specs with DisallowUnknownFields (knative/eventing
  cmd/webhook/main.go), so those are closed to their Go type fields (`EVENTING_OVERLAYS`, applied
  by `kninfer.deploy.strict.root_schema`);
- rules no schema expresses (`webhook_rules`). KServe: one predictor implementation, the
  InferenceService name pattern, canary 0..100, min <= max replicas; an InferenceGraph's name,
  its `root` node, unique step names, one target per step, Splitter weights that are all given
  and sum to 100 (kserve pkg/apis/serving/v1alpha1/inference_graph_validation.go). Knative:
  reserved env names and ports (knative/serving pkg/apis/serving/k8s_validation.go), broker and
  subscriber on a Trigger.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from kninfer.deploy.k8s_names import DNS1035_LABEL, KNATIVE_RESERVED_ENV, KNATIVE_RESERVED_PORTS

# Go type field names for the Knative Eventing subtrees the CRD leaves open
# (knative/eventing pkg/apis/eventing/v1/trigger_types.go, pkg/apis/duck/v1/delivery_types.go).
DELIVERY_FIELDS = (
    "deadLetterSink",
    "retry",
    "timeout",
    "backoffPolicy",
    "backoffDelay",
    "retryAfterMax",
    "format",
)
TRIGGER_SPEC_FIELDS = ("broker", "brokerRef", "filter", "filters", "subscriber", "delivery")
EVENTING_OVERLAYS: dict[tuple[str, str], list[tuple[tuple[str, ...], tuple[str, ...]]]] = {
    ("eventing.knative.dev", "Trigger"): [
        (("spec",), TRIGGER_SPEC_FIELDS),
        (("spec", "delivery"), DELIVERY_FIELDS),
    ],
    ("eventing.knative.dev", "Broker"): [(("spec", "delivery"), DELIVERY_FIELDS)],
}

ISVC_NAME = DNS1035_LABEL
ISVC_IMPLEMENTATIONS = (
    "model",
    "containers",
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
)


GRAPH_TARGETS = ("nodeName", "serviceName", "serviceUrl")


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _graph_rules(name: Any, spec: dict[str, Any]) -> Iterator[tuple[list[str | int], str, str]]:
    """KServe's InferenceGraph webhook (pkg/apis/serving/v1alpha1/inference_graph_validation.go:
    GraphNameFmt, RootNodeNotFoundError, DuplicateStepNameError, TargetNotProvidedError,
    InvalidTargetError, WeightNotProvidedError, InvalidWeightError)."""
    if isinstance(name, str) and not re.match(ISVC_NAME, name):
        yield (
            ["metadata", "name"],
            "kserve-webhook",
            f"InferenceGraph name {name!r} must match {ISVC_NAME}",
        )
    nodes = _obj(spec.get("nodes"))
    if "root" not in nodes:
        yield (
            ["spec", "nodes"],
            "kserve-webhook",
            "an InferenceGraph needs a node named 'root' (its entry point)",
        )
    for node_name, node in nodes.items():
        node = _obj(node)
        steps = [_obj(step) for step in node.get("steps") or []]
        base: list[str | int] = ["spec", "nodes", node_name, "steps"]
        seen: set[str] = set()
        for i, step in enumerate(steps):
            step_name = step.get("name")
            if step_name and step_name in seen:
                yield (
                    [*base, i, "name"],
                    "kserve-webhook",
                    f"node {node_name!r} has more than one step named {step_name!r}",
                )
            if step_name:
                seen.add(step_name)
            targets = [t for t in GRAPH_TARGETS if step.get(t)]
            if len(targets) != 1:
                yield (
                    [*base, i],
                    "kserve-webhook",
                    f"a step names exactly one of {', '.join(GRAPH_TARGETS)}; found "
                    f"{len(targets)}: {', '.join(targets) or 'none'}",
                )
        if node.get("routerType") != "Splitter":
            continue
        missing = [i for i, step in enumerate(steps) if step.get("weight") is None]
        for i in missing:
            yield (
                [*base, i, "weight"],
                "kserve-webhook",
                "every step of a Splitter node needs a weight",
            )
        total = sum(step["weight"] for step in steps if isinstance(step.get("weight"), int))
        if not missing and total != 100:
            yield (
                base,
                "kserve-webhook",
                f"the weights of a Splitter node must sum to 100, got {total}",
            )


def webhook_rules(doc: dict[str, Any]) -> Iterator[tuple[list[str | int], str, str]]:
    """(path, rule, message) for admission-webhook rules that no schema states."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    spec = _obj(doc.get("spec"))
    name = _obj(doc.get("metadata")).get("name")
    if api_version.startswith("serving.kserve.io/") and kind == "InferenceService":
        if isinstance(name, str) and not re.match(ISVC_NAME, name):
            yield (
                ["metadata", "name"],
                "kserve-webhook",
                f"InferenceService name {name!r} must match {ISVC_NAME}",
            )
        for component in ("predictor", "transformer", "explainer"):
            part = spec.get(component)
            if not isinstance(part, dict):
                continue
            impls = [k for k in ISVC_IMPLEMENTATIONS if part.get(k)]
            if component == "predictor" and len(impls) != 1:
                yield (
                    ["spec", component],
                    "kserve-webhook",
                    "exactly one predictor implementation must be set (model, containers or a "
                    f"framework); found {len(impls)}: {', '.join(impls) or 'none'}",
                )
            low, high = part.get("minReplicas"), part.get("maxReplicas")
            if isinstance(low, int) and isinstance(high, int) and high and low > high:
                yield (
                    ["spec", component, "minReplicas"],
                    "kserve-webhook",
                    f"minReplicas ({low}) must not exceed maxReplicas ({high})",
                )
            canary = part.get("canaryTrafficPercent")
            if isinstance(canary, int) and not 0 <= canary <= 100:
                # KServe does not range-check it; Knative rejects the generated traffic later.
                yield (
                    ["spec", component, "canaryTrafficPercent"],
                    "knative-traffic",
                    f"canaryTrafficPercent must be within 0..100, got {canary}",
                )
    if api_version.startswith("serving.kserve.io/") and kind == "InferenceGraph":
        yield from _graph_rules(name, spec)
    if api_version.startswith("serving.knative.dev/") and kind in ("Service", "Configuration"):
        pod = _obj(_obj(spec.get("template")).get("spec"))
        for i, container in enumerate(pod.get("containers") or []):
            if not isinstance(container, dict):
                continue
            base: list[str | int] = ["spec", "template", "spec", "containers", i]
            for j, env in enumerate(container.get("env") or []):
                if isinstance(env, dict) and env.get("name") in KNATIVE_RESERVED_ENV:
                    yield (
                        [*base, "env", j, "name"],
                        "knative-runtime-contract",
                        f"env {env['name']} is reserved by Knative",
                    )
            for j, port in enumerate(container.get("ports") or []):
                if isinstance(port, dict) and port.get("containerPort") in KNATIVE_RESERVED_PORTS:
                    yield (
                        [*base, "ports", j, "containerPort"],
                        "knative-runtime-contract",
                        f"port {port['containerPort']} is reserved by Knative",
                    )
    if api_version.startswith("eventing.knative.dev/") and kind == "Trigger":
        if bool(spec.get("broker")) == bool(spec.get("brokerRef")):
            yield (["spec"], "eventing-webhook", "a Trigger needs exactly one of broker, brokerRef")
        if not spec.get("subscriber"):
            yield (["spec", "subscriber"], "eventing-webhook", "a Trigger needs a subscriber")
