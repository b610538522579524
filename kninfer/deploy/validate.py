"""`kninfer validate FILE... --crds DIR`: check manifests offline against real CRD schemas.

A plain JSON-Schema validator on a CRD's `openAPIV3Schema` is laxer than the API server
(../shared/notes/kserve-knative-manifests.md, section 0). This module adds what the server and
`kubectl apply --validate=strict` (the kubectl default since 1.32) do:

- unknown fields are errors: every object schema with `properties` is closed unless it carries
  `x-kubernetes-preserve-unknown-fields` or declares `additionalProperties` (a map);
- `apiVersion`, `kind`, `metadata` are implied at the root (Knative Eventing CRDs declare only
  spec/status); `metadata` is checked as ObjectMeta: names, and label/annotation values must be
  strings (annotations are map[string]string, so `min-scale: 0` is an error);
- `x-kubernetes-int-or-string` without `anyOf` means integer or string;
- `nullable: true` admits null; a null on a non-nullable field is dropped before validation,
  as the API server does (reported as a warning);
- `default`s are applied to missing fields before validation, as the API server does;
- `x-kubernetes-list-type: map` keys and `set` items must be unique;
- the Knative Eventing webhook decodes Trigger/Broker specs with DisallowUnknownFields
  (knative/eventing cmd/webhook/main.go), so those subtrees are closed to their Go type fields
  even where the CRD preserves unknown fields;
- a few webhook rules no schema expresses (KServe: one predictor implementation, name pattern,
  canary 0..100, min <= max replicas; Knative: reserved env names and ports, broker and
  subscriber on a Trigger).

Core kinds (ConfigMap, Service, Deployment, ...) have no CRD; they are checked by field name.
Each problem names the file, the document (1-based), the JSON path and the rule.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Schema = dict[str, Any]

QUANTITY_PATTERN_PREFIX = "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
RULE_KEY = "x-kninfer-rule"  # marks schema nodes we closed, so errors name the right rule

_STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}

OBJECT_META: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS1123_SUBDOMAIN},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": DNS1123_LABEL},
        "labels": {"type": "object",
                   "additionalProperties": {"type": "string", "maxLength": 63,
                                            "pattern": LABEL_VALUE}},
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

# Go type field names for the Knative Eventing subtrees the CRD leaves open
# (knative/eventing pkg/apis/eventing/v1/trigger_types.go, pkg/apis/duck/v1/delivery_types.go).
DELIVERY_FIELDS = ("deadLetterSink", "retry", "timeout", "backoffPolicy", "backoffDelay",
                   "retryAfterMax", "format")
TRIGGER_SPEC_FIELDS = ("broker", "brokerRef", "filter", "filters", "subscriber", "delivery")
EVENTING_OVERLAYS: dict[tuple[str, str], list[tuple[tuple[str, ...], tuple[str, ...]]]] = {
    ("eventing.knative.dev", "Trigger"): [
        (("spec",), TRIGGER_SPEC_FIELDS),
        (("spec", "delivery"), DELIVERY_FIELDS),
    ],
    ("eventing.knative.dev", "Broker"): [(("spec", "delivery"), DELIVERY_FIELDS)],
}

# Core kinds have no CRD here: check top-level (and spec) field names (kubernetes/api types).
CORE_FIELDS: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("v1", "ConfigMap"): {"": ("data", "binaryData", "immutable")},
    ("v1", "Secret"): {"": ("data", "stringData", "type", "immutable")},
    ("v1", "ServiceAccount"): {"": ("secrets", "imagePullSecrets",
                                    "automountServiceAccountToken")},
    ("v1", "Namespace"): {"": ("spec",)},
    ("v1", "Service"): {"": ("spec",), "spec": (
        "ports", "selector", "type", "clusterIP", "clusterIPs", "externalName", "externalIPs",
        "externalTrafficPolicy", "internalTrafficPolicy", "ipFamilies", "ipFamilyPolicy",
        "loadBalancerIP", "loadBalancerSourceRanges", "loadBalancerClass", "sessionAffinity",
        "sessionAffinityConfig", "publishNotReadyAddresses", "healthCheckNodePort",
        "allocateLoadBalancerNodePorts", "trafficDistribution")},
    ("apps/v1", "Deployment"): {"": ("spec",), "spec": (
        "replicas", "selector", "template", "strategy", "minReadySeconds",
        "revisionHistoryLimit", "paused", "progressDeadlineSeconds")},
    ("rbac.authorization.k8s.io/v1", "Role"): {"": ("rules",)},
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): {"": ("rules", "aggregationRule")},
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): {"": ("roleRef", "subjects")},
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): {"": ("roleRef", "subjects")},
}

# Knative runtime contract (knative/serving pkg/apis/serving/k8s_validation.go).
KNATIVE_RESERVED_ENV = ("PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION")
KNATIVE_RESERVED_PORTS = (8012, 8013, 8022, 8008, 9090, 9091)
ISVC_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
ISVC_IMPLEMENTATIONS = ("model", "containers", "sklearn", "xgboost", "tensorflow", "pytorch",
                        "triton", "onnx", "huggingface", "pmml", "lightgbm", "paddle")


@dataclass(frozen=True)
class Problem:
    file: str
    document: int  # 1-based index of the YAML document in the file; 0 = the file itself
    kind: str
    name: str
    path: str  # JSON path, `$` = the document root
    rule: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"document {self.document}" if self.document else "file"
        what = f" ({self.kind}/{self.name})" if self.kind else ""
        tag = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.file}: {where}{what}: {self.path}: {tag}{self.message} [rule: {self.rule}]"


class CrdError(ValueError):
    """The CRD directory cannot be used (missing, empty, unreadable)."""


def json_path(parts: Iterable[str | int]) -> str:
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").isalnum() and not part[:1].isdigit():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


# --- loading ----------------------------------------------------------------------------------

class DuplicateKey(ValueError):
    def __init__(self, key: object, line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line}")
        self.key = key
        self.line = line


def _strict_loader() -> type:
    """A YAML loader (the C one when available) that refuses duplicate mapping keys, which
    kubectl's strict decoding rejects and PyYAML would silently resolve to the last value."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class StrictLoader(base):  # type: ignore[valid-type,misc]
        pass

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in seen:
                raise DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return dict(yaml.SafeLoader.construct_mapping(loader, node, deep=True))

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 construct_mapping)
    return StrictLoader


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kninfer" / "crd-schemas"


