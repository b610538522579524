"""The table codec: column-wise (tabular) requests, one V2 input per DataFrame column, and the
V1 and MLflow forms that carry a table as rows, decoded against a model's column specs.

A model fitted on a pandas DataFrame (a scikit-learn estimator with `feature_names_in_`, an
MLflow model with a column signature) takes named columns of mixed types. This is how KServe's
sklearn server and MLServer's pandas codec serve them (MLServer, "Pandas codec": one input per
column, shape [N] or [N, 1]); V1 and MLflow's scoring protocol carry the same table as rows:

- `{"instances": [{"col": v, ...}, ...]}`: records keyed by column (KServe V1);
- `{"instances": [[v, ...], ...]}`: rows in the model's column order, mixed types;
- `{"dataframe_split": {"columns": [...], "data": [[...]]}}`, `{"dataframe_records": [...]}`:
  MLflow's scoring-server forms (mlflow.pyfunc.scoring_server, pandas orients split/records);
- CSV (`text/csv` on `/invocations`): a header row and rows of text, typed per column here as
  `pandas.read_csv(dtype=schema)` does in MLflow's server.

Everything here is pure: values in, numpy columns out, every mistake an InvalidInput naming the
column (or row). The families decide what the arrays become (a DataFrame, MLflow's schema check).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kninfer.errors import EMPTY_BATCH, InvalidInput
from kninfer.protocol.tensor import Arrays, TensorSpec
from kninfer.protocol.v1 import v1_rows

_INTEGER = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def column_array(name: str, values: list[Any]) -> np.ndarray:
    """One column's JSON values as a 1-D numpy array (strings as an object array)."""
    if any(isinstance(v, str) for v in values):
        # numpy would turn [1, "a"] into the strings "1", "a": keep each value as sent, so a
        # number in a string column (or a string in a numeric one) is refused, not converted.
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array
    try:
        array = np.asarray(values)
    except ValueError:
        raise InvalidInput(f"column '{name}' has values of different lengths") from None
    if array.dtype.kind == "U":
        array = array.astype(object)
    return array


def model_column(name: str, datatype: str, array: np.ndarray) -> np.ndarray:
    """A request column as the 1-D array a DataFrame column of `datatype` holds: str objects
    for BYTES (None kept as missing), bool for BOOL, int64 for integer datatypes, float64 for
    the rest (None as NaN). A value of the wrong kind is an InvalidInput naming the column."""
    values = array.reshape(-1)
    if datatype == "BYTES":
        out = np.empty(len(values), dtype=object)
        for i, value in enumerate(values.tolist()):
            if isinstance(value, bytes):
                try:
                    value = value.decode()
                except UnicodeDecodeError:
                    raise InvalidInput(f"column '{name}': row {i} is not UTF-8 text") from None
            elif value is not None and not isinstance(value, str):
                raise InvalidInput(f"column '{name}' takes strings (BYTES); row {i} is {value!r}")
            out[i] = value
        return out
    kind = values.dtype.kind
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidInput(f"column '{name}' takes true/false (BOOL)")
        return values
    if kind == "b":
        raise InvalidInput(f"column '{name}' takes numbers ({datatype}); got true/false")
    if kind == "O":
        for i, value in enumerate(values.tolist()):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise InvalidInput(
                    f"column '{name}' takes numbers ({datatype}); row {i} is {value!r}"
                )
        if datatype in _INTEGER:
            if any(v is None for v in values.tolist()):
                raise InvalidInput(f"column '{name}' ({datatype}) has a missing value")
        values = np.asarray([np.nan if v is None else v for v in values.tolist()])
        kind = values.dtype.kind
    if kind not in "iuf":
        raise InvalidInput(f"column '{name}' takes numbers ({datatype})")
    if datatype in _INTEGER:
        if kind == "f":
            if not np.isfinite(values).all() or (values != np.trunc(values)).any():
                raise InvalidInput(f"column '{name}' ({datatype}) takes whole numbers")
            if values.size and np.abs(values).max() >= 2**63:
                raise InvalidInput(f"column '{name}': a value is out of range for {datatype}")
        return values.astype(np.int64)
    return values.astype(np.float64, copy=False)


def strings_array(name: str, array: np.ndarray) -> np.ndarray:
    """A BYTES tensor (V2 JSON strings and binary/gRPC values arrive as bytes, V1 as JSON values)
    as an object array of str in the same shape: bytes decoded as UTF-8, anything else that is
    not a str refused, naming the input and the value (`row i` for a 1-D tensor)."""
    flat = array.reshape(-1)
    out = np.empty(len(flat), dtype=object)
    where = "row" if array.ndim == 1 else "value"
    for i, value in enumerate(flat.tolist()):
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                raise InvalidInput(f"input '{name}': {where} {i} is not UTF-8 text") from None
        elif not isinstance(value, str):
            raise InvalidInput(f"input '{name}' takes strings (BYTES); {where} {i} is {value!r}")
        out[i] = value
    return out.reshape(array.shape)


