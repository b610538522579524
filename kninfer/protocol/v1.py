"""KServe's V1 protocol (data plane V1, `POST /v1/models/NAME:predict`): a JSON object carrying
rows as `instances` (or `inputs`), named tensors in TensorFlow Serving's columnar form
(`{"inputs": {"x": [...], "mask": [...]}}`, which KServe's V1 takes from it), or a table in one of
the two table forms of MLflow's scoring protocol, `dataframe_split` or `dataframe_records`
(mlflow.pyfunc.scoring_server), which every model that reads a table takes
(kninfer.protocol.tables). The decoded payload is a dict; the model checks its rows against
its own inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from kninfer.errors import EMPTY_BATCH, InvalidInput
from kninfer.protocol.jsonio import loads_json

ROW_FORMATS = ("instances", "inputs")
TABLE_FORMATS = ("dataframe_split", "dataframe_records")

# Deprecated: a CSV payload was once flagged under this key inside the payload. Its
# `dataframe_split` is a CsvTable now, so the flag is not set; the name stays for importers.
CSV_PAYLOAD_KEY = "_kninfer_csv"


class CsvTable(dict[str, Any]):
    """MLflow's `text/csv` body (kninfer.protocol.mlflow_scoring) as a `dataframe_split` table,
    `{"columns": [...], "data": [[...], ...]}`, its cells still text for the model's columns to
    type (kninfer.protocol.tables). A dict, so every reader of a V1 payload (a transformer, the
    payload log) sees the split form as JSON gives it; its type, not a key in the payload, says
    the cells are text."""


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
    if not isinstance(instances, list) and not (
        isinstance(instances, dict) and "instances" not in doc
    ):
        raise InvalidInput(
            '"instances" must be a list of rows (or "inputs" an object of named tensors)'
        )
    return doc


@dataclass(frozen=True)
class V1Rows:
    """What a decoded V1 payload carries, for a model to read: the form it uses, its rows
    (`dataframe_split` data, `dataframe_records` records, or `instances`/`inputs` as sent: a list
    of rows or records, MLflow's columnar dict, or None when absent), and `dataframe_split`'s
    column names (None: the model's own order)."""

    form: Literal["dataframe_split", "dataframe_records", "instances"]
    rows: Any
    columns: list[str] | None = None
    csv: bool = False  # cells are CSV text (a CsvTable), for the model's columns to type

    def instance_list(self, missing: str) -> list[Any]:
        """The rows as a non-empty list; `missing` is the 400's message when they are none."""
        if not isinstance(self.rows, list):
            raise InvalidInput(missing)
        if not self.rows:
            raise InvalidInput(f"'instances' is empty; {EMPTY_BATCH}")
        return self.rows


def v1_rows(payload: dict[str, Any]) -> V1Rows:
    """Which V1 form `payload` uses, with `dataframe_split`'s shape checked (MLflow's scoring
    protocol: `{"columns": [...], "data": [[...], ...]}`, columns optional)."""
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            raise InvalidInput(
                '\'dataframe_split\' must be {"columns": [...], "data": [[...], ...]}'
            )
        columns = split.get("columns") or None
        if columns is not None and (
            not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
        ):
            raise InvalidInput("'dataframe_split.columns' must be a list of column names")
        return V1Rows("dataframe_split", split["data"], columns, isinstance(split, CsvTable))
    if "dataframe_records" in payload:
        return V1Rows("dataframe_records", payload["dataframe_records"])
    return V1Rows("instances", payload.get("instances", payload.get("inputs")))


def named_tensors(doc: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """TensorFlow Serving's columnar form (its REST API, "Columnar format"), `{"inputs": {"x":
    [...], "mask": [...]}}`: each input's whole batch under its name. A key the model does not
    take, or an input left out, is a 400 naming it."""
    takes = ", ".join(names)
    unknown = [key for key in doc if key not in names]
    if unknown:
        raise InvalidInput(f"'inputs' has unknown input '{unknown[0]}'; the model takes {takes}")
    missing = [name for name in names if name not in doc]
    if missing:
        raise InvalidInput(f"'inputs' has no input '{missing[0]}'; the model takes {takes}")
    return {name: doc[name] for name in names}


def tensors_by_input(data: Any, names: list[str], model_name: str) -> dict[str, Any] | None:
    """KServe V1's named tensors, in either form: `{"inputs": {name: batch}}` (`named_tensors`)
    or instances keyed by input name (`instances_by_input`), as each input's values. None for
    plain rows, which a model of one input reads as that input's rows; plain rows for a model
    of several inputs are refused, saying how to send them."""
    if isinstance(data, dict):
        return named_tensors(data, names)
    if isinstance(data, list) and any(isinstance(row, dict) for row in data):
        return instances_by_input(data, names)
    if isinstance(data, list) and len(names) > 1:
        keyed = ", ".join(f'"{name}": [...]' for name in names)
        raise InvalidInput(
            f"model '{model_name}' takes {len(names)} inputs ({', '.join(names)}): send each "
            f'instance as an object keyed by input name, {{"instances": [{{{keyed}}}]}}, or the '
            f'tensors by name, {{"inputs": {{{keyed}}}}}'
        )
    return None


def instances_by_input(instances: list[Any], names: list[str]) -> dict[str, list[Any]]:
    """KServe V1's named-tensor form, `{"instances": [{"x": [...], "mask": [...]}, ...]}`: each
    instance an object holding one value of every input in `names`. Returns each input's values
    in instance order, for the model to stack as that input's batch. A non-object instance, a
    missing key or a key the model does not take is a 400 naming it: guessing would feed one
    input's values to another."""
    columns: dict[str, list[Any]] = {name: [] for name in names}
    takes = ", ".join(names)
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise InvalidInput(
                f"instances[{i}] is not an object; the model takes named inputs "
                f'({takes}): send each instance as {{"{names[0]}": ..., ...}}'
            )
        unknown = [key for key in instance if key not in columns]
        if unknown:
            raise InvalidInput(
                f"instances[{i}] has unknown input '{unknown[0]}'; the model takes {takes}"
            )
        missing = [name for name in names if name not in instance]
        if missing:
            raise InvalidInput(
                f"instances[{i}] has no input '{missing[0]}'; each instance needs {takes}"
            )
        for name in names:
            columns[name].append(instance[name])
    return columns