def _extract(path: Path) -> list[dict[str, Any]]:
    """[{group, version, kind, scope, schema}] for every served version of every CRD in a file.
    Parsing the 2 MB ISVC CRD takes ~0.5 s even with the C loader, so the extraction is cached
    as JSON keyed by the file's content hash (~10 ms to load)."""
    import yaml

    raw = path.read_bytes()
    cache = _cache_dir() / f"{hashlib.sha256(raw).hexdigest()}.json"
    try:
        cached: list[dict[str, Any]] = json.loads(cache.read_text())
        return cached
    except (OSError, ValueError):
        pass
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    entries = []
    docs: list[Any] = []
    for doc in yaml.load_all(raw, Loader=loader):  # noqa: S506 - a safe loader
        # `kubectl get crd A B -o yaml` wraps several CRDs in a v1 List.
        is_list = isinstance(doc, dict) and doc.get("kind") == "List"
        docs += (doc.get("items") or []) if is_list else [doc]
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc.get("spec") or {}
        for version in spec.get("versions") or []:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema is None or not version.get("served", True):
                continue
            entries.append({"group": spec["group"], "version": version["name"],
                            "kind": spec["names"]["kind"], "scope": spec.get("scope"),
                            "schema": schema})
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries))
        tmp.replace(cache)
    except OSError:
        pass  # a read-only cache only costs time
    return entries


