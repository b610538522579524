"""`kninfer experiment weights`: move the traffic split of an A/B experiment.

`kninfer render` writes an `experiment` as one InferenceService per variant and a KServe
InferenceGraph whose `root` node is a `Splitter`, one step per variant (`name`: the variant,
`serviceName`: its InferenceService, `weight`). KServe's router draws a number in [0, 100) per
request and walks the cumulative weights (kserve cmd/router/main.go), so a weight is a percent of
requests. KServe's webhook refuses a Splitter whose steps lack a weight or whose weights do not sum
to 100 (pkg/apis/serving/v1alpha1/inference_graph_validation.go); this command refuses them too,
and a variant the graph does not have, before anything is sent.

The change is a JSON Patch (RFC 6902) for `kubectl patch --type json`: per step, a `test` that the
step at that index still targets the same InferenceService, then an `add` of its weight (which
replaces a weight that is there, RFC 6902 section 4.1). A graph
edited between our read and the API server applying the patch makes the whole patch fail (RFC 6902
section 5: a failed `test` aborts it) rather than move the wrong branch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kninfer.deploy.canary import CanaryError, Patch

Doc = dict[str, Any]
RESOURCE = "inferencegraph"  # kubectl accepts the singular name and the `ig` short name
KIND = "InferenceGraph"
ROOT = "root"  # KServe's entry node (v1alpha1 GraphRootNodeName)


class ExperimentError(CanaryError):
    """An experiment operation that cannot proceed; the message says why."""


def parse_weights(pairs: Sequence[str]) -> dict[str, int]:
    """`VARIANT=WEIGHT` arguments -> {variant: weight}, each weight a whole percent."""
    weights: dict[str, int] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ExperimentError(f"{pair!r} is not VARIANT=WEIGHT (e.g. a=70)")
        if not value.isdigit() or int(value) > 100:
            raise ExperimentError(f"{pair!r}: a weight is a whole percent within 0..100")
        if name in weights:
            raise ExperimentError(f"variant {name!r} is given twice")
        weights[name] = int(value)
    return weights


def splitter_steps(graph: Doc) -> list[Doc]:
    """The steps of the graph's root Splitter node."""
    name = (graph.get("metadata") or {}).get("name", "?")
    root = ((graph.get("spec") or {}).get("nodes") or {}).get(ROOT)
    if not isinstance(root, dict):
        raise ExperimentError(f"InferenceGraph {name} has no {ROOT!r} node")
    if root.get("routerType") != "Splitter":
        raise ExperimentError(
            f"InferenceGraph {name}: the {ROOT!r} node is a "
            f"{root.get('routerType')}, not a Splitter"
        )
    steps = [step for step in root.get("steps") or [] if isinstance(step, dict)]
    if not steps:
        raise ExperimentError(f"InferenceGraph {name}: the {ROOT!r} node has no steps")
    return steps


def variant_of(step: Doc) -> str:
    """A step's variant: its `name` (as rendered), else the InferenceService it targets."""
    return str(step.get("name") or step.get("serviceName") or step.get("serviceUrl") or "")


def weights_patch(graph: Doc, weights: dict[str, int]) -> Patch:
    """JSON Patch that sets every variant's weight; each variant must be named, the total 100."""
    steps = splitter_steps(graph)
    known = [variant_of(step) for step in steps]
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise ExperimentError(
            f"unknown variant(s) {', '.join(unknown)}; the graph's variants: {', '.join(known)}"
        )
    missing = [name for name in known if name not in weights]
    if missing:
        raise ExperimentError(f"give every variant a weight; missing: {', '.join(missing)}")
    total = sum(weights.values())
    if total != 100:
        given = ", ".join(f"{name}={weights[name]}" for name in known)
        raise ExperimentError(f"weights must sum to 100, got {total} ({given})")
    ops: list[Doc] = []
    for i, step in enumerate(steps):
        path = f"/spec/nodes/{ROOT}/steps/{i}"
        target = "serviceName" if step.get("serviceName") else "serviceUrl"
        ops.append({"op": "test", "path": f"{path}/{target}", "value": step.get(target)})
        ops.append({"op": "add", "path": f"{path}/weight", "value": weights[variant_of(step)]})
    return Patch("json", ops)


def weights_report(graph: Doc) -> str:
    """The split as a table: VARIANT, SERVICE, WEIGHT."""
    rows = [("VARIANT", "SERVICE", "WEIGHT")] + [
        (
            variant_of(step),
            str(step.get("serviceName") or step.get("serviceUrl") or "-"),
            f"{int(step.get('weight') or 0)}%",
        )
        for step in splitter_steps(graph)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in rows
    )
