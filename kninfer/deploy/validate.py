"""`kninfer validate FILE... --crds DIR`: check manifests offline against real CRD schemas.

The driver. For each file it reads the documents (kninfer.deploy.manifests), looks up the
document's schema (kninfer.deploy.crd_store: the CRDs in DIR, or field lists for core kinds),
made strict as the API server and `kubectl apply --validate=strict` (the kubectl default since
1.32) apply it (kninfer.deploy.strict), drops nulls and applies defaults as the API server does
(kninfer.deploy.defaulting), validates, and adds the admission-webhook rules no schema states
(kninfer.deploy.webhooks). A plain JSON-Schema validator on a CRD's `openAPIV3Schema` is laxer
than the API server (it never rejects an unknown field, drops a null or applies a default: see
Kubernetes' CRD docs: structural schemas, field pruning, defaulting and nullable); those modules
are what it lacks.

Each problem names the file, the document (1-based), the JSON path and the rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kninfer.deploy.crd_store import SchemaStore
from kninfer.deploy.defaulting import prepare
from kninfer.deploy.manifests import ManifestError, documents
from kninfer.deploy.strict import RULE_KEY
from kninfer.deploy.webhooks import webhook_rules

QUANTITY_PATTERN_PREFIX = "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))"


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


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


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

    def problem(path: list[str | int], rule: str, message: str, severity: str = "error") -> Problem:
        return Problem(file, index, kind, name, json_path(path), rule, message, severity)

    if not kind or not api_version:
        return [problem([], "required", "apiVersion and kind are required")]
    validator = store.validator(api_version, kind)
    if validator is None:
        versions = store.versions_of(kind)
        hint = f" (the CRDs define {kind} as {', '.join(versions)})" if versions else ""
        return [
            problem(
                ["kind"],
                "schema",
                f"no schema for {api_version} {kind}: not a CRD in the CRD directory "
                f"nor a known core kind{hint}",
            )
        ]
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
            found += [
                problem([*base, field], rule, f"unknown field {json.dumps(field)}")
                for field in _unknown_fields(error)
            ]
            continue
        path, rule, text = _message(error)
        found.append(problem(path, rule, text))
    problems += sorted(found, key=lambda p: (p.path, p.rule, p.message))
    entry = store.entry(api_version, kind)
    if entry is not None and entry.get("scope") == "Cluster" and meta.get("namespace"):
        problems.append(
            problem(
                ["metadata", "namespace"],
                "scope",
                f"{kind} is cluster-scoped and takes no namespace",
            )
        )
    problems += [problem(path, rule, text) for path, rule, text in webhook_rules(doc)]
    return problems


def validate_file(path: Path, store: SchemaStore) -> tuple[int, list[Problem]]:
    """(number of documents, problems) for one YAML or JSON file."""
    shown = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        return 0, [Problem(shown, 0, "", "", "$", "read", f"cannot read: {exc.strerror}")]
    problems: list[Problem] = []
    count = 0
    try:
        for index, doc in documents(text):
            count += 1
            problems += validate_document(doc, store, shown, index)
    except ManifestError as exc:
        problems.append(Problem(shown, exc.index, "", "", "$", exc.rule, exc.message))
    return count, problems
