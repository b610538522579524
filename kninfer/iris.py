"""The embedded default model: iris, a LogisticRegression trained on the data scikit-learn ships.

Training is deterministic (lbfgs, fixed data, no randomness) and runs once per scikit-learn
version: the model is cached under `<cache_dir>/iris-sklearn-<version>/model.joblib` and reused by
every later start with that version. A model pickled by one scikit-learn is never unpickled by
another (scikit-learn warns that this is unsupported), and a machine that upgrades trains afresh,
so its answers are the ones a new machine with the same version gives. Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_SPECIES = ("setosa", "versicolor", "virginica")


def iris_model_dir(cache_dir: Path) -> Path:
    """Where the iris model trained by the installed scikit-learn is cached (nothing is imported:
    the version comes from the package's metadata)."""
    from importlib.metadata import version

    return cache_dir / f"iris-sklearn-{version('scikit-learn')}"


def ensure_iris_model(cache_dir: Path) -> Path:
    """Directory holding `model.joblib` for the iris model, training it on first use."""
    model_dir = iris_model_dir(cache_dir)
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
