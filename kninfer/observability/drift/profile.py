"""The reference profile: what the training data looked like, bin by bin, in `drift_profile.json`.

A profile holds, per served input feature and for the model's output:

- numbers: quantile bin edges of the reference data (`bins` bins, 10 by default: the interior
  deciles, duplicates removed, so a feature with few distinct values gets fewer bins), the
  reference count and proportion per bin, the training minimum and maximum, the share missing;
- strings, booleans and class labels: the `top_categories` most frequent values (20 by default)
  and one `__other__` bin for the rest, their counts and proportions, every other value seen in
  training (so a value never seen can be told from a rare one), the share missing.

Bins are right-closed, `(e[i-1], e[i]]`, with the first open to -inf and the last to +inf:
`numpy.searchsorted(edges, x, side="left")` gives a value's bin, here and in the server (same
function, same floats read back from JSON), so the reference proportions are exactly what the
server's counting would have produced on the training data.

Feature names are the V2 input names kninfer serves (kninfer.predictors.sklearn): one per
DataFrame column, by column name; for a model fitted on an array, the matrix `input-0`'s
columns `input-0[0]`, `input-0[1]`, ... An all-numeric DataFrame model also takes its columns as
one `input-0` matrix; the profile's `matrix` entry maps that tensor's columns onto the column
features, so either form of request counts into the same bins. The output is named
`output:<tensor>` (`output:predict`), `output:<tensor>[<column>]` for one column of a 2-D output.

Nothing here imports pandas or a model framework unless a DataFrame is passed in.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kninfer.observability.drift.location import PROFILE_FILE

FORMAT = "kninfer-drift-profile"
FORMAT_VERSION = 1
DEFAULT_BINS = 10
DEFAULT_TOP_CATEGORIES = 20
# Distinct training values kept to tell an unknown category from a rare one; past this many a
# column is an identifier or free text, and unknown values are not counted for it.
MAX_KNOWN_CATEGORIES = 1000
# The live window the server compares with the reference (kninfer.observability.drift.monitor).
DEFAULT_WINDOW_ROWS = 1000
DEFAULT_WINDOW_BLOCKS = 10
# The proportion put in place of an empty bin before PSI divides by it or takes its log:
# Evidently's 0.0001 (evidently.calculations.stattests.utils.get_binned_data, `feel_zeroes`).
EPSILON = 1e-4
OTHER = "__other__"
OUTPUT_PREFIX = "output:"
MATRIX_INPUT = "input-0"

Kind = Literal["numeric", "categorical"]
# None as numpy compares it elementwise in an object array (np.equal(values, NONE)).
NONE: Any = None


class ProfileError(ValueError):
    """A profile that cannot be built or read."""


@dataclass(frozen=True)
class Window:
    """The server's recent window: the last `rows` rows, kept as `blocks` blocks of bin counts
    (rows // blocks rows each); PSI is exported once the window holds `min_rows`."""

    rows: int = DEFAULT_WINDOW_ROWS
    min_rows: int = DEFAULT_WINDOW_ROWS
    blocks: int = DEFAULT_WINDOW_BLOCKS

    def __post_init__(self) -> None:
        if self.rows < 1 or self.blocks < 1:
            raise ProfileError(
                f"window: rows ({self.rows}) and blocks ({self.blocks}) must be at least 1"
            )
        if not 1 <= self.min_rows <= self.rows:
            raise ProfileError(
                f"window: min_rows ({self.min_rows}) must be between 1 and the "
                f"window's rows ({self.rows})"
            )

    @property
    def block_rows(self) -> int:
        return max(1, self.rows // self.blocks)

    @property
    def block_count(self) -> int:
        """Blocks kept: the window is `size` rows, `rows` rounded down to a multiple of the
        block (at least one block)."""
        return max(1, self.rows // self.block_rows)

    @property
    def size(self) -> int:
        return self.block_rows * self.block_count

    @property
    def threshold(self) -> int:
        """Rows the window must hold before PSI is exported: `min_rows`, at most `size`."""
        return min(self.min_rows, self.size)


@dataclass(frozen=True)
class Feature:
    """One profiled value: an input column, a matrix column, or the output."""

    name: str
    # The request input (or the output) it is read from, and the column of a 2-D tensor.
    tensor: str
    column: int | None
    kind: Kind
    counts: tuple[int, ...]
    missing: float = 0.0
    # numeric
    edges: tuple[float, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    # categorical: the bins' categories (then OTHER), the rest of the values seen in training
    categories: tuple[str, ...] = ()
    other_known: tuple[str, ...] = ()
    unknown_counted: bool = True
    # Lookup tables for assign(), built once.
    _sorted: np.ndarray = field(init=False, repr=False, compare=False)
    _sorted_bins: np.ndarray = field(init=False, repr=False, compare=False)
    _edges: np.ndarray = field(init=False, repr=False, compare=False)
    _extended: np.ndarray = field(init=False, repr=False, compare=False)
    _sorted_ints: np.ndarray | None = field(init=False, repr=False, compare=False)
    _int_bins: np.ndarray | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.counts) != self.bins:
            raise ProfileError(
                f"feature '{self.name}': {len(self.counts)} counts for {self.bins} bins"
            )
        if sum(self.counts) <= 0 or min(self.counts) < 0:
            raise ProfileError(f"feature '{self.name}': no reference values")
        edges = np.asarray(self.edges, dtype=np.float64)
        if self.kind == "numeric" and (
            self.minimum is None or self.maximum is None or bool((np.diff(edges) <= 0).any())
        ):
            raise ProfileError(
                f"feature '{self.name}': needs increasing edges, a minimum and a maximum"
            )
        object.__setattr__(self, "_edges", edges)
        if self.kind == "numeric":
            assert self.minimum is not None and self.maximum is not None
            # For tally(): below the minimum is <= the float just under it.
            low = np.nextafter(self.minimum, -np.inf)
            object.__setattr__(self, "_extended", np.asarray([low, *edges, self.maximum]))
        known = [*self.categories, *self.other_known]
        order = sorted(range(len(known)), key=known.__getitem__)
        top = len(self.categories)
        object.__setattr__(self, "_sorted", np.asarray([known[i] for i in order], dtype=str))
        # Integer labels (a classifier's 0, 1, 2): looked up as integers, skipping the
        # conversion to text, when every known category is an integer as str() writes it, so
        # the result is the same as by text.
        ints, int_bins = None, None
        if known and all(_is_int_text(k) for k in known):
            by_value = sorted(range(len(known)), key=lambda i: int(known[i]))
            ints = np.asarray([int(known[i]) for i in by_value], dtype=np.int64)
            int_bins = np.asarray([min(i, top) for i in by_value], dtype=np.intp)
        object.__setattr__(self, "_sorted_ints", ints)
        object.__setattr__(self, "_int_bins", int_bins)
        object.__setattr__(
            self, "_sorted_bins", np.asarray([i if i < top else top for i in order], dtype=np.intp)
        )

    @property
    def bins(self) -> int:
        return len(self.edges) + 1 if self.kind == "numeric" else len(self.categories) + 1

    @property
    def proportions(self) -> np.ndarray:
        counts = np.asarray(self.counts, dtype=np.float64)
        return counts / counts.sum()

    def bin_labels(self) -> list[str]:
        """The `bin` label values: the bin's index for numbers (its bounds are in the profile),
        the category itself for categories, then OTHER."""
        if self.kind == "numeric":
            return [str(i) for i in range(self.bins)]
        return [*self.categories, OTHER]

    def assign(self, values: np.ndarray) -> tuple[np.ndarray, int]:
        """Each value's bin, or `bins` (one past the last) for a missing value; and how many
        values are outside what training saw (below its minimum or above its maximum for
        numbers, a category never seen for categories). Vectorised: no loop over rows."""
        if self.kind == "numeric":
            x = numeric_values(values)
            missing = np.isnan(x)
            index = np.searchsorted(self._edges, x, side="left")
            assert self.minimum is not None and self.maximum is not None
            outside = (x < self.minimum) | (x > self.maximum)  # NaN compares False
            if missing.any():
                index[missing] = self.bins
            return index, int(np.count_nonzero(outside))
        known_ints, int_bins = self._sorted_ints, self._int_bins
        if known_ints is not None and int_bins is not None and values.dtype.kind in "iu":
            flat = values.reshape(-1)
            at = np.minimum(np.searchsorted(known_ints, flat), len(known_ints) - 1)
            found = known_ints[at] == flat
            return (
                np.where(found, int_bins[at], self.bins - 1),
                int(np.count_nonzero(~found)) if self.unknown_counted else 0,
            )
        strings, missing = category_values(values)
        index = np.full(len(missing), self.bins, dtype=np.intp)
        if not len(strings):
            return index, 0
        known = self._sorted
        if not len(known):  # a reference of OTHER only (a hand-edited profile)
            index[~missing] = self.bins - 1
            return index, len(strings) if self.unknown_counted else 0
        at = np.minimum(np.searchsorted(known, strings), len(known) - 1)
        found = known[at] == strings
        index[~missing] = np.where(found, self._sorted_bins[at], self.bins - 1)
        unknown = int(np.count_nonzero(~found)) if self.unknown_counted else 0
        return index, unknown

    def tally(self, values: np.ndarray) -> tuple[np.ndarray, int]:
        """`assign` summed: the count per bin then the missing count (`bins + 1` counts), and
        the values outside what training saw. For numbers, one searchsorted over the edges
        framed by the training minimum and maximum and one bincount give all of it."""
        if self.kind != "numeric":
            index, outside = self.assign(values)
            return np.bincount(index, minlength=self.bins + 1), outside
        x = numeric_values(values)
        k = len(self.edges)
        # Positions in [low, e1..ek, max]: 0 below the minimum, 1..k+1 the bins (1 and k+1
        # also hold the minimum and maximum themselves), k+2 above the maximum, or NaN.
        found = np.bincount(np.searchsorted(self._extended, x, side="left"), minlength=k + 3)
        above = int(found[k + 2])
        missing = int(np.count_nonzero(np.isnan(x))) if above else 0
        counts = np.empty(k + 2, dtype=np.int64)
        counts[: k + 1] = found[1 : k + 2]
        counts[0] += found[0]
        counts[k] += above - missing
        counts[k + 1] = missing
        return counts, int(found[0]) + above - missing

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "tensor": self.tensor,
            "column": self.column,
            "kind": self.kind,
            "bins": self.bins_json(),
            "counts": list(self.counts),
            "proportions": [round(float(p), 6) for p in self.proportions],
            "missing": self.missing,
        }
        if self.kind == "numeric":
            doc.update(edges=list(self.edges), min=self.minimum, max=self.maximum)
        else:
            doc.update(other_known=list(self.other_known), unknown_counted=self.unknown_counted)
        return doc

    def bins_json(self) -> list[str]:
        """Readable bins for the file: `(-inf, 1.5]`, `(1.5, 2.25]`, ... or the categories."""
        if self.kind == "categorical":
            return self.bin_labels()
        bounds = [-math.inf, *self.edges, math.inf]
        return [
            f"({bounds[i]:g}, {bounds[i + 1]:g}{')' if i == len(self.edges) else ']'}"
            for i in range(self.bins)
        ]

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Feature:
        try:
            kind = doc["kind"]
            if kind not in ("numeric", "categorical"):
                raise ProfileError(f"feature '{doc.get('name')}': unknown kind {kind!r}")
            common: dict[str, Any] = dict(
                name=str(doc["name"]),
                tensor=str(doc["tensor"]),
                column=None if doc.get("column") is None else int(doc["column"]),
                kind=kind,
                counts=tuple(int(c) for c in doc["counts"]),
                missing=float(doc["missing"]),
            )
            if kind == "numeric":
                return cls(
                    **common,
                    edges=tuple(float(e) for e in doc["edges"]),
                    minimum=float(doc["min"]),
                    maximum=float(doc["max"]),
                )
            # Categories are the bins' labels less OTHER (kept once, in `bins`).
            categories = [str(c) for c in doc["bins"]]
            if not categories or categories[-1] != OTHER:
                raise ProfileError(f"feature '{doc['name']}': the last bin must be {OTHER}")
            return cls(
                **common,
                categories=tuple(categories[:-1]),
                other_known=tuple(str(c) for c in doc.get("other_known", ())),
                unknown_counted=bool(doc.get("unknown_counted", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(
                f"a feature entry is malformed ({type(exc).__name__}: {exc})"
            ) from None


@dataclass(frozen=True)
class Profile:
    """A reference profile: input features, the model's output, the window the server keeps."""

    features: tuple[Feature, ...]
    outputs: tuple[Feature, ...] = ()
    # The matrix form of an all-numeric DataFrame model: its tensor and, per column, the
    # feature it feeds.
    matrix: tuple[str, tuple[str, ...]] | None = None
    window: Window = Window()
    rows: int = 0
    source: str = ""
    created: str = ""

    def __post_init__(self) -> None:
        names = [f.name for f in (*self.features, *self.outputs)]
        if len(set(names)) != len(names):
            raise ProfileError("feature names must be unique")
        if not names:
            raise ProfileError("the profile has no feature and no output")
        if self.matrix is not None:
            unknown = set(self.matrix[1]) - {f.name for f in self.features}
            if unknown:
                raise ProfileError(f"matrix: names no feature {', '.join(sorted(unknown))}")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": self.created,
            "source": self.source,
            "rows": self.rows,
            "statistic": {
                "name": "psi",
                "epsilon": EPSILON,
                "definition": "sum((p_live - p_ref) * ln(p_live / p_ref))",
            },
            "window": {
                "rows": self.window.rows,
                "min_rows": self.window.min_rows,
                "blocks": self.window.blocks,
            },
            "matrix": None
            if self.matrix is None
            else {"tensor": self.matrix[0], "features": list(self.matrix[1])},
            "features": [f.to_json() for f in self.features],
            "outputs": [f.to_json() for f in self.outputs],
        }

    def write(self, model_dir: Path, path: Path | None = None) -> Path:
        """Write the profile as MODEL_DIR/drift_profile.json (or `path`), where `kninfer serve`
        finds it; returns the path written."""
        target = path if path is not None else model_dir / PROFILE_FILE
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        partial.replace(target)  # a server starting meanwhile reads the old file or the new one
        return target

    @classmethod
    def from_json(cls, doc: Any) -> Profile:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ProfileError(f"not a {FORMAT} document")
        if doc.get("format_version") != FORMAT_VERSION:
            raise ProfileError(
                f"format_version {doc.get('format_version')!r}; this kninfer reads {FORMAT_VERSION}"
            )
        try:
            window = doc.get("window") or {}
            rows = int(window.get("rows", DEFAULT_WINDOW_ROWS))
            matrix = doc.get("matrix")
            return cls(
                features=tuple(Feature.from_json(f) for f in doc.get("features", ())),
                outputs=tuple(Feature.from_json(f) for f in doc.get("outputs", ())),
                matrix=None
                if not matrix
                else (str(matrix["tensor"]), tuple(str(n) for n in matrix["features"])),
                window=Window(
                    rows,
                    int(window.get("min_rows", rows)),
                    int(window.get("blocks", DEFAULT_WINDOW_BLOCKS)),
                ),
                rows=int(doc.get("rows", 0)),
                source=str(doc.get("source", "")),
                created=str(doc.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(f"malformed profile ({type(exc).__name__}: {exc})") from None


def read_profile(path: Path) -> Profile:
    """The profile in `path` (ProfileError if it is not one; OSError if it cannot be read)."""
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ProfileError(f"not JSON: {exc}") from None
    return Profile.from_json(doc)


# ---- values: the same conversions for the reference and the live requests ----------------------


def numeric_values(values: np.ndarray) -> np.ndarray:
    """1-D float64, NaN where a value is missing (NaN, or None in an object array)."""
    flat = values.reshape(-1)
    if flat.dtype.kind in "biuf":
        return flat.astype(np.float64, copy=False)
    if flat.dtype.kind == "O":
        missing = np.equal(flat, NONE)
        out = np.full(len(flat), np.nan)
        out[~missing] = flat[~missing].astype(np.float64)
        return out
    raise TypeError(f"numbers expected, got an array of dtype {flat.dtype}")


def category_values(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The present values as a unicode array (bytes decoded as UTF-8, anything else as `str()`
    gives it: True, 1, 1.5), and the 1-D mask of missing ones (None, or NaN)."""
    flat = values.reshape(-1)
    kind = flat.dtype.kind
    if kind == "f":
        missing = np.isnan(flat)
    elif kind == "O":
        # None, and NaN: the one value unequal to itself (pandas leaves NaN in object columns).
        missing = np.equal(flat, NONE) | np.not_equal(flat, flat)
    else:
        missing = np.zeros(len(flat), dtype=bool)
    present = flat[~missing] if missing.any() else flat
    if kind == "S" or (kind == "O" and len(present) and isinstance(present[0], bytes)):
        return np.char.decode(present.astype(bytes), "utf-8"), missing
    return present.astype(str), missing


# ---- building --------------------------------------------------------------------------------


def numeric_feature(
    name: str, tensor: str, column: int | None, values: np.ndarray, bins: int = DEFAULT_BINS
) -> Feature:
    """Quantile bins of `values`: interior edges at the 1/bins, 2/bins, ... quantiles
    (numpy.quantile, linear interpolation), duplicates removed."""
    x = numeric_values(values)
    present = x[~np.isnan(x)]
    if not len(present):
        raise ProfileError(f"feature '{name}': every value is missing")
    if not np.isfinite(present).all():
        raise ProfileError(f"feature '{name}': has infinite values")
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    return Feature(
        name,
        tensor,
        column,
        "numeric",
        tuple(int(c) for c in counts),
        missing=_share(len(x) - len(present), len(x)),
        edges=tuple(float(e) for e in edges),
        minimum=float(present.min()),
        maximum=float(present.max()),
    )


def categorical_feature(
    name: str,
    tensor: str,
    column: int | None,
    values: np.ndarray,
    top_categories: int = DEFAULT_TOP_CATEGORIES,
) -> Feature:
    """The `top_categories` most frequent values (ties by value) and OTHER for the rest."""
    strings, missing = category_values(values)
    if not len(strings):
        raise ProfileError(f"feature '{name}': every value is missing")
    unique, counts = np.unique(strings, return_counts=True)
    order = np.lexsort((unique, -counts))
    top, rest = order[:top_categories], order[top_categories:]
    complete = len(unique) <= MAX_KNOWN_CATEGORIES
    return Feature(
        name,
        tensor,
        column,
        "categorical",
        (*(int(counts[i]) for i in top), int(counts[rest].sum())),
        missing=_share(int(missing.sum()), len(missing)),
        categories=tuple(str(unique[i]) for i in top),
        other_known=tuple(str(unique[i]) for i in rest) if complete else (),
        unknown_counted=complete,
    )


def _is_int_text(text: str) -> bool:
    try:
        return str(int(text)) == text
    except ValueError:
        return False


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def output_values(array: np.ndarray) -> tuple[np.ndarray, int | None]:
    """The 1-D values of an output to profile, and its column (None: the output is 1-D): a 2-D
    output of two columns that are probabilities (in [0, 1], rows summing to 1) gives the
    positive class's, column 1; any other 2-D output its first column."""
    if array.ndim <= 1:
        return array.reshape(-1), None
    if array.ndim > 2:
        raise ProfileError(f"an output of shape {list(array.shape)} cannot be profiled")
    if (
        array.shape[1] == 2
        and array.dtype.kind == "f"
        and len(array)
        and bool(((array >= 0) & (array <= 1)).all())
        and bool(np.allclose(array.sum(axis=1), 1.0, atol=1e-6))
    ):
        return array[:, 1], 1
    return array[:, 0], 0


def column_of(array: np.ndarray, column: int | None) -> np.ndarray:
    """One feature's 1-D values from a request tensor: the tensor itself ([N] or [N, 1]), or
    column `column` of an [N, k] matrix."""
    if column is None:
        return array.reshape(len(array), -1)[:, 0] if array.ndim > 1 else array
    return array[:, column]


def build_profile(
    data: Any,
    *,
    outputs: Any = None,
    model: Any = None,
    output_name: str = "predict",
    output_kind: Kind | None = None,
    bins: int = DEFAULT_BINS,
    top_categories: int = DEFAULT_TOP_CATEGORIES,
    categorical: Collection[str] = (),
    input_name: str = MATRIX_INPUT,
    matrix_alias: bool = True,
    window_rows: int = DEFAULT_WINDOW_ROWS,
    min_rows: int | None = None,
    window_blocks: int = DEFAULT_WINDOW_BLOCKS,
    source: str = "",
) -> Profile:
    """A reference profile of `data`, the model's training data (or a fair sample of it).

    `data`: a pandas DataFrame (one feature per column, named by the column, as kninfer serves a
    model fitted on a DataFrame), a 2-D array (features `input-0[0]`, `input-0[1]`, ... of the
    matrix input `input_name`), or None (the output only, e.g. for a text model). Strings,
    booleans and pandas categoricals are categorical, numbers numeric; `categorical` names
    numeric columns to treat as categories instead. An all-numeric DataFrame also records that
    the matrix input `input_name` carries its columns in order (`matrix_alias`), as the sklearn
    family serves it.

    `outputs`: the model's output on `data` (`model.predict(data)`), or `model`, whose
    `predict` is then called on `data`. Labels (strings, integers, booleans) are categorical,
    floats numeric, or as `output_kind` says; a [N, 2] output of probabilities is profiled by
    the positive class's column (`output_values`). `output_name` is the served output tensor
    (`predict` for scikit-learn). Then `profile.write(model_dir)`.

    `window_rows`, `min_rows` (default: `window_rows`) and `window_blocks` set the window the
    server compares with this reference (docs/monitoring.md).
    """
    if bins < 2:
        raise ProfileError("bins: at least 2")
    if top_categories < 1:
        raise ProfileError("top_categories: at least 1")
    window = Window(window_rows, window_rows if min_rows is None else min_rows, window_blocks)
    features: list[Feature] = []
    matrix: tuple[str, tuple[str, ...]] | None = None
    rows = 0
    forced = set(categorical)
    if data is not None:
        columns, tensor_of, rows = _columns(data, input_name)
        for name, values in columns.items():
            tensor, column = tensor_of[name]
            if name in forced or values.dtype.kind not in "iuf":
                features.append(categorical_feature(name, tensor, column, values, top_categories))
            else:
                features.append(numeric_feature(name, tensor, column, values, bins))
        if (
            matrix_alias
            and _is_frame(data)
            and features
            and all(f.kind == "numeric" for f in features)
        ):
            matrix = (input_name, tuple(f.name for f in features))
    if outputs is None and model is not None:
        outputs = model.predict(data)
    found: list[Feature] = []
    if outputs is not None:
        array = np.asarray(outputs)
        if array.dtype.kind == "U":
            array = array.astype(object)
        if data is not None and len(array) != rows:
            raise ProfileError(f"{len(array)} outputs for {rows} rows of data")
        values, column = output_values(array)
        name = OUTPUT_PREFIX + output_name + ("" if column is None else f"[{column}]")
        kind = output_kind or ("numeric" if values.dtype.kind == "f" else "categorical")
        found.append(
            numeric_feature(name, output_name, column, values, bins)
            if kind == "numeric"
            else categorical_feature(name, output_name, column, values, top_categories)
        )
        rows = rows or len(array)
    return Profile(
        tuple(features),
        tuple(found),
        matrix,
        window,
        rows,
        source,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def _is_frame(data: Any) -> bool:
    return hasattr(data, "columns") and hasattr(data, "dtypes")


def _columns(
    data: Any, input_name: str
) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, int | None]], int]:
    """The 1-D values per feature, the tensor (and column) each is read from, the row count."""
    if _is_frame(data):
        import pandas as pd

        columns: dict[str, np.ndarray] = {}
        for key in data.columns:
            series = data[key]
            if pd.api.types.is_bool_dtype(series.dtype) or not pd.api.types.is_numeric_dtype(
                series.dtype
            ):
                # Strings, categoricals, booleans: objects, missing as None.
                columns[str(key)] = series.astype(object).where(series.notna(), None).to_numpy()
            else:
                columns[str(key)] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        if len(columns) != len(data.columns):
            raise ProfileError("column names must be unique as strings")
        return columns, {name: (name, None) for name in columns}, len(data)
    array = np.asarray(data)
    if array.dtype.kind == "U":
        array = array.astype(object)
    if array.ndim == 1:
        return {input_name: array}, {input_name: (input_name, None)}, len(array)
    if array.ndim != 2:
        raise ProfileError(f"data of shape {list(array.shape)}: a DataFrame or a 2-D array")
    names = [f"{input_name}[{j}]" for j in range(array.shape[1])]
    return (
        {n: array[:, j] for j, n in enumerate(names)},
        {n: (input_name, j) for j, n in enumerate(names)},
        len(array),
    )
