"""The columns of a scikit-learn model fitted on a pandas DataFrame, and each column's datatype.

An estimator fitted on a DataFrame remembers its column names (`feature_names_in_`, scikit-learn
glossary) but not their types, and a `Pipeline(ColumnTransformer(OneHotEncoder on strings,
StandardScaler on numbers), ...)` cannot take a row of floats. Each column's V2 datatype comes
from, first match wins:

1. what the user declares: `inputs` in `kninfer.yaml` or `--input-spec` (`declared`);
2. an input example saved beside the model, as MLflow keeps one (`input_example`): strings mean
   BYTES, booleans BOOL, numbers FP64;
3. what the fitted pipeline makes knowable (`fitted`): a column whose encoder learnt string
   `categories_`, or whose imputer learnt a string `statistics_`, is BYTES;
4. otherwise FP64 (`default`).

The known string values (categories) also give the warm-up row a valid value per string column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kninfer.errors import InvalidInput, ModelLoadError
from kninfer.protocol.tables import tabular_arrays
from kninfer.protocol.tensor import TensorSpec

# What MLflow writes beside a model (mlflow.models.Model.save: input_example.json, and since
# MLflow 2.17 serving_input_example.json in the scoring server's request format).
EXAMPLE_FILES = ("input_example.json", "serving_input_example.json")
NUMERIC_COLUMN = (
    "FP64",
    "FP32",
    "FP16",
    "INT64",
    "INT32",
    "INT16",
    "INT8",
    "UINT64",
    "UINT32",
    "UINT16",
    "UINT8",
)
INTEGER_COLUMN = ("INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8")


@dataclass
class Columns:
    """The columns a DataFrame-fitted model takes, in fitted order."""

    specs: list[TensorSpec]
    sources: dict[str, str]
    known_strings: dict[str, list[str]] = field(default_factory=dict)
    example: dict[str, np.ndarray] | None = None

    @property
    def all_numeric(self) -> bool:
        return all(s.datatype in NUMERIC_COLUMN for s in self.specs)


def column_spec(name: str, datatype: str) -> TensorSpec:
    if datatype in INTEGER_COLUMN:
        accepts: tuple[str, ...] = (datatype, *[d for d in INTEGER_COLUMN if d != datatype])
    elif datatype in NUMERIC_COLUMN:
        accepts = (datatype, *[d for d in NUMERIC_COLUMN if d != datatype])
    else:
        accepts = (datatype,)
    return TensorSpec(name, datatype, (-1,), accepts=accepts)


def read_columns(
    estimator: Any, names: list[str], declared: list[TensorSpec] | None, model_dir: Path
) -> Columns:
    known = fitted_strings(estimator, names)
    example = input_example(model_dir, names)
    by_declared = {s.name: s.datatype for s in declared or ()}
    unknown = sorted(set(by_declared) - set(names))
    if unknown:
        raise ModelLoadError(
            f"declared input(s) {', '.join(unknown)} are not columns the model was fitted on "
            f"({', '.join(names)})"
        )
    specs: list[TensorSpec] = []
    sources: dict[str, str] = {}
    for name in names:
        if name in by_declared:
            datatype, source = by_declared[name], "declared"
        elif example is not None and name in example:
            datatype, source = _example_datatype(example[name]), "input_example"
        elif name in known:
            datatype, source = "BYTES", "fitted"
        else:
            datatype, source = "FP64", "default"
        specs.append(column_spec(name, datatype))
        sources[name] = source
    return Columns(specs, sources, known, example)


def _example_datatype(values: np.ndarray) -> str:
    present = [v for v in values.tolist() if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "BOOL"
    if any(isinstance(v, str) for v in present):
        return "BYTES"
    return "FP64"


def input_example(model_dir: Path, names: list[str]) -> dict[str, np.ndarray] | None:
    """Columns of the input example saved beside the model, if there is one that parses."""
    for file_name in EXAMPLE_FILES:
        path = model_dir / file_name
        if not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(doc, list):
            doc = {"dataframe_records": doc}
        elif isinstance(doc, dict) and "data" in doc and "dataframe_split" not in doc:
            doc = {"dataframe_split": doc}  # MLflow's input_example.json: pandas split orient
        if not isinstance(doc, dict):
            return None
        try:
            arrays = tabular_arrays(doc, [TensorSpec(n, "FP64", (-1,)) for n in names], "model")
        except InvalidInput:
            return None
        return arrays or None
    return None


def fitted_strings(estimator: Any, names: list[str]) -> dict[str, list[str]]:
    """Column -> the string values a fitted step learnt for it (encoder categories, imputer
    fill values), walking Pipelines and ColumnTransformers from the raw columns in."""
    found: dict[str, list[str]] = {}
    _walk(estimator, list(names), names, found)
    return found


def _walk(step: Any, columns: list[str], all_names: list[str], found: dict[str, list[str]]) -> bool:
    """Record what `step` learnt about `columns`; True if its output still is those columns
    (so the next step of a Pipeline sees them too)."""
    if hasattr(step, "steps"):  # Pipeline
        for _, inner in step.steps:
            if inner in (None, "passthrough"):
                continue
            if not _walk(inner, columns, all_names, found):
                return False
        return True
    if hasattr(step, "transformers_"):  # fitted ColumnTransformer
        for _, inner, selection in step.transformers_:
            if inner in ("drop", "passthrough"):
                continue
            _walk(inner, _selected(selection, columns, all_names), all_names, found)
        return False
    categories = getattr(step, "categories_", None)
    if categories is not None:
        for column, values in zip(columns, categories, strict=False):
            strings = [v for v in np.asarray(values).tolist() if isinstance(v, str)]
            if strings:
                found.setdefault(column, strings)
        return False
    statistics = getattr(step, "statistics_", None)
    if statistics is not None:  # SimpleImputer: preserves its columns
        for column, value in zip(columns, np.asarray(statistics).tolist(), strict=False):
            if isinstance(value, str):
                found.setdefault(column, [value])
        return True
    return False


def _selected(selection: Any, columns: list[str], all_names: list[str]) -> list[str]:
    """The column names a ColumnTransformer entry selects (names, positions, a mask, a slice)."""
    if isinstance(selection, str):
        return [selection]
    if isinstance(selection, slice):
        return list(np.asarray(columns)[selection])
    values = np.asarray(selection).tolist() if not callable(selection) else []
    if values and all(isinstance(v, bool) for v in values):
        return [c for c, keep in zip(columns, values, strict=False) if keep]
    if values and all(isinstance(v, int) for v in values):
        return [columns[i] for i in values if -len(columns) <= i < len(columns)]
    return [str(v) for v in values if str(v) in all_names]
