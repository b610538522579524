"""Model families. Each is one module with one `Predictor` subclass, imported only when served,
so a scikit-learn service never pays for importing torch or mlflow."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kninfer.predictors.base import Predictor

FAMILIES: dict[str, str] = {
    "sklearn": "kninfer.predictors.sklearn:SklearnPredictor",
    "mlflow": "kninfer.predictors.mlflow:MlflowPredictor",
    "pytorch": "kninfer.predictors.pytorch:PytorchPredictor",
}


def predictor_class(family: str) -> type[Predictor]:
    try:
        target = FAMILIES[family]
    except KeyError:
        choices = ", ".join(FAMILIES)
        raise ValueError(f"unknown predictor '{family}'; choose one of {choices}") from None
    from kninfer.loading import import_class

    cls: type[Predictor] = import_class(target, "predictor")
    return cls
