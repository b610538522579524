"""CRD schemas by (apiVersion, kind), read from a directory of CRD files and cached.

`kninfer.deploy.VENDORED_CRDS` is the default directory: the CRDs kninfer renders for. Any
other directory works too (`kubectl get crd NAME -o yaml > DIR/NAME.yaml`, or a v1 List of
several). Every served version with an `openAPIV3Schema` is kept.

Parsing the 2 MB InferenceService CRD is slow even with PyYAML's C loader, so what is
extracted from each file is cached as JSON under $XDG_CACHE_HOME/kninfer/crd-schemas, keyed by
the file's content hash, which loads far faster than the YAML parses. A validator is built from
a schema on first use (kninfer.deploy.strict). Core kinds
(ConfigMap, Service, Deployment, ...) have no CRD: `CORE_FIELDS` lists their field names
(kubernetes/api types).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from kninfer.deploy.strict import core_schema, root_schema, validator_class

# Core kinds have no CRD here: check top-level (and spec) field names (kubernetes/api types).
CORE_FIELDS: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("v1", "ConfigMap"): {"": ("data", "binaryData", "immutable")},
    ("v1", "Secret"): {"": ("data", "stringData", "type", "immutable")},
    ("v1", "ServiceAccount"): {"": ("secrets", "imagePullSecrets", "automountServiceAccountToken")},
    ("v1", "Namespace"): {"": ("spec",)},
    ("v1", "Service"): {
        "": ("spec",),
        "spec": (
            "ports",
            "selector",
            "type",
            "clusterIP",
            "clusterIPs",
            "externalName",
            "externalIPs",
            "externalTrafficPolicy",
            "internalTrafficPolicy",
            "ipFamilies",
            "ipFamilyPolicy",
            "loadBalancerIP",
            "loadBalancerSourceRanges",
            "loadBalancerClass",
            "sessionAffinity",
            "sessionAffinityConfig",
            "publishNotReadyAddresses",
            "healthCheckNodePort",
            "allocateLoadBalancerNodePorts",
            "trafficDistribution",
        ),
    },
    ("apps/v1", "Deployment"): {
        "": ("spec",),
        "spec": (
            "replicas",
            "selector",
            "template",
            "strategy",
            "minReadySeconds",
            "revisionHistoryLimit",
            "paused",
            "progressDeadlineSeconds",
        ),
    },
    ("rbac.authorization.k8s.io/v1", "Role"): {"": ("rules",)},
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): {"": ("rules", "aggregationRule")},
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): {"": ("roleRef", "subjects")},
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): {"": ("roleRef", "subjects")},
}


class CrdError(ValueError):
    """The CRD directory cannot be used (missing, empty, unreadable)."""


def _cache_dir() -> Path:
    from kninfer.settings import default_cache_dir

    return default_cache_dir() / "crd-schemas"


def _extract(path: Path) -> list[dict[str, Any]]:
    """[{group, version, kind, scope, schema}] for every served version of every CRD in a file.
    Parsing the 2 MB ISVC CRD is slow even with the C loader, so the extraction is cached
    as JSON keyed by the file's content hash (the figures:
    docs/performance.md#figures-behind-the-code)."""
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
            entries.append(
                {
                    "group": spec["group"],
                    "version": version["name"],
                    "kind": spec["names"]["kind"],
                    "scope": spec.get("scope"),
                    "schema": schema,
                }
            )
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
            self._validators[key] = validator_class()(schema)
        return self._validators[key]
