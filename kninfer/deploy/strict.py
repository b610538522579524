"""An openAPIV3Schema made strict, the way the API server and `kubectl apply --validate=strict`
(the kubectl default since 1.32) apply it.

A plain JSON-Schema validator on a CRD's `openAPIV3Schema` is laxer than the API server
(Kubernetes' CRD docs: structural schemas, field pruning, defaulting and nullable). `strict` and
`root_schema` make the server's implicit rules explicit:

- unknown fields are errors: every object schema with `properties` is closed unless it carries
  `x-kubernetes-preserve-unknown-fields` or declares `additionalProperties` (a map);
- `apiVersion`, `kind`, `metadata` are implied at the root (Knative Eventing CRDs declare only
  spec/status); `metadata` is checked as ObjectMeta: names, and label/annotation values must be
  strings (annotations are map[string]string, so `min-scale: 0` is an error);
- `x-kubernetes-int-or-string` without `anyOf` means integer or string;
- `nullable: true` admits null (nulls elsewhere are dropped first: kninfer.deploy.defaulting);
- `x-kubernetes-list-type: map` keys and `set` items must be unique (`validator_class`);
- the subtrees the Knative Eventing webhook decodes strictly are closed to their Go type fields
  even where the CRD preserves unknown fields (kninfer.deploy.webhooks.EVENTING_OVERLAYS).

Core kinds (ConfigMap, Service, Deployment, ...) have no CRD; `core_schema` checks them by field
name.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from kninfer.deploy.k8s_names import DNS1123_LABEL, DNS1123_SUBDOMAIN, LABEL_VALUE
from kninfer.deploy.webhooks import EVENTING_OVERLAYS

Schema = dict[str, Any]

RULE_KEY = "x-kninfer-rule"  # marks schema nodes we closed, so errors name the right rule

_STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}

OBJECT_META: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS1123_SUBDOMAIN},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": DNS1123_LABEL},
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE},
        },
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": ["string", "null"]},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "managedFields": {"type": "array", "items": {"type": "object"}},
        "selfLink": {"type": "string"},
    },
}


def strict(node: Any) -> Any:
    """A copy of a structural schema node with the API server's implicit rules made explicit."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: value for key, value in node.items() if key != "description"}
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: strict(v) for k, v in out["properties"].items()}
    for key in ("items", "not"):
        if isinstance(out.get(key), dict):
            out[key] = strict(out[key])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(out["additionalProperties"])
    for key in ("anyOf", "allOf", "oneOf"):
        if isinstance(out.get(key), list):
            out[key] = [strict(s) for s in out[key]]
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out and "type" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    if out.get("x-kubernetes-embedded-resource") and isinstance(out.get("properties"), dict):
        out["properties"].setdefault("apiVersion", {"type": "string"})
        out["properties"].setdefault("kind", {"type": "string"})
        out["properties"].setdefault("metadata", {"type": "object"})
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _close(node: Schema, fields: tuple[str, ...]) -> None:
    props = node.setdefault("properties", {})
    for name in fields:
        props.setdefault(name, {})
    node.pop("x-kubernetes-preserve-unknown-fields", None)
    node["additionalProperties"] = False
    node[RULE_KEY] = "eventing-webhook-fields"


def root_schema(crd_schema: Schema, group: str, kind: str) -> Schema:
    schema: Schema = strict(copy.deepcopy(crd_schema))
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = copy.deepcopy(OBJECT_META)
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    schema["type"] = "object"
    if not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema["additionalProperties"] = False
    for path, fields in EVENTING_OVERLAYS.get((group, kind), []):
        node = schema
        for part in path:
            node = node["properties"].setdefault(part, {"type": "object"})
        _close(node, fields)
    return schema


def core_schema(fields: dict[str, tuple[str, ...]]) -> Schema:
    top: dict[str, Schema] = {name: {} for name in fields.get("", ())}
    if "spec" in fields:
        top["spec"] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {name: {} for name in fields["spec"]},
        }
    top.update(
        apiVersion={"type": "string"}, kind={"type": "string"}, metadata=copy.deepcopy(OBJECT_META)
    )
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": top,
        "required": ["apiVersion", "kind", "metadata"],
    }


def validator_class() -> Any:
    """Draft 7 plus the list keywords jsonschema ignores: `x-kubernetes-list-map-keys` (with
    `x-kubernetes-list-type: map`) and `x-kubernetes-list-type: set` mean unique entries."""
    from jsonschema import Draft7Validator, validators
    from jsonschema.exceptions import ValidationError

    def list_map_keys(
        validator: Any, keys: list[str], instance: Any, schema: Schema
    ) -> Iterator[ValidationError]:
        if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
            return
        seen: dict[tuple[Any, ...], int] = {}
        for index, item in enumerate(instance):
            if not isinstance(item, dict):
                continue
            key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
            if key in seen:
                shown = ", ".join(f"{k}={item.get(k)!r}" for k in keys)
                yield ValidationError(
                    f"duplicate entry ({shown}); first at index {seen[key]}", path=[index]
                )
            else:
                seen[key] = index

    def list_type(
        validator: Any, value: str, instance: Any, schema: Schema
    ) -> Iterator[ValidationError]:
        if value != "set" or not isinstance(instance, list):
            return
        seen: dict[str, int] = {}
        for index, item in enumerate(instance):
            key = json.dumps(item, sort_keys=True)
            if key in seen:
                yield ValidationError(
                    f"duplicate set item {item!r}; first at index {seen[key]}", path=[index]
                )
            seen.setdefault(key, index)

    return validators.extend(
        Draft7Validator,
        {"x-kubernetes-list-map-keys": list_map_keys, "x-kubernetes-list-type": list_type},
    )
