"""KServe's V1 protocol (data plane V1): `{"instances": [...]}` or `{"inputs": [...]}`.
"""

from __future__ import annotations

from typing import Any

from kninfer.errors import InvalidInput
from kninfer.protocol.jsonio import loads_json


def decode_v1_request(body: bytes) -> dict[str, Any]:
    """V1 protocol (KServe data plane V1): `{"instances": [...]}` or `{"inputs": [...]}`."""
    if not body:
        raise InvalidInput('request body is empty; expected {"instances": [[...], ...]}')
    doc = loads_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput('request body must be a JSON object; expected {"instances": [...]}')
    if "dataframe_split" in doc or "dataframe_records" in doc:
        return doc  # MLflow scoring-server payloads; the MLflow predictor reads them
    instances = doc.get("instances", doc.get("inputs"))
    if instances is None:
        raise InvalidInput('request has no "instances"; expected {"instances": [[...], ...]}')
    if not isinstance(instances, list):
        raise InvalidInput('"instances" must be a list of rows')
    return doc
