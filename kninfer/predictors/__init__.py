"""Model families. Each is one module with one `Predictor` subclass, imported only when served,
so a scikit-learn service never pays for importing torch or mlflow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kninfer.settings import PredictorFamily

if TYPE_CHECKING:
    from kninfer.predictors.base import Predictor

# One entry per `PredictorFamily` (kninfer.settings); tests/predictors check the two agree.
FAMILIES: dict[PredictorFamily, str] = {
    "sklearn": "kninfer.predictors.sklearn:SklearnPredictor",
    "mlflow": "kninfer.predictors.mlflow:MlflowPredictor",
    "pytorch": "kninfer.predictors.pytorch:PytorchPredictor",
}


def predictor_class(family: str) -> type[Predictor]:
    """The class `--predictor` names: a family, or `package.module:Class` for a subclass of
    `kninfer.Predictor` of the user's own (importable on PYTHONPATH or from a `module.py` in
    the model directory, searched first when given)."""
    from kninfer.errors import ModelLoadError
    from kninfer.loading import import_class
    from kninfer.predictors.base import Predictor

    target = FAMILIES.get(family, family)  # type: ignore[call-overload]
    if ":" not in target:
        choices = ", ".join(FAMILIES)
        raise ModelLoadError(f"unknown predictor '{family}'; choose one of {choices} or give "
                             "package.module:Class")
    cls = import_class(target, "predictor")
    if not (isinstance(cls, type) and issubclass(cls, Predictor)):
        raise ModelLoadError(f"'{target}' is not a subclass of kninfer.Predictor")
    result: type[Predictor] = cls
    return result
