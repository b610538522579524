"""KServe's V1 protocol (data plane V1, `POST /v1/models/NAME:predict`): a JSON object carrying
rows as `instances` (or `inputs`), or a table in one of the two table forms of MLflow's scoring
protocol, `dataframe_split` or `dataframe_records` (mlflow.pyfunc.scoring_server), which every
model that reads a table takes (kninfer.predictors.columns). The decoded payload is a dict; the
model checks its rows against its own inputs.
"""

from __future__ import annotations

from typing import Any

from kninfer.errors import InvalidInput
from kninfer.protocol.jsonio import loads_json

ROW_FORMATS = ("instances", "inputs")
TABLE_FORMATS = ("dataframe_split", "dataframe_records")

# A V1 payload decoded from CSV (MLflow's text/csv, kninfer.protocol.mlflow_scoring) carries its
# cells as text, flagged under this key, for the model's columns to type
# (kninfer.predictors.columns).
CSV_PAYLOAD_KEY = "_kninfer_csv"


def decode_v1_request(body: bytes) -> dict[str, Any]:
    """A V1 request body as its payload dict: rows or a table, checked for shape only."""
    if not body:
        raise InvalidInput('request body is empty; expected {"instances": [[...], ...]}')
    doc = loads_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput('request body must be a JSON object; expected {"instances": [...]}')
    if any(key in doc for key in TABLE_FORMATS):
        return doc  # a table: its columns are the model's to check
    instances = doc.get("instances", doc.get("inputs"))
    if instances is None:
        raise InvalidInput('request has no "instances"; expected {"instances": [[...], ...]}')
    if not isinstance(instances, list):
        raise InvalidInput('"instances" must be a list of rows')
    return doc
