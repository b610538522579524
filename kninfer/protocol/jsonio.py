"""JSON bodies in and out (orjson), with kninfer's error for a body that is not JSON."""

from __future__ import annotations

from typing import Any

import orjson

from kninfer.errors import InvalidInput

JSON_CONTENT_TYPE = "application/json"


def loads_json(raw: bytes, what: str = "request body", non_finite: bool = False) -> Any:
    """RFC 8259 JSON. With `non_finite`, also the bare `NaN`, `Infinity` and `-Infinity` tokens
    Python's json module writes and reads: MLflow's scoring server parses with `json.loads`, so
    its clients send them for missing values (the V2 and V1 endpoints stay strict JSON)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if non_finite:
            import json

            try:  # orjson refuses the tokens; the standard library takes them, and only them
                return json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                pass
        raise InvalidInput(f"{what} is not valid JSON ({exc})") from None


def encode_json(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
