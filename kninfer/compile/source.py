"""The model to compile: the file the sklearn family serves from MODEL_DIR, or an MLflow model of
the sklearn flavor (an `MLmodel` file in MODEL_DIR).

Trust is the serving family's: a .skops file loads with skops' own trusted list plus the types
named in --skops-trusted (KNINFER_SKOPS_TRUSTED), exactly as `kninfer serve` loads it
(kninfer.predictors.sklearn.load_estimator), so compiling an untrusted file runs none of its
code. An MLflow model saved as skops is held to the same rule: the `skops_trusted_types` its
MLmodel lists are not trusted, since they come from the same store as the file. joblib and
pickle files (and MLflow's pickle and cloudpickle formats) run code while loading: compile only
what you would serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kninfer.errors import ModelLoadError

MLMODEL = "MLmodel"
# What kninfer's sklearn family reads beside a joblib or skops model, and MLflow writes beside
# its own (kninfer.predictors.sklearn_columns.EXAMPLE_FILES names both; the first is the table).
EXAMPLE_FILE = "input_example.json"


@dataclass
class Source:
    """A loaded model and where it came from."""

    estimator: Any
    # The file the estimator was read from: what compile.json's sha256 pins.
    file: Path
    # joblib, skops, pickle (the sklearn family's files) or mlflow-<serialization format>.
    form: str
    # The input example saved with the model (input_example.json), if there is one.
    example_file: Path | None = None


def load_source(model_dir: Path, skops_trusted: str = "") -> Source:
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist or is not a directory")
    if (model_dir / MLMODEL).is_file():
        source = _mlflow_source(model_dir, skops_trusted)
    else:
        source = _sklearn_source(model_dir, skops_trusted)
    if not hasattr(source.estimator, "predict"):
        kind = type(source.estimator).__name__
        raise ModelLoadError(f"{source.file.name} holds a {kind}, not an estimator with predict")
    return source


def _sklearn_source(model_dir: Path, skops_trusted: str) -> Source:
    from kninfer.predictors.sklearn import find_model_file

    path = find_model_file(model_dir)
    form = {".skops": "skops", ".joblib": "joblib"}.get(path.suffix, "pickle")
    example = model_dir / EXAMPLE_FILE
    return Source(
        _load_file(path, skops_trusted), path, form, example if example.is_file() else None
    )


def _load_file(path: Path, skops_trusted: str) -> Any:
    from kninfer.predictors.sklearn import load_estimator

    try:
        # Copied into memory (no mmap): the compile reads the model once and exits.
        return load_estimator(path, skops_trusted)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"could not load {path}: {type(exc).__name__}: {exc}") from exc


def _mlflow_source(model_dir: Path, skops_trusted: str) -> Source:
    import yaml

    from kninfer.storage import model_file

    try:
        doc = yaml.safe_load((model_dir / MLMODEL).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"cannot read {model_dir / MLMODEL}: {exc}") from exc
    flavors = doc.get("flavors") if isinstance(doc, dict) else None
    if not isinstance(flavors, dict):
        raise ModelLoadError(f"{model_dir / MLMODEL} names no flavors")
    flavor = flavors.get("sklearn")
    if not isinstance(flavor, dict) or not isinstance(flavor.get("pickled_model"), str):
        others = ", ".join(sorted(f for f in flavors if f != "python_function")) or "none"
        raise ModelLoadError(
            f"{model_dir} is an MLflow model of flavor(s) {others}; kninfer "
            "compile converts the sklearn flavor only"
        )
    path = model_file(model_dir, flavor["pickled_model"])
    serialization = str(flavor.get("serialization_format", "cloudpickle"))
    if serialization == "skops":
        if path.suffix != ".skops":
            # load_estimator picks skops by the suffix; anything else would be unpickled.
            raise ModelLoadError(
                f"{path.name} is declared skops in {MLMODEL} but is not a "
                ".skops file; refusing to load it"
            )
        estimator = _load_file(path, skops_trusted)
    else:
        estimator = _mlflow_pickle(model_dir)
    info = doc.get("saved_input_example_info")
    name = info.get("artifact_path") if isinstance(info, dict) else None
    example = model_file(model_dir, name) if isinstance(name, str) else None
    return Source(
        estimator,
        path,
        f"mlflow-{serialization}",
        example if example is not None and example.is_file() else None,
    )


def _mlflow_pickle(model_dir: Path) -> Any:
    """A pickle or cloudpickle MLflow model, loaded as the mlflow family loads it (by MLflow,
    which unpickles it: the same trust as serving it)."""
    try:
        import mlflow.sklearn
    except ImportError:
        raise ModelLoadError(
            f"{model_dir} is an MLflow model saved with pickle: loading it needs "
            "MLflow (pip install 'kninfer[mlflow]')"
        ) from None
    try:
        return mlflow.sklearn.load_model(str(model_dir))
    except Exception as exc:
        raise ModelLoadError(
            f"could not load the MLflow model in {model_dir}: {type(exc).__name__}: {exc}"
        ) from exc