def records_arrays(records: list[Any], specs: Sequence[TensorSpec], model_name: str) -> Arrays:
    """Columns from records (objects keyed by column name). With no `specs` (a model that states
    no columns) the records' own keys are the columns, in first-seen order."""
    if not all(isinstance(r, dict) for r in records):
        raise InvalidInput("records must all be JSON objects keyed by column name")
    names = [s.name for s in specs] if specs else list(dict.fromkeys(k for r in records for k in r))
    unknown = sorted({k for r in records for k in r} - set(names))
    if unknown:
        raise InvalidInput(
            f"unknown column(s) {', '.join(unknown)}; model '{model_name}' takes {', '.join(names)}"
        )
    optional = {s.name for s in specs if s.optional}
    arrays: Arrays = {}
    for name in names:
        values = [r.get(name) for r in records]
        if all(v is None for v in values) and name in optional:
            continue
        missing_rows = [i for i, r in enumerate(records) if name not in r]
        if missing_rows and name not in optional:
            raise InvalidInput(f"column '{name}' is missing in record {missing_rows[0]}")
        arrays[name] = column_array(name, values)
    return arrays


def rows_arrays(
    rows: list[Any], columns: Sequence[str], specs: Sequence[TensorSpec], model_name: str
) -> Arrays:
    """Columns from rows (lists of values in `columns` order)."""
    width = len(columns)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise InvalidInput(
                f"row {i} must be a list of {width} values (columns {', '.join(columns)})"
            )
    return records_arrays([dict(zip(columns, row, strict=True)) for row in rows], specs, model_name)


def tabular_arrays(
    payload: dict[str, Any], specs: Sequence[TensorSpec], model_name: str
) -> Arrays | None:
    """Columns from a V1 / MLflow scoring payload, or None when it is no table: `instances`
    that are not records, for a model that states no columns (a tensor for the family to
    read)."""
    names = [s.name for s in specs]
    rows = v1_rows(payload)
    if rows.form == "dataframe_split":
        columns = rows.columns or names
        missing = [s.name for s in specs if not s.optional and s.name not in columns]
        if missing:
            raise InvalidInput(f"missing column(s) {', '.join(missing)} for model '{model_name}'")
        arrays = rows_arrays(rows.rows, columns, specs, model_name)
        return typed_text_columns(arrays, specs) if rows.csv else arrays
    if rows.form == "dataframe_records":
        if not isinstance(rows.rows, list):
            raise InvalidInput("'dataframe_records' must be a list of objects")
        return records_arrays(rows.rows, specs, model_name)
    instances = rows.rows
    if isinstance(instances, dict) and specs:
        # MLflow's `inputs` / `instances` in columnar form: {"col": [v, ...], ...}.
        return records_arrays(_columns_to_records(instances), specs, model_name)
    if not isinstance(instances, list):
        return None
    if not instances and specs:
        raise InvalidInput(f"'instances' is empty; {EMPTY_BATCH}")
    if instances and all(isinstance(r, dict) for r in instances):
        return records_arrays(instances, specs, model_name)
    if specs:
        return rows_arrays(instances, names, specs, model_name)
    return None


def _columns_to_records(columns: dict[str, Any]) -> list[dict[str, Any]]:
    lengths = {k: len(v) if isinstance(v, list) else None for k, v in columns.items()}
    if None in lengths.values() or len(set(lengths.values())) > 1:
        detail = ", ".join(
            f"'{k}' has {n if n is not None else 'no list'}" for k, n in lengths.items()
        )
        raise InvalidInput(f"columns must be lists of the same length: {detail}")
    rows = next(iter(lengths.values()), 0) or 0
    return [{k: v[i] for k, v in columns.items()} for i in range(rows)]


def typed_text_columns(arrays: Arrays, specs: Sequence[TensorSpec]) -> Arrays:
    """CSV cells (text) typed by each column's declared datatype; an empty cell is missing
    (NaN for floats)."""
    by_name = {s.name: s for s in specs}
    typed: Arrays = {}
    for name, array in arrays.items():
        spec = by_name.get(name)
        typed[name] = _typed_text(name, spec.datatype if spec else _guess(array), array)
    return typed


def _guess(array: np.ndarray) -> str:
    """A column's datatype read off its text, as pandas.read_csv infers one without a schema."""
    cells = [str(v).strip() for v in array.tolist()]
    for datatype, parse in (("INT64", int), ("FP64", float)):
        try:
            for cell in cells:
                if cell or datatype == "INT64":
                    parse(cell)
            return datatype
        except ValueError:
            continue
    return "BYTES"


def _typed_text(name: str, datatype: str, array: np.ndarray) -> np.ndarray:
    if datatype == "BYTES":
        return array
    values: list[Any] = []
    for cell in (str(v).strip() for v in array.tolist()):
        try:
            if datatype == "BOOL":
                if cell.lower() not in _TRUE | _FALSE:
                    raise ValueError(cell)
                values.append(cell.lower() in _TRUE)
            elif datatype.startswith(("INT", "UINT")):
                values.append(int(cell))
            else:
                values.append(float(cell) if cell else np.nan)
        except ValueError:
            kind = "true/false" if datatype == "BOOL" else "a number"
            raise InvalidInput(f"column '{name}' ({datatype}): '{cell}' is not {kind}") from None
    return column_array(name, values)
