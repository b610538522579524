"""The family table (kninfer.predictors.FAMILIES) and the settings' family type agree, and every
entry names a real Predictor subclass; an unknown family is refused with the choices."""

from __future__ import annotations

import typing

import pytest

from kninfer.predictors import FAMILIES, predictor_class
from kninfer.settings import PredictorFamily


def test_every_family_the_settings_accept_has_a_predictor() -> None:
    assert tuple(FAMILIES) == typing.get_args(PredictorFamily)


@pytest.mark.parametrize("family", typing.get_args(PredictorFamily))
def test_family_names_a_predictor_class(family: PredictorFamily) -> None:
    from kninfer.predictors.base import Predictor

    cls = predictor_class(family)
    assert issubclass(cls, Predictor) and cls.family == family


def test_unknown_family_lists_the_choices() -> None:
    from kninfer.errors import ModelLoadError

    with pytest.raises(ModelLoadError) as caught:
        predictor_class("xgboost")
    assert str(caught.value) == (
        "unknown predictor 'xgboost'; choose one of sklearn, mlflow, "
        "pytorch or give package.module:Class"
    )


def test_a_class_that_is_no_predictor_is_refused() -> None:
    from kninfer.errors import ModelLoadError

    with pytest.raises(
        ModelLoadError, match="'kninfer.errors:InvalidInput' is not a subclass of kninfer.Predictor"
    ):
        predictor_class("kninfer.errors:InvalidInput")
