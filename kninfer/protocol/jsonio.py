"""JSON bodies in and out (orjson), with kninfer's error for a body that is not JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

from kninfer.errors import InvalidInput

JSON_CONTENT_TYPE = "application/json"


def loads_json(raw: bytes, what: str = "request body") -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON ({exc})") from None


def encode_json(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
