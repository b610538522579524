"""The inputs a compiled model takes, and the rows it is verified on.

Inputs are the V2 ones kninfer serves for the estimator (kninfer.predictors.sklearn_columns):
a model fitted on a pandas DataFrame takes one input per column, named by the column, BYTES for
a string column and FP64 for a numeric one, shape [-1]; a model fitted on an array takes one
FP64 `input-0` of shape [-1, n_features]. A column is a string column when a fitted step learnt
strings for it (encoder categories, an imputer's fill value) or the rows given hold strings.

Verification rows come from, first match wins: the --sample file; else the input example saved
with the model, topped up with generated rows when they can be made; else rows generated from
what the fitted model knows of each column, uniform within it:
- categories a fitted OneHotEncoder or OrdinalEncoder learnt;
- the range a fitted scaler implies (StandardScaler: mean +- 3 standard deviations; RobustScaler:
  center +- 3 scales; MinMaxScaler: the fitted min and max; MaxAbsScaler: +- the max);
- the split thresholds of the trees that read the column as given (a bare tree model, or one
  behind imputers only), widened a little on each side so both branches are taken;
- NaN in some rows of a column a fitted SimpleImputer fills, so the imputation is verified too.
A column none of these describes cannot be made up: the sample is then required.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kninfer.compile.errors import STILL_SERVED, NotConvertible
from kninfer.errors import InvalidInput
from kninfer.protocol.tensor import TensorSpec

MATRIX_INPUT = "input-0"
GENERATED_SEED = 0
# Share of generated rows left missing in a column an imputer fills.
MISSING_SHARE = 0.1
# Generated values reach this many scales either side of a StandardScaler's or RobustScaler's
# center: the bulk of the data and its tails.
SCALES = 3.0
SCALERS = frozenset({"StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler"})


@dataclass
class Layout:
    """How the estimator takes its rows: named columns (fitted on a DataFrame) or one matrix."""

    columns: list[str] | None
    n_features: int
    # String columns (BYTES inputs), known from the fitted steps and the rows given.
    strings: set[str] = field(default_factory=set)

    @property
    def keys(self) -> list[Any]:
        """Column names, or feature positions for a matrix."""
        return list(self.columns) if self.columns is not None else list(range(self.n_features))

    def inputs(self) -> list[TensorSpec]:
        if self.columns is None:
            return [TensorSpec(MATRIX_INPUT, "FP64", (-1, self.n_features))]
        return [
            TensorSpec(c, "BYTES" if c in self.strings else "FP64", (-1,)) for c in self.columns
        ]


@dataclass
class Facts:
    """What the fitted model tells of one column."""

    categories: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    # Where the range came from, for compile.json.
    origin: str | None = None
    missing: bool = False
    strings: bool = False

    @property
    def describable(self) -> bool:
        return bool(self.categories) or self.low is not None


@dataclass
class RowSet:
    """The verification rows: a DataFrame in the model's column order (FP64 columns as float64,
    BYTES as str objects) or a float64 matrix; what each row is for the report."""

    rows: Any
    labels: list[str]
    sources: list[dict[str, Any]]
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.labels)


def layout_of(estimator: Any) -> Layout:
    if _is_text_model(estimator):
        raise NotConvertible(
            f"{type(estimator).__name__} starts with a text vectorizer: kninfer compile does not "
            "compile text pipelines (ONNX's tokenizer splits words differently from "
            f"scikit-learn's); {STILL_SERVED}"
        )
    names = getattr(estimator, "feature_names_in_", None)
    n_features = getattr(estimator, "n_features_in_", None)
    if names is not None:
        columns = [str(n) for n in names]
        return Layout(columns, len(columns))
    if not isinstance(n_features, int | np.integer):
        raise NotConvertible(
            f"{type(estimator).__name__} does not say how many features it "
            f"takes (no n_features_in_: is it fitted?); {STILL_SERVED}"
        )
    return Layout(None, int(n_features))


def _is_text_model(estimator: Any) -> bool:
    """A model whose first step takes raw strings, as the sklearn family detects it."""
    from kninfer.predictors.sklearn import text_vectorizer

    return text_vectorizer(estimator) is not None


# ---- what the fitted steps know ---------------------------------------------------------------


def fitted_facts(estimator: Any, layout: Layout) -> dict[Any, Facts]:
    """Column (name or position) -> what the fitted steps that read it as given learnt."""
    facts = {key: Facts() for key in layout.keys}
    _walk(estimator, layout.keys, facts, raw=True)
    layout.strings |= {k for k, f in facts.items() if f.strings and isinstance(k, str)}
    return facts


def _walk(step: Any, keys: list[Any], facts: dict[Any, Facts], raw: bool) -> tuple[bool, bool]:
    """Record what `step` learnt about the columns `keys`. Returns (its output still is those
    columns, their values are still the raw ones) for the next step of a Pipeline."""
    if step is None or isinstance(step, str):  # "passthrough" in a Pipeline
        return True, raw
    if hasattr(step, "steps"):  # Pipeline
        for _, inner in step.steps:
            kept, raw = _walk(inner, keys, facts, raw)
            if not kept:
                return False, False
        return True, raw
    if hasattr(step, "transformers_"):  # fitted ColumnTransformer
        for _, inner, selection in step.transformers_:
            if not isinstance(inner, str):  # "drop" and "passthrough" learnt nothing
                _walk(inner, _selected(selection, keys), facts, raw)
        return False, False
    categories = getattr(step, "categories_", None)
    if categories is not None:  # OneHotEncoder, OrdinalEncoder
        for key, values in zip(keys, categories, strict=False):
            known = [v for v in np.asarray(values, dtype=object).tolist() if not _missing(v)]
            if any(isinstance(v, str) for v in known):
                facts[key].strings = True
            if facts[key].categories is None and known:
                facts[key].categories = known
        return False, False
    statistics = getattr(step, "statistics_", None)
    if statistics is not None and hasattr(step, "missing_values"):  # SimpleImputer
        values = np.asarray(statistics, dtype=object).tolist()
        fills_nan = _missing(step.missing_values)
        for key, value in zip(keys, values, strict=False):
            if isinstance(value, str):
                facts[key].strings = True
            elif fills_nan:
                facts[key].missing = True
        # An indicator adds columns, and an all-missing column (NaN statistic) is dropped.
        kept = getattr(step, "indicator_", None) is None and not any(
            not isinstance(v, str) and _missing(v) for v in values
        )
        return kept, raw
    spans = _scaler_spans(step, len(keys))
    if spans is not None:
        for key, span in zip(keys, spans, strict=False):
            if span is not None and facts[key].low is None:
                facts[key].low, facts[key].high = span
                facts[key].origin = type(step).__name__
        return True, False
    if raw:
        _tree_spans(step, keys, facts)
    return False, False


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _selected(selection: Any, keys: list[Any]) -> list[Any]:
    """The columns a ColumnTransformer entry selects: names, positions, a mask or a slice;
    none for a selector it resolved itself (a callable)."""
    if isinstance(selection, str | int):
        selection = [selection]
    if isinstance(selection, slice):
        return keys[selection] if not isinstance(selection.start, str) else []
    if callable(selection):
        return []
    values = np.asarray(selection, dtype=object).tolist()
    if values and all(isinstance(v, bool) for v in values):
        return [k for k, keep in zip(keys, values, strict=False) if keep]
    chosen: list[Any] = []
    for value in values:
        if isinstance(value, int) and -len(keys) <= value < len(keys):
            chosen.append(keys[value])
        elif isinstance(value, str) and value in keys:
            chosen.append(value)
    return chosen


def _scaler_spans(step: Any, width: int) -> list[tuple[float, float] | None] | None:
    """Per column, the range a fitted scaler's statistics imply; None when `step` is not one."""
    name = type(step).__name__
    if not type(step).__module__.startswith("sklearn.preprocessing") or name not in SCALERS:
        return None
    if name == "MinMaxScaler":
        return _pairs(step.data_min_, step.data_max_)
    if name == "MaxAbsScaler":
        top = np.asarray(step.max_abs_, dtype=float)
        return _pairs(-top, top)
    center = getattr(step, "center_" if name == "RobustScaler" else "mean_", None)
    scale = getattr(step, "scale_", None)
    if center is None or scale is None:
        return [None] * width
    center, scale = np.asarray(center, dtype=float), np.asarray(scale, dtype=float)
    return _pairs(center - SCALES * scale, center + SCALES * scale)


