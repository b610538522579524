"""Feature specifications: named records in, the predictor's numeric matrix out.

A spec is `features.json` in the transformer's model directory:

    {
      "fields": [
        {"name": "sepal_length", "type": "number"},
        {"name": "age", "type": "number", "default": 40, "scale": {"mean": 38.6, "std": 13.6}},
        {"name": "income", "type": "number", "scale": {"min": 0, "max": 250000}},
        {"name": "smoker", "type": "boolean", "default": false},
        {"name": "colour", "type": "category", "categories": ["red", "green"],
         "encoding": "onehot", "handle_unknown": "error"}
      ],
      "labels": ["setosa", "versicolor", "virginica"],
      "probabilities": true,
      "extra_fields": "reject",
      "predictor_input": "input-0"
    }

- Column order is the order of `fields` (a one-hot field expands in place, one column per category,
  in the listed order; `"encoding": "ordinal"` is one column holding the category's index).
- A field with a `default` may be missing (or null) in a record; one without is required.
- `type` is `number` (any JSON number), `integer`, `boolean` or `category` (a string, or a number
  when the categories are numbers). A bool is never accepted as a number.
- `labels` name the predictor's class indices (index i -> labels[i], and predict_proba's columns in
  the same order); `probabilities` asks the predictor for `predict_proba` as well.
- `extra_fields`: `reject` (default) answers 400 for a field the spec does not name; `ignore`
  drops it.

Alternatively `"column_transformer": "preprocessor.joblib"` names a fitted scikit-learn
`ColumnTransformer` (saved with joblib next to the spec) that does the encoding and scaling; the
fields are then its input columns (`feature_names_in_`), typed from the fitted transformer (columns
of an encoder with `categories_` are categories, the rest numbers), and `fields` in the JSON may
add defaults. joblib runs code when loading: only load files you trust.

Every mistake in a record is an InvalidInput (400) naming the record's index and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kninfer.errors import InvalidInput, ModelLoadError

SPEC_FILE = "features.json"
FieldType = Literal["number", "integer", "boolean", "category"]
FIELD_TYPES = ("number", "integer", "boolean", "category")
_MISSING = object()


@dataclass
class Field:
    name: str
    type: FieldType = "number"
    default: Any = _MISSING
    categories: list[Any] = field(default_factory=list)
    encoding: Literal["onehot", "ordinal"] = "onehot"
    handle_unknown: Literal["error", "ignore"] = "error"
    scale: tuple[float, float] | None = None  # (offset, divisor): (v - offset) / divisor

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    @property
    def width(self) -> int:
        if self.type == "category" and self.encoding == "onehot":
            return len(self.categories)
        return 1

    def check(self, index: int, value: Any) -> Any:
        """`value` if it has this field's type, else InvalidInput naming record and field."""
        where = f"record {index}: field '{self.name}'"
        if self.type in ("number", "integer"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput(f"{where} must be a {self.type}, got {_describe(value)}")
            if self.type == "integer" and not float(value).is_integer():
                raise InvalidInput(f"{where} must be an integer, got {value!r}")
            if not math.isfinite(value):
                raise InvalidInput(f"{where} must be a finite number, got {value!r}")
        elif self.type == "boolean":
            if not isinstance(value, bool):
                raise InvalidInput(f"{where} must be true or false, got {_describe(value)}")
        else:
            numeric = all(isinstance(c, int | float) for c in self.categories)
            ok = isinstance(value, str) or (
                numeric and isinstance(value, int | float) and not isinstance(value, bool)
            )
            if not ok:
                raise InvalidInput(f"{where} must be a category (string), got {_describe(value)}")
            if self.categories and value not in self.categories and self.handle_unknown == "error":
                raise InvalidInput(
                    f"{where} has unknown category {value!r}; expected one of "
                    f"{', '.join(map(str, self.categories))}"
                )
        return value

    def encode(self, value: Any, out: np.ndarray) -> None:
        """Write this field's column(s) for one value into `out` (a row slice)."""
        if self.type == "category":
            position = self.categories.index(value) if value in self.categories else -1
            if self.encoding == "ordinal":
                out[0] = position
            elif position >= 0:
                out[position] = 1.0
            return
        number = float(value)
        if self.scale is not None:
            offset, divisor = self.scale
            number = (number - offset) / divisor
        out[0] = number


def _describe(value: Any) -> str:
    kind = {str: "string", bool: "boolean", list: "list", dict: "object", type(None): "null"}.get(
        type(value), type(value).__name__
    )
    return f"{kind} {json.dumps(value)}" if kind != "null" else "null"


@dataclass
class FeatureSpec:
    fields: list[Field]
    labels: list[str] | None = None
    probabilities: bool = False
    extra_fields: Literal["reject", "ignore"] = "reject"
    predictor_input: str = "input-0"
    column_transformer: Any = None

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def width(self) -> int:
        return sum(f.width for f in self.fields)

    # ---- records -> matrix -------------------------------------------------------------------

    def complete(self, records: list[Any]) -> list[dict[str, Any]]:
        """Each record checked and with defaults filled in, fields in spec order."""
        known = {f.name for f in self.fields}
        rows: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise InvalidInput(
                    f"record {index} must be a JSON object of fields, got {_describe(record)}"
                )
            if self.extra_fields == "reject":
                unknown = [k for k in record if k not in known]
                if unknown:
                    raise InvalidInput(
                        f"record {index}: unknown field '{unknown[0]}'; expected fields: "
                        f"{', '.join(self.names)}"
                    )
            row: dict[str, Any] = {}
            for spec in self.fields:
                value = record.get(spec.name)
                if value is None:
                    if spec.required:
                        raise InvalidInput(f"record {index}: missing required field '{spec.name}'")
                    row[spec.name] = spec.default
                else:
                    row[spec.name] = spec.check(index, value)
            rows.append(row)
        return rows

    def encode(self, records: list[Any]) -> np.ndarray:
        """The FP64 matrix [len(records), width] the predictor takes."""
        if not records:
            raise InvalidInput("the request has no records")
        rows = self.complete(records)
        if self.column_transformer is not None:
            return self._transform(rows)
        matrix = np.zeros((len(rows), self.width), dtype=np.float64)
        for r, row in enumerate(rows):
            column = 0
            for spec in self.fields:
                spec.encode(row[spec.name], matrix[r, column : column + spec.width])
                column += spec.width
        return matrix

    def _transform(self, rows: list[dict[str, Any]]) -> np.ndarray:
        import pandas as pd

        frame = pd.DataFrame(rows, columns=self.names)
        try:
            result = self.column_transformer.transform(frame)
        except ValueError as exc:  # e.g. an unknown category the encoder refuses
            raise InvalidInput(f"records could not be transformed: {exc}") from None
        if hasattr(result, "toarray"):
            result = result.toarray()
        return np.asarray(result, dtype=np.float64)

    # ---- predictor outputs -> labels --------------------------------------------------------

    def label_of(self, value: Any) -> Any:
        """A class index as its label (labels given), anything else as plain JSON."""
        if isinstance(value, bytes):
            return value.decode()
        if isinstance(value, np.generic):
            value = value.item()
        if self.labels is not None and isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(self.labels):
                from kninfer.errors import UpstreamError

                raise UpstreamError(
                    f"predictor returned class {value} but the feature spec names "
                    f"{len(self.labels)} labels"
                )
            return self.labels[value]
        return value

    def probability_names(self, columns: int) -> list[str]:
        if self.labels is not None and len(self.labels) == columns:
            return list(self.labels)
        return [str(i) for i in range(columns)]

    # ---- loading -----------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> FeatureSpec:
        path = directory / SPEC_FILE
        if not path.is_file():
            raise ModelLoadError(f"no feature spec: {path} does not exist")
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            raise ModelLoadError(f"{path} is not valid JSON: {exc}") from None
        return cls.from_dict(doc, directory)

    @classmethod
    def from_dict(cls, doc: Any, directory: Path | None = None) -> FeatureSpec:
        if not isinstance(doc, dict):
            raise ModelLoadError("a feature spec is a JSON object with 'fields'")
        extra = doc.get("extra_fields", "reject")
        if extra not in ("reject", "ignore"):
            raise ModelLoadError("'extra_fields' must be 'reject' or 'ignore'")
        labels = doc.get("labels")
        if labels is not None and not (
            isinstance(labels, list) and all(isinstance(x, str) for x in labels)
        ):
            raise ModelLoadError("'labels' must be a list of strings")
        fields = [_field(item, i) for i, item in enumerate(doc.get("fields") or [])]
        column_transformer = None
        if doc.get("column_transformer"):
            if directory is None:
                raise ModelLoadError("'column_transformer' needs a spec directory")
            column_transformer, fields = _column_transformer(
                directory, str(doc["column_transformer"]), fields
            )
        if not fields:
            raise ModelLoadError("the feature spec names no fields")
        seen: set[str] = set()
        for spec in fields:
            if spec.name in seen:
                raise ModelLoadError(f"field '{spec.name}' appears twice in the feature spec")
            seen.add(spec.name)
            if not spec.required:
                try:
                    spec.check(0, spec.default)
                except InvalidInput:
                    raise ModelLoadError(
                        f"field '{spec.name}': default {spec.default!r} is not a valid {spec.type}"
                    ) from None
        return cls(
            fields=fields,
            labels=labels,
            probabilities=bool(doc.get("probabilities", False)),
            extra_fields=extra,
            predictor_input=str(doc.get("predictor_input", "input-0")),
            column_transformer=column_transformer,
        )


def _field(item: Any, position: int) -> Field:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ModelLoadError(f"fields[{position}] must be an object with a 'name'")
    name = item["name"]
    kind = item.get("type", "number")
    if kind not in FIELD_TYPES:
        raise ModelLoadError(f"field '{name}': type must be one of {', '.join(FIELD_TYPES)}")
    spec = Field(name=name, type=kind)
    if kind == "category":
        categories = item.get("categories")
        if not isinstance(categories, list) or not categories:
            raise ModelLoadError(f"field '{name}': a category field needs 'categories'")
        spec.categories = categories
        spec.encoding = item.get("encoding", "onehot")
        spec.handle_unknown = item.get("handle_unknown", "error")
        if spec.encoding not in ("onehot", "ordinal"):
            raise ModelLoadError(f"field '{name}': encoding must be 'onehot' or 'ordinal'")
        if spec.handle_unknown not in ("error", "ignore"):
            raise ModelLoadError(f"field '{name}': handle_unknown must be 'error' or 'ignore'")
    scale = item.get("scale")
    if scale is not None:
        spec.scale = _scale(name, scale)
    if "default" in item and item["default"] is not None:
        spec.default = item["default"]  # checked once the field's type is final (from_dict)
    return spec


def _scale(name: str, scale: Any) -> tuple[float, float]:
    if isinstance(scale, dict) and {"mean", "std"} <= scale.keys():
        offset, divisor = float(scale["mean"]), float(scale["std"])
    elif isinstance(scale, dict) and {"min", "max"} <= scale.keys():
        offset, divisor = float(scale["min"]), float(scale["max"]) - float(scale["min"])
    else:
        raise ModelLoadError(f"field '{name}': scale is {{mean, std}} or {{min, max}}")
    if divisor == 0:
        raise ModelLoadError(f"field '{name}': scale divides by zero")
    return offset, divisor


def _column_transformer(
    directory: Path, file_name: str, declared: list[Field]
) -> tuple[Any, list[Field]]:
    """Load a fitted ColumnTransformer and type its input columns from it."""
    import joblib

    from kninfer.storage import model_file

    path = model_file(directory, file_name)
    try:
        transformer = joblib.load(path)
    except Exception as exc:
        raise ModelLoadError(f"could not load {path}: {type(exc).__name__}: {exc}") from None
    names = getattr(transformer, "feature_names_in_", None)
    if not hasattr(transformer, "transform") or names is None:
        raise ModelLoadError(
            f"{path.name} must hold a ColumnTransformer fitted on a pandas DataFrame "
            "(so that it knows its input column names)"
        )
    categories: dict[str, list[Any]] = {}
    ignore_unknown: set[str] = set()
    for _, step, columns in getattr(transformer, "transformers_", []):
        encoder = step
        if hasattr(step, "steps"):  # a Pipeline: its encoder step, if any
            encoder = next((s for _, s in step.steps if hasattr(s, "categories_")), step)
        if not hasattr(encoder, "categories_") or isinstance(columns, str):
            continue
        for column, values in zip(columns, encoder.categories_, strict=False):
            categories[str(column)] = [v.item() if isinstance(v, np.generic) else v for v in values]
            if getattr(encoder, "handle_unknown", "error") != "error":
                ignore_unknown.add(str(column))
    by_name = {f.name: f for f in declared}
    fields: list[Field] = []
    for name in map(str, names):
        spec = by_name.pop(name, None) or Field(name=name)
        if name in categories:
            spec.type = "category"
            spec.categories = categories[name]
            spec.handle_unknown = "ignore" if name in ignore_unknown else "error"
        fields.append(spec)
    if by_name:
        raise ModelLoadError(
            f"fields {', '.join(by_name)} are not input columns of {path.name} "
            f"({', '.join(map(str, names))})"
        )
    return transformer, fields
