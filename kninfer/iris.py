"""The embedded default model: iris, a LogisticRegression trained on the data scikit-learn ships.

Training is deterministic (lbfgs, fixed data, no randomness) and runs once: the model is cached
under `<cache_dir>/iris/model.joblib` and reused by every later start. Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_SPECIES = ("setosa", "versicolor", "virginica")


def ensure_iris_model(cache_dir: Path) -> Path:
    """Directory holding `model.joblib` for the iris model, training it on first use."""
    model_dir = cache_dir / "iris"
    target = model_dir / "model.joblib"
    if target.is_file():
        return model_dir
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    model = LogisticRegression(max_iter=1000).fit(data.data, data.target)
    model_dir.mkdir(parents=True, exist_ok=True)
    # Write then rename, so concurrent first starts never read a half-written file.
    partial = model_dir / f".model.joblib.{os.getpid()}"
    joblib.dump(model, partial)
    partial.replace(target)
    return model_dir