def _pairs(low: Any, high: Any) -> list[tuple[float, float] | None]:
    return [
        (float(a), float(b)) if math.isfinite(a) and math.isfinite(b) else None
        for a, b in zip(
            np.asarray(low, dtype=float).tolist(),
            np.asarray(high, dtype=float).tolist(),
            strict=True,
        )
    ]


def _tree_spans(step: Any, keys: list[Any], facts: dict[Any, Facts]) -> None:
    """Ranges from the split thresholds of a tree model reading the columns as given; a column
    no tree splits on takes any value without changing a prediction."""
    trees = _trees(step)
    if not trees:
        return
    low = np.full(len(keys), np.inf)
    high = np.full(len(keys), -np.inf)
    for tree in trees:
        split = tree.feature >= 0
        features, thresholds = tree.feature[split], tree.threshold[split]
        np.minimum.at(low, features, thresholds)
        np.maximum.at(high, features, thresholds)
    for position, key in enumerate(keys):
        if facts[key].low is not None:
            continue
        a, b = float(low[position]), float(high[position])
        if not math.isfinite(a):
            a, b = 0.0, 1.0
        pad = 0.1 * (b - a) if b > a else max(abs(b) * 0.1, 1.0)
        facts[key].low, facts[key].high = a - pad, b + pad
        facts[key].origin = "tree thresholds"


