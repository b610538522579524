"""`kninfer profile MODEL_DIR --data FILE`: the reference profile of a model's training data,
written beside the model as `drift_profile.json`, from which `kninfer serve` counts what it is
sent and exports drift metrics (kninfer.observability.drift, docs/monitoring.md).

The model is loaded and run in this process by the family `kninfer serve` would use
(kninfer.predictors.predictor_class: for scikit-learn, find_model_file and load_estimator), so
the profile's features are the V2 inputs it serves and its output distribution is the served
output's. Registering the command imports nothing heavy.

Exit status: 0 written; 1 the model did not load or run; 2 the data is missing or unusable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kninfer._compat.argv import hide_argv_from_kserve

# kninfer.observability.drift.profile's defaults, repeated so `--help` imports nothing.
DEFAULT_BINS = 10
DEFAULT_TOP_CATEGORIES = 20
DEFAULT_WINDOW = 1000
MLMODEL = "MLmodel"


def add_profile_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    profile = sub.add_parser(
        "profile",
        help="profile a model's training data (drift_profile.json beside the "
        "model): kninfer serve then exports drift metrics",
        description="Writes MODEL_DIR/drift_profile.json: per input feature the quantile bins "
        "(numbers) or category frequencies (strings) of the training data, its "
        "range and missing share, and the distribution of the model's outputs on "
        "it. kninfer serve counts every request into the same bins and exports "
        "them to Prometheus, with the PSI of a recent window (docs/monitoring.md).",
    )
    profile.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    profile.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="the training data, or a fair sample of it: .csv with a header "
        "row, or .parquet (needs pyarrow); without it an MLflow model's "
        "logged input example is used, with a warning",
    )
    profile.add_argument(
        "--predictor",
        default=None,
        help="the family kninfer serve will use (default: mlflow when "
        "MODEL_DIR has an MLmodel file, else sklearn)",
    )
    profile.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="COLUMN",
        help="a column of --data that is no model input (the target); "
        "repeatable. A model fitted on a DataFrame takes only its own "
        "columns anyway",
    )
    profile.add_argument(
        "--bins",
        type=_at_least(2),
        default=DEFAULT_BINS,
        help="quantile bins per numeric feature (default: %(default)s)",
    )
    profile.add_argument(
        "--top-categories",
        type=_at_least(1),
        default=DEFAULT_TOP_CATEGORIES,
        help="categories with a bin of their own; the rest share one (default: %(default)s)",
    )
    profile.add_argument(
        "--window",
        type=_at_least(1),
        default=DEFAULT_WINDOW,
        metavar="ROWS",
        help="rows in the recent window the server compares with the "
        "profile (default: %(default)s)",
    )
    profile.add_argument(
        "--min-rows",
        type=_at_least(1),
        default=None,
        metavar="ROWS",
        help="rows the window must hold before PSI is exported (default: --window)",
    )
    profile.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="where to write (default: MODEL_DIR/drift_profile.json, where kninfer serve reads it)",
    )
    profile.add_argument(
        "--skops-trusted",
        default=None,
        help="comma-separated types a .skops file may hold beyond skops' "
        "trusted list (default: $KNINFER_SKOPS_TRUSTED, as serve)",
    )
    profile.set_defaults(handler=cmd_profile)


def _at_least(low: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{text}: at least {low}")
        return value

    return parse


def cmd_profile(options: argparse.Namespace) -> int:
    hide_argv_from_kserve()  # loading the model imports a family, which imports kserve
    from kninfer.errors import InvalidInput, KninferError
    from kninfer.observability.drift.profile import PROFILE_FILE, ProfileError

    if options.min_rows is not None and options.min_rows > options.window:
        print(
            f"kninfer profile: --min-rows {options.min_rows} is more than --window "
            f"{options.window}",
            file=sys.stderr,
        )
        return 2
    try:
        made = make_profile(options)
    except (InvalidInput, ProfileError) as exc:
        print(f"kninfer profile: {exc}", file=sys.stderr)
        return 2
    except KninferError as exc:
        print(f"kninfer profile: {exc}", file=sys.stderr)
        return 1
    profile, notes = made
    for note in notes:
        print(note)
    for feature in (*profile.features, *profile.outputs):
        if feature.kind == "numeric":
            what = (
                f"numeric, {feature.bins} bins, min {feature.minimum:.6g}, "
                f"max {feature.maximum:.6g}"
            )
        else:
            what = f"categorical, {len(feature.categories)} categories"
            if feature.counts[-1]:
                what += " + other"
        print(f"  {feature.name}: {what}, missing {feature.missing:.1%}")
    window = profile.window
    print(
        f"the server's window: PSI over the last {window.size} rows, exported once it holds "
        f"{window.threshold}"
    )
    path = profile.write(options.model_dir, options.out)
    print(f"wrote {path}")
    if path.parent.resolve() == options.model_dir.resolve() and path.name == PROFILE_FILE:
        print(
            "note: the served version is a digest of the model directory's files when "
            "--model-version is not given, so it changes with this file"
        )
    return 0


def make_profile(options: argparse.Namespace) -> tuple[Any, list[str]]:
    """The profile and the lines to print about how it was made."""
    from kninfer.errors import InvalidInput, KninferError, ModelLoadError
    from kninfer.observability.drift.profile import build_profile
    from kninfer.predictors import predictor_class
    from kninfer.settings import ServeSettings

    model_dir: Path = options.model_dir
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist or is not a directory")
    family = options.predictor or ("mlflow" if (model_dir / MLMODEL).is_file() else "sklearn")
    extra: dict[str, Any] = {}
    if options.skops_trusted is not None:
        extra["skops_trusted"] = options.skops_trusted
    settings = ServeSettings(predictor=family, model_dir=model_dir, warmup=False, **extra)
    predictor = predictor_class(family, model_dir, settings)(
        settings.model_name, model_dir, settings
    )
    try:
        predictor.load_model()
        notes: list[str] = []
        if options.data is not None:
            frame = read_table(
                options.data, {s.name for s in predictor.inputs if s.datatype == "BYTES"}
            )
            source = options.data.name
        else:
            frame = input_example(predictor, family)
            source = "the MLflow model's logged input example"
            print(
                f"warning: no --data: profiling the model's logged input example "
                f"({len(frame)} rows); a few rows make a weak reference (their quantile bins "
                "and category shares say little about the training data): pass --data with "
                "the training data",
                file=sys.stderr,
            )
        missing = [c for c in options.drop if c not in frame.columns]
        if missing:
            raise InvalidInput(f"--drop {', '.join(missing)}: no such column in {source}")
        frame = frame.drop(columns=options.drop)
        if not len(frame):
            raise InvalidInput(f"{source} has no rows")
        served = served_inputs(predictor, frame, source)
        notes.extend(served.notes)
        names = [s.name for s in predictor.outputs if not s.optional][:1]
        try:
            result = predictor.run(served.arrays, names)
        except KninferError:
            raise
        except Exception as exc:  # the family's own errors are KninferErrors; anything else
            raise ModelLoadError(
                f"the model failed on {source}: {type(exc).__name__}: {exc}"
            ) from exc
        tensor = names[0] if names else next(iter(result))
        classes = getattr(getattr(predictor, "estimator", None), "classes_", None)
        profile = build_profile(
            served.data,
            outputs=result[tensor],
            output_name=tensor,
            output_kind="categorical" if classes is not None and tensor == "predict" else None,
            bins=options.bins,
            top_categories=options.top_categories,
            input_name=served.input_name,
            matrix_alias=served.alias,
            window_rows=options.window,
            min_rows=options.min_rows,
            source=f"{source} ({len(frame)} rows)",
        )
        notes.insert(
            0,
            f"profiled {len(frame)} rows of {source} through the {family} family "
            f"({type(predictor).__name__})",
        )
        return profile, notes
    finally:
        predictor.stop()


def read_table(path: Path, strings: set[str]) -> Any:
    """--data as a DataFrame: CSV (a header row; the model's string columns kept as text, so
    "01234" stays a category) or Parquet."""
    import pandas as pd

    from kninfer.errors import InvalidInput

    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # round_trip: the floats written, to the last bit (pandas' default parser may be
            # one ulp off), so the edges are those a DataFrame of the same data gives.
            return pd.read_csv(
                path, dtype={c: str for c in strings} or None, float_precision="round_trip"
            )
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except ImportError as exc:
        raise InvalidInput(
            f"{path}: reading {suffix} files needs {exc.name or exc} (pip install pyarrow)"
        ) from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path}: cannot read it: {exc}") from None
    raise InvalidInput(f"{path}: --data is a .csv or .parquet file")


def input_example(predictor: Any, family: str) -> Any:
    """An MLflow model's logged input example as a DataFrame: the last resort without --data."""
    import pandas as pd

    from kninfer.errors import InvalidInput

    if family != "mlflow":
        raise InvalidInput("--data FILE is needed: the training data, or a fair sample of it")
    from mlflow.models import Model as MLflowModel

    from kninfer.predictors.mlflow import find_mlmodel_dir

    where = find_mlmodel_dir(predictor.model_dir)
    try:
        example = MLflowModel.load(str(where)).load_input_example(str(where))
    except Exception as exc:
        raise InvalidInput(
            f"no --data, and the model's input example does not load: {type(exc).__name__}: {exc}"
        ) from None
    if example is None:
        raise InvalidInput(
            "no --data, and the MLflow model logged no input example: pass "
            "--data with the training data"
        )
    if isinstance(example, pd.DataFrame):
        return example
    if hasattr(example, "ndim") and example.ndim == 2:
        return pd.DataFrame(example)
    raise InvalidInput(
        f"no --data, and the model's input example ({type(example).__name__}) is "
        "not a table: pass --data with the training data"
    )


