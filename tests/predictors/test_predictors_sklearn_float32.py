"""Which scikit-learn estimators compare X in float32 (kninfer.predictors.sklearn), told by the
public class names they derive from, and checked against what scikit-learn itself does with a
finite float64 beyond float32's range: the trees refuse it, everything else takes it as it is.
(IsolationForest casts to float32 too but lets infinity through, so only its name is checked.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def estimators() -> list[tuple[Any, bool]]:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        IsolationForest,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.tree import DecisionTreeClassifier, ExtraTreeRegressor

    class OwnForest(RandomForestClassifier):  # a user's subclass is still a forest
        pass

    small = {"n_estimators": 3}
    return [
        (DecisionTreeClassifier(), True),
        (ExtraTreeRegressor(), True),
        (RandomForestClassifier(**small), True),
        (RandomForestRegressor(**small), True),
        (ExtraTreesClassifier(**small), True),
        (ExtraTreesRegressor(**small), True),
        (GradientBoostingClassifier(**small), True),
        (GradientBoostingRegressor(**small), True),
        (IsolationForest(**small), True),
        (OwnForest(**small), True),
        (LogisticRegression(), False),
        (Ridge(), False),
        (HistGradientBoostingClassifier(max_iter=3), False),
    ]


@pytest.mark.parametrize("index", range(13))
def test_float32_trees_are_the_ones_sklearn_casts(index: int) -> None:
    from kninfer.predictors.sklearn import _computes_in_float32

    estimator, in_float32 = estimators()[index]
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 3))
    labels = (features[:, 0] > 0).astype(int)
    estimator.fit(features, labels)
    assert _computes_in_float32(estimator) is in_float32, type(estimator).__name__
    beyond_float32 = np.array([[1e39, 0.0, 0.0]])
    if not in_float32:
        estimator.predict(beyond_float32)  # float64 all the way: no complaint
    elif not hasattr(estimator, "score_samples"):  # IsolationForest takes infinity silently
        with pytest.raises(ValueError, match="float32"):
            estimator.predict(beyond_float32)


def test_a_pipeline_is_not_judged_by_its_trees() -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from kninfer.predictors.sklearn import _computes_in_float32

    assert not _computes_in_float32(make_pipeline(StandardScaler(), RandomForestClassifier()))