def _trees(step: Any) -> list[Any]:
    """The sklearn.tree Tree objects of a tree, a forest or a gradient boosting model."""
    tree = getattr(step, "tree_", None)
    if tree is not None:
        return [tree]
    members = getattr(step, "estimators_", None)
    if members is None or not type(step).__module__.startswith("sklearn.ensemble"):
        return []
    found = [getattr(m, "tree_", None) for m in np.asarray(members, dtype=object).ravel()]
    return [t for t in found if t is not None] if all(t is not None for t in found) else []


# ---- rows given -------------------------------------------------------------------------------


def read_table(path: Path, layout: Layout) -> Any:
    """A --sample or input-example file as a pandas DataFrame (named columns, or positions 0..k
    for rows given without names)."""
    import pandas as pd

    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            header: int | None = 0
            if layout.columns is None and _numbers_only(path):
                header = None  # a matrix saved without a header row (numpy.savetxt)
            # Known string columns stay text: "01234" is a category, not 1234.
            text = {c: str for c in layout.strings}
            return pd.read_csv(path, header=header, dtype=text or None)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".json":
            return _json_table(json.loads(path.read_text()), path)
    except ImportError as exc:
        raise InvalidInput(f"{path}: reading {suffix} files needs {exc.name or exc}") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path}: cannot read it: {exc}") from None
    raise InvalidInput(f"{path}: a sample is a .csv, .parquet or .json file")


def _numbers_only(path: Path) -> bool:
    with path.open() as f:
        first = f.readline()
    try:
        [float(cell) for cell in first.split(",")]
    except ValueError:
        return False
    return True


