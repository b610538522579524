"""Instance preparation before validation: nulls and defaults, as the API server does.

apiextensions structural-schema semantics: a null on a non-nullable field is dropped (kninfer
reports it as a warning), then the schema's `default`s are applied to missing fields, and only
then is the object validated. jsonschema does neither: a plain validator fails `nodeSelector:
null` and never applies a default (Kubernetes' CRD docs: structural schemas, field pruning,
defaulting and nullable).
"""

from __future__ import annotations

import copy
from typing import Any

from kninfer.deploy.strict import Schema


def _subschema_for(schema: Schema, key: str) -> Schema | None:
    props = schema.get("properties")
    if isinstance(props, dict) and key in props:
        sub = props[key]
        return sub if isinstance(sub, dict) else None
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def prepare(
    instance: Any,
    schema: Schema,
    path: list[str | int],
    warnings: list[tuple[list[str | int], str]],
) -> Any:
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
        return [
            prepare(item, schema["items"], [*path, i], warnings) for i, item in enumerate(instance)
        ]
    return instance
