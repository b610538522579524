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


def predictor_class(family: PredictorFamily) -> type[Predictor]:
    try:
        target = FAMILIES[family]
    except KeyError:
        choices = ", ".join(FAMILIES)
        raise ValueError(f"unknown predictor '{family}'; choose one of {choices}") from None
    from kninfer.loading import import_class

    cls: type[Predictor] = import_class(target, "predictor")
    return cls