def _json_table(doc: Any, path: Path) -> Any:
    """Rows in JSON: a list of records or of rows, pandas' split orient (MLflow's
    input_example.json), or those wrapped as V1 `instances`, `inputs` or MLflow's
    `dataframe_split` / `dataframe_records`."""
    import pandas as pd

    if isinstance(doc, dict):
        for key in ("dataframe_split", "dataframe_records", "instances", "inputs"):
            if key in doc:
                doc = doc[key]
                break
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        return pd.DataFrame(doc["data"], columns=doc.get("columns"))
    if isinstance(doc, list) and doc and all(isinstance(r, dict) for r in doc):
        return pd.DataFrame.from_records(doc)
    if isinstance(doc, list) and doc and all(isinstance(r, list) for r in doc):
        return pd.DataFrame(doc)
    raise InvalidInput(
        f'{path}: expected rows: a list of records ({{"column": value}}), a '
        'list of rows, or {"columns": [...], "data": [[...]]}'
    )


def note_declared(declared: list[TensorSpec] | None, layout: Layout) -> None:
    """The inputs kninfer.yaml or --input-spec declare, as `kninfer serve` reads them: a column
    declared BYTES is a string column, one declared numeric is not, whatever the rows or the
    fitted steps suggest. A declaration for a matrix model, or of a column the model was not
    fitted on, is refused: the graph would not take what serve states."""
    if not declared:
        return
    if layout.columns is None:
        if len(declared) != 1 or declared[0].datatype == "BYTES":
            raise InvalidInput(
                "the model was fitted on a matrix: declare one numeric input of shape "
                f"[-1, {layout.n_features}], as `kninfer serve` takes it"
            )
        return
    unknown = [spec.name for spec in declared if spec.name not in layout.columns]
    if unknown:
        raise InvalidInput(
            f"declared input(s) {', '.join(unknown)} are not columns the model was fitted on "
            f"({', '.join(layout.columns)})"
        )
    for spec in declared:
        if spec.datatype == "BYTES":
            layout.strings.add(spec.name)
        else:
            layout.strings.discard(spec.name)


def note_strings(table: Any, layout: Layout) -> None:
    """Columns the given rows hold as text are string columns too."""
    if layout.columns is None:
        return
    for name in layout.columns:
        if name not in table.columns:
            continue
        dtype = table[name].dtype
        if dtype.kind in "OSU" or str(dtype) in ("string", "category"):
            layout.strings.add(name)


def given_rows(table: Any, layout: Layout, source: str, limit: int) -> RowSet:
    """The first `limit` rows of a table as the model takes them. A row with a missing string is
    left out: an ONNX string tensor has no missing value."""
    table = table.iloc[:limit]
    if layout.columns is None:
        return _matrix_rows(table, layout, source)
    import pandas as pd

    if list(table.columns) == list(range(table.shape[1])):  # rows without names
        if table.shape[1] != len(layout.columns):
            raise InvalidInput(
                f"the {source} rows have {table.shape[1]} values each; the model "
                f"takes {len(layout.columns)} columns ({', '.join(layout.columns)})"
            )
        table = table.set_axis(layout.columns, axis=1)
    absent = [c for c in layout.columns if c not in table.columns]
    if absent:
        raise InvalidInput(
            f"the {source} lacks column(s) {', '.join(absent)}; the model was "
            f"fitted on {', '.join(layout.columns)}"
        )
    keep = np.ones(len(table), dtype=bool)
    columns: dict[str, np.ndarray] = {}
    for name in layout.columns:
        values = table[name]
        if name in layout.strings:
            array = values.astype(object).to_numpy()
            for i, value in enumerate(array.tolist()):
                if _missing(value) or value is pd.NA:
                    keep[i] = False
                elif not isinstance(value, str):
                    raise InvalidInput(
                        f"the {source}'s column '{name}' holds {value!r} in row "
                        f"{i}; the model takes strings there"
                    )
            columns[name] = array
        elif values.dtype.kind == "b":
            raise NotConvertible(
                f"column '{name}' holds booleans: skl2onnx takes numbers or "
                f"strings per column; {STILL_SERVED}"
            )
        else:
            try:
                columns[name] = values.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                raise InvalidInput(f"the {source}'s column '{name}' is not numeric") from None
    frame = pd.DataFrame(columns, columns=layout.columns)[keep].reset_index(drop=True)
    labels = [f"{source} row {i}" for i in np.flatnonzero(keep).tolist()]
    return RowSet(frame, labels, [{"source": source, "rows": len(labels)}], int((~keep).sum()))