class SchemaStore:
    """CRD schemas by (apiVersion, kind), turned into strict validators on first use."""

    def __init__(self, crd_dir: Path) -> None:
        if not crd_dir.is_dir():
            raise CrdError(f"CRD directory {crd_dir} does not exist")
        self._raw: dict[tuple[str, str], dict[str, Any]] = {}
        files = sorted(p for p in crd_dir.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
        for path in files:
            try:
                entries = _extract(path)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is reported as such
                raise CrdError(f"{path}: cannot read CRD: {exc}") from None
            for entry in entries:
                api_version = f"{entry['group']}/{entry['version']}"
                self._raw[(api_version, entry["kind"])] = entry
        if not self._raw:
            raise CrdError(f"no CustomResourceDefinition with an openAPIV3Schema under {crd_dir}")
        self._validators: dict[tuple[str, str], Any] = {}

    def known(self) -> list[str]:
        return sorted(f"{a} {k}" for a, k in self._raw)

    def versions_of(self, kind: str) -> list[str]:
        return sorted(a for a, k in self._raw if k == kind)

    def entry(self, api_version: str, kind: str) -> dict[str, Any] | None:
        return self._raw.get((api_version, kind))

    def validator(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        if key not in self._validators:
            entry = self._raw.get(key)
            if entry is not None:
                schema = root_schema(entry["schema"], entry["group"], kind)
            elif key in CORE_FIELDS:
                schema = core_schema(CORE_FIELDS[key])
            else:
                return None
            self._validators[key] = _validator_class()(schema)
        return self._validators[key]


# --- schema transformation ----------------------------------------------------------------------

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
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
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
        top["spec"] = {"type": "object", "additionalProperties": False,
                       "properties": {name: {} for name in fields["spec"]}}
    top.update(apiVersion={"type": "string"}, kind={"type": "string"},
               metadata=copy.deepcopy(OBJECT_META))
    return {"type": "object", "additionalProperties": False, "properties": top,
            "required": ["apiVersion", "kind", "metadata"]}


def _validator_class() -> Any:
    from jsonschema import Draft7Validator, validators
    from jsonschema.exceptions import ValidationError

    def list_map_keys(validator: Any, keys: list[str], instance: Any,
                      schema: Schema) -> Iterator[ValidationError]:
        if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
            return
        seen: dict[tuple[Any, ...], int] = {}
        for index, item in enumerate(instance):
            if not isinstance(item, dict):
                continue
            key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
            if key in seen:
                shown = ", ".join(f"{k}={item.get(k)!r}" for k in keys)
                yield ValidationError(f"duplicate entry ({shown}); first at index {seen[key]}",
                                      path=[index])
            else:
                seen[key] = index

    def list_type(validator: Any, value: str, instance: Any,
                  schema: Schema) -> Iterator[ValidationError]:
        if value != "set" or not isinstance(instance, list):
            return
        seen: dict[str, int] = {}
        for index, item in enumerate(instance):
            key = json.dumps(item, sort_keys=True)
            if key in seen:
                yield ValidationError(f"duplicate set item {item!r}; first at index {seen[key]}",
                                      path=[index])
            seen.setdefault(key, index)

    return validators.extend(Draft7Validator, {"x-kubernetes-list-map-keys": list_map_keys,
                                               "x-kubernetes-list-type": list_type})


# --- instance preparation: nulls and defaults, as the API server does -----------------------

def _subschema_for(schema: Schema, key: str) -> Schema | None:
    props = schema.get("properties")
    if isinstance(props, dict) and key in props:
        sub = props[key]
        return sub if isinstance(sub, dict) else None
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def prepare(instance: Any, schema: Schema, path: list[str | int],
            warnings: list[tuple[list[str | int], str]]) -> Any:
    """Drop nulls on non-nullable fields and apply defaults to missing fields (apiextensions
    structural schema semantics: pruning of nulls happens before defaulting and validation)."""
    if isinstance(instance, dict):
        out = {}
        for key, value in instance.items():
            sub = _subschema_for(schema, key)
            if value is None and sub is not None and not sub.get("nullable"):
                warnings.append(([*path, key], "null value is dropped by the API server"))
                continue
            out[key] = prepare(value, sub, [*path, key], warnings) if sub else value
        props = schema.get("properties")
        if isinstance(props, dict):
            for key, sub in props.items():
                if key not in out and isinstance(sub, dict) and "default" in sub:
                    out[key] = copy.deepcopy(sub["default"])
        return out
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [prepare(item, schema["items"], [*path, i], warnings)
                for i, item in enumerate(instance)]
    return instance


# --- semantic (webhook) rules ------------------------------------------------------------------

def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _webhook_rules(doc: dict[str, Any]) -> Iterator[tuple[list[str | int], str, str]]:
    """(path, rule, message) for admission-webhook rules that no schema states."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    spec = _obj(doc.get("spec"))
    name = _obj(doc.get("metadata")).get("name")
    if api_version.startswith("serving.kserve.io/") and kind == "InferenceService":
        import re

        if isinstance(name, str) and not re.match(ISVC_NAME, name):
            yield (["metadata", "name"], "kserve-webhook",
                   f"InferenceService name {name!r} must match {ISVC_NAME}")
        for component in ("predictor", "transformer", "explainer"):
            part = spec.get(component)
            if not isinstance(part, dict):
                continue
            impls = [k for k in ISVC_IMPLEMENTATIONS if part.get(k)]
            if component == "predictor" and len(impls) != 1:
                yield (["spec", component], "kserve-webhook",
                       "exactly one predictor implementation must be set (model, containers or a "
                       f"framework); found {len(impls)}: {', '.join(impls) or 'none'}")
            low, high = part.get("minReplicas"), part.get("maxReplicas")
            if isinstance(low, int) and isinstance(high, int) and high and low > high:
                yield (["spec", component, "minReplicas"], "kserve-webhook",
                       f"minReplicas ({low}) must not exceed maxReplicas ({high})")
            canary = part.get("canaryTrafficPercent")
            if isinstance(canary, int) and not 0 <= canary <= 100:
                # KServe does not range-check it; Knative rejects the generated traffic later.
                yield (["spec", component, "canaryTrafficPercent"], "knative-traffic",
                       f"canaryTrafficPercent must be within 0..100, got {canary}")
    if api_version.startswith("serving.knative.dev/") and kind in ("Service", "Configuration"):
        pod = _obj(_obj(spec.get("template")).get("spec"))
        for i, container in enumerate(pod.get("containers") or []):
            if not isinstance(container, dict):
                continue
            base: list[str | int] = ["spec", "template", "spec", "containers", i]
            for j, env in enumerate(container.get("env") or []):
                if isinstance(env, dict) and env.get("name") in KNATIVE_RESERVED_ENV:
                    yield ([*base, "env", j, "name"], "knative-runtime-contract",
                           f"env {env['name']} is reserved by Knative")
            for j, port in enumerate(container.get("ports") or []):
                if isinstance(port, dict) and port.get("containerPort") in KNATIVE_RESERVED_PORTS:
                    yield ([*base, "ports", j, "containerPort"], "knative-runtime-contract",
                           f"port {port['containerPort']} is reserved by Knative")
    if api_version.startswith("eventing.knative.dev/") and kind == "Trigger":
        if bool(spec.get("broker")) == bool(spec.get("brokerRef")):
            yield (["spec"], "eventing-webhook", "a Trigger needs exactly one of broker, brokerRef")
        if not spec.get("subscriber"):
            yield (["spec", "subscriber"], "eventing-webhook", "a Trigger needs a subscriber")


# --- validation --------------------------------------------------------------------------------

def _message(error: Any) -> tuple[list[str | int], str, str]:
    """(path, rule, message) for a jsonschema error, phrased for Kubernetes users."""
    path: list[str | int] = list(error.absolute_path)
    keyword = error.validator
    if keyword == "pattern" and str(error.validator_value).startswith(QUANTITY_PATTERN_PREFIX):
        return path, "quantity", f"{json.dumps(error.instance)} is not a Kubernetes quantity"
    return path, str(keyword), error.message


def _unknown_fields(error: Any) -> list[str]:
    return sorted(set(error.instance) - set(error.schema.get("properties", {})))


def validate_document(doc: Any, store: SchemaStore, file: str, index: int) -> list[Problem]:
    if not isinstance(doc, dict):
        return [Problem(file, index, "", "", "$", "type", "a manifest must be a mapping")]
    kind = doc["kind"] if isinstance(doc.get("kind"), str) else ""
    api_version = doc["apiVersion"] if isinstance(doc.get("apiVersion"), str) else ""
    meta = _obj(doc.get("metadata"))
    name = str(meta.get("name") or meta.get("generateName") or "")

    def problem(path: list[str | int], rule: str, message: str,
                severity: str = "error") -> Problem:
        return Problem(file, index, kind, name, json_path(path), rule, message, severity)

    if not kind or not api_version:
        return [problem([], "required", "apiVersion and kind are required")]
    validator = store.validator(api_version, kind)
    if validator is None:
        versions = store.versions_of(kind)
        hint = f" (the CRDs define {kind} as {', '.join(versions)})" if versions else ""
        return [problem(["kind"], "schema",
                        f"no schema for {api_version} {kind}: not a CRD in the CRD directory "
                        f"nor a known core kind{hint}")]
    problems: list[Problem] = []
    warnings: list[tuple[list[str | int], str]] = []
    prepared = prepare(doc, validator.schema, [], warnings)
    problems += [problem(path, "nullable", text, "warning") for path, text in warnings]
    if not meta.get("name") and not meta.get("generateName"):
        problems.append(problem(["metadata"], "required", "metadata.name is required"))
    found: list[Problem] = []
    for error in validator.iter_errors(prepared):
        if error.validator == "additionalProperties" and error.validator_value is False:
            # one problem per unknown field, each with its own path
            rule = error.schema.get(RULE_KEY, "strict-fields")
            base = list(error.absolute_path)
            found += [problem([*base, field], rule, f"unknown field {json.dumps(field)}")
                      for field in _unknown_fields(error)]
            continue
        path, rule, text = _message(error)
        found.append(problem(path, rule, text))
    problems += sorted(found, key=lambda p: (p.path, p.rule, p.message))
    entry = store.entry(api_version, kind)
    if entry is not None and entry.get("scope") == "Cluster" and meta.get("namespace"):
        problems.append(problem(["metadata", "namespace"], "scope",
                                f"{kind} is cluster-scoped and takes no namespace"))
    problems += [problem(path, rule, text) for path, rule, text in _webhook_rules(doc)]
    return problems


def validate_file(path: Path, store: SchemaStore) -> tuple[int, list[Problem]]:
    """(number of documents, problems) for one YAML or JSON file."""
    import yaml

    shown = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        return 0, [Problem(shown, 0, "", "", "$", "read", f"cannot read: {exc.strerror}")]
    problems: list[Problem] = []
    count = 0
    stream = yaml.load_all(text, Loader=_strict_loader())  # noqa: S506 - a safe loader
    index = 0
    while True:
        index += 1
        try:
            doc = next(stream)
        except StopIteration:
            break
        except DuplicateKey as exc:
            problems.append(Problem(shown, index, "", "", "$", "duplicate-key", str(exc)))
            break
        except yaml.YAMLError as exc:
            problems.append(Problem(shown, index, "", "", "$", "yaml", str(exc).replace("\n", " ")))
            break
        if doc is None:  # an empty document, e.g. after a trailing `---`
            index -= 1
            continue
        count += 1
        problems += validate_document(doc, store, shown, index)
    return count, problems


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus *.yaml / *.yml / *.json under named directories (sorted)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*")
                          if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))
        else:
            out.append(path)
    return out