class Served:
    """The model's served arrays for the data; what to profile (build_profile's `data`), the
    name of its matrix input and whether that is an alias of the columns."""

    def __init__(
        self,
        arrays: dict[str, Any],
        data: Any,
        notes: list[str],
        input_name: str = "input-0",
        alias: bool = False,
    ) -> None:
        self.arrays = arrays
        self.data = data
        self.notes = notes
        self.input_name = input_name
        self.alias = alias


def served_inputs(predictor: Any, frame: Any, source: str) -> Served:
    """The V2 inputs the model is served, made from the data's columns: one per DataFrame
    column (by name) for a model fitted on a DataFrame, else one [N, k] matrix (or one text
    per row) from all the data's columns in order."""
    import numpy as np
    import pandas as pd

    from kninfer.errors import InvalidInput
    from kninfer.protocol.tensor import V2_TO_NUMPY

    specs = list(predictor.inputs)
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    if not specs:  # an MLflow model without an input signature: the columns as they are
        return Served(
            {c: frame[c].to_numpy() for c in columns},
            frame,
            ["the model declares no inputs: every column profiled"],
        )
    named = [s for s in specs if s.name in columns]
    if named and all(s.name in columns for s in specs if not s.optional):
        arrays = {s.name: _column(frame[s.name], s.name, s.datatype) for s in named}
        notes = []
        left = [c for c in columns if c not in arrays]
        if left:
            notes.append(f"left out (not model inputs): {', '.join(left)}")
        # An all-numeric DataFrame model of the sklearn family also takes its columns as one
        # matrix (SklearnPredictor.matrix): requests in that form count into the same bins.
        matrix = getattr(predictor, "matrix", None)
        return Served(
            arrays,
            pd.DataFrame(arrays),
            notes,
            matrix.name if matrix is not None else "input-0",
            matrix is not None,
        )
    if len(specs) != 1:
        wanted = ", ".join(s.name for s in specs)
        raise InvalidInput(
            f"{source} has the columns {', '.join(columns)}; the model takes {wanted}"
        )
    spec = specs[0]
    if spec.datatype == "BYTES":
        if len(columns) != 1:
            raise InvalidInput(
                f"the model takes one text per row ('{spec.name}'): {source} "
                f"has {len(columns)} columns ({', '.join(columns)}); --drop the "
                "others"
            )
        texts = _column(frame[columns[0]], columns[0], "BYTES")
        return Served(
            {spec.name: texts if len(spec.shape) == 1 else texts.reshape(-1, 1)},
            None,
            [f"input '{spec.name}' is text: not profiled (the output is)"],
        )
    width = spec.shape[1] if len(spec.shape) == 2 else 1
    if width not in (-1, len(columns)):
        raise InvalidInput(
            f"{source} has {len(columns)} columns ({', '.join(columns)}); the "
            f"model's input '{spec.name}' takes {width}: --drop the others"
        )
    try:
        matrix = frame.to_numpy(dtype=np.dtype(V2_TO_NUMPY[spec.datatype]))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{source}: the model's input '{spec.name}' takes numbers ({spec.datatype}): {exc}"
        ) from None
    if len(spec.shape) == 1:
        matrix = matrix[:, 0]
    return Served({spec.name: matrix}, matrix, [], spec.name)


def _column(series: Any, name: str, datatype: str) -> Any:
    """A column as the model's column of `datatype` holds it when served
    (kninfer.protocol.tables.model_column): str objects with None for missing, bool, int64,
    or float64 with NaN."""
    import numpy as np

    from kninfer.errors import InvalidInput

    present = series.notna()
    if datatype == "BYTES":
        return series.astype(str).astype(object).where(present, None).to_numpy()
    if datatype == "BOOL":
        if not present.all():
            raise InvalidInput(f"column '{name}' (BOOL) has missing values")
        return series.to_numpy(dtype=bool)
    if datatype.startswith(("INT", "UINT")):
        if not present.all():
            raise InvalidInput(
                f"column '{name}' ({datatype}) has missing values, which the served model refuses"
            )
        return series.to_numpy(dtype=np.int64)
    try:
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"column '{name}' takes numbers ({datatype}): {exc}") from None