def _matrix_rows(table: Any, layout: Layout, source: str) -> RowSet:
    if table.shape[1] != layout.n_features:
        raise InvalidInput(
            f"the {source} rows have {table.shape[1]} values each; the model "
            f"takes {layout.n_features} features"
        )
    try:
        matrix = table.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise InvalidInput(f"the {source} rows are not all numbers") from None
    labels = [f"{source} row {i}" for i in range(len(matrix))]
    return RowSet(matrix, labels, [{"source": source, "rows": len(labels)}])


# ---- rows made up -----------------------------------------------------------------------------


def undescribed(layout: Layout, facts: dict[Any, Facts]) -> list[str]:
    """The columns no fitted step describes: rows cannot be generated for them."""
    return [
        str(k) if layout.columns is not None else f"feature {k}"
        for k in layout.keys
        if not facts[k].describable
    ]


def generated_rows(layout: Layout, facts: dict[Any, Facts], count: int) -> RowSet:
    missing = undescribed(layout, facts)
    if missing:
        raise InvalidInput(
            f"cannot make up verification rows for {', '.join(missing)}: no fitted encoder, "
            "scaler or tree tells their values; give real rows with --sample FILE "
            "(.csv, .parquet or .json)"
        )
    rng = np.random.default_rng(GENERATED_SEED)
    columns: list[np.ndarray] = []
    origins: dict[str, str] = {}
    for key in layout.keys:
        fact = facts[key]
        if fact.categories:
            values = np.empty(count, dtype=object)
            values[:] = [fact.categories[i] for i in rng.integers(len(fact.categories), size=count)]
            if not any(isinstance(v, str) for v in fact.categories):
                values = values.astype(np.float64)
            origins[str(key)] = "encoder categories"
        else:
            assert fact.low is not None and fact.high is not None
            values = rng.uniform(fact.low, fact.high, count)
            if fact.missing:
                values[rng.random(count) < MISSING_SHARE] = np.nan
            origins[str(key)] = str(fact.origin)
        columns.append(values)
    labels = [f"generated row {i}" for i in range(count)]
    account = {
        "source": "generated",
        "rows": count,
        "seed": GENERATED_SEED,
        "values_from": sorted(set(origins.values())),
    }
    if layout.columns is None:
        return RowSet(np.column_stack(columns).astype(np.float64), labels, [account])
    import pandas as pd

    return RowSet(pd.DataFrame(dict(zip(layout.columns, columns, strict=True))), labels, [account])


def joined(first: RowSet, second: RowSet) -> RowSet:
    if isinstance(first.rows, np.ndarray):
        rows: Any = np.concatenate([first.rows, second.rows])
    else:
        import pandas as pd

        rows = pd.concat([first.rows, second.rows], ignore_index=True)
    return RowSet(
        rows,
        first.labels + second.labels,
        first.sources + second.sources,
        first.skipped + second.skipped,
    )


def feed(rows: RowSet, layout: Layout) -> dict[str, np.ndarray]:
    """The ONNX Runtime inputs for the rows, as a V2 request carries them: [N] per column (str
    objects or float64), or the [N, n_features] float64 matrix."""
    if layout.columns is None:
        return {MATRIX_INPUT: np.asarray(rows.rows, dtype=np.float64)}
    return {
        name: rows.rows[name].to_numpy(dtype=object if name in layout.strings else np.float64)
        for name in layout.columns
    }
