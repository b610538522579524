"""scikit-learn predictor: any estimator or pipeline saved with skops, joblib or pickle.

Files looked for in the model directory, first match wins:
  model.skops                        (safe: skops refuses types it does not trust)
  model.joblib, model.pkl, model.pickle
  or exactly one *.skops / *.joblib / *.pkl / *.pickle file.

Trust model: joblib and pickle run arbitrary code while loading, so only serve those files from a
source you trust (your own registry/bucket); kninfer never unpickles anything from a request.
A skops file loads only types on skops' trusted list plus those named in
KNINFER_SKOPS_TRUSTED (comma-separated), so an untrusted file fails instead of running code.

Metadata comes from the estimator: one input `input-0` of shape [-1, n_features_in_]; output
`predict` ([-1], the class label datatype or FP64 for a regressor) and, for estimators with
`predict_proba`, an optional `predict_proba` output ([-1, n_classes], FP64) returned when the
request names it in `outputs`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kninfer.errors import InvalidInput, ModelLoadError
from kninfer.predictors.base import Arrays, Predictor, result_array
from kninfer.storage import model_file
from kninfer.tensor import TensorSpec, v2_datatype_of

MODEL_FILES = ("model.skops", "model.joblib", "model.pkl", "model.pickle")
SUFFIXES = (".skops", ".joblib", ".pkl", ".pickle")
NUMERIC_INPUTS = ("FP64", "FP32", "INT64", "INT32")


def find_model_file(model_dir: Path) -> Path:
    for name in MODEL_FILES:
        if (model_dir / name).is_file():
            return model_file(model_dir, name)
    candidates = sorted(p.name for p in model_dir.iterdir() if p.suffix in SUFFIXES)
    if len(candidates) == 1:
        return model_file(model_dir, candidates[0])
    if not candidates:
        raise ModelLoadError(
            f"no scikit-learn model in {model_dir}: expected one of {', '.join(MODEL_FILES)}"
        )
    raise ModelLoadError(
        f"several model files in {model_dir} ({', '.join(candidates)}); name one model.joblib "
        "or model.skops"
    )


def load_estimator(path: Path) -> Any:
    if path.suffix == ".skops":
        import skops.io as sio

        extra = [t for t in os.environ.get("KNINFER_SKOPS_TRUSTED", "").split(",") if t]
        untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in extra]
        if untrusted:
            raise ModelLoadError(
                f"{path.name} contains types skops does not trust: {', '.join(untrusted)}; "
                "list them in KNINFER_SKOPS_TRUSTED if you trust this file"
            )
        return sio.load(path, trusted=extra or None)
    import joblib

    return joblib.load(path)


def _allows_nan(estimator: Any) -> bool:
    try:
        return bool(estimator.__sklearn_tags__().input_tags.allow_nan)
    except AttributeError:
        return False


class SklearnPredictor(Predictor):
    family = "sklearn"
    batching_by_default = False

    estimator: Any = None

    def load_model(self) -> None:
        path = find_model_file(self.model_dir)
        try:
            self.estimator = load_estimator(path)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"could not load {path}: {type(exc).__name__}: {exc}") from exc
        estimator = self.estimator
        if not hasattr(estimator, "predict"):
            kind = type(estimator).__name__
            raise ModelLoadError(f"{path.name} holds a {kind}, not an estimator")
        n_features = int(getattr(estimator, "n_features_in_", -1))
        self._allow_nan = _allows_nan(estimator)
        self._feature_names = getattr(estimator, "feature_names_in_", None)
        self.inputs = [TensorSpec("input-0", "FP64", (-1, n_features), accepts=NUMERIC_INPUTS)]
        classes = getattr(estimator, "classes_", None)
        if classes is not None:
            label_type = v2_datatype_of(result_array("predict", classes))
            self.outputs = [TensorSpec("predict", label_type, (-1,))]
            if hasattr(estimator, "predict_proba"):
                self.outputs.append(
                    TensorSpec("predict_proba", "FP64", (-1, len(classes)), optional=True)
                )
        else:
            n_outputs = int(getattr(estimator, "n_outputs_", 1))
            shape = (-1,) if n_outputs == 1 else (-1, n_outputs)
            self.outputs = [TensorSpec("predict", "FP64", shape)]

    def warmup_inputs(self) -> Arrays:
        if self.inputs[0].shape[1] == -1:
            return {}  # unknown feature count: nothing safe to warm up with
        return super().warmup_inputs()

    def validate_arrays(self, arrays: Arrays) -> None:
        (array,) = arrays.values()
        if array.ndim != 2:
            raise InvalidInput(
                f"input '{self.inputs[0].name}' must be 2-D [rows, features]; "
                f"got shape {list(array.shape)}"
            )
        if not self._allow_nan and array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(
                f"input '{self.inputs[0].name}' contains NaN or infinity; "
                f"{type(self.estimator).__name__} needs finite numbers"
            )

    def run(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        (features,) = inputs.values()
        if self._feature_names is not None:
            import pandas as pd  # fitted on a DataFrame: keep its column names

            features = pd.DataFrame(features, columns=self._feature_names)
        result: Arrays = {}
        for name in outputs:
            method = getattr(self.estimator, name)
            result[name] = result_array(name, method(features))
        return result
