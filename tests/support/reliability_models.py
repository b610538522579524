"""Estimators whose timing the test controls, for the reliability tests (drain, timeouts, limits).

They are pickled with joblib into tmp_path and served by a real `kninfer serve --predictor
sklearn`; the server process finds this module through PYTHONPATH (see `model_env`).

`SlowClassifier.predict` sleeps for as many milliseconds as the first feature of the first row says
(capped at 60 s), so a client picks each request's duration; an all-zero row (what warm-up sends)
sleeps `zero_delay_s`, so a test can make warm-up slow without touching the load path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

# The checkout's root: the server process imports this module as tests.support.reliability_models.
ROOT = Path(__file__).resolve().parents[2]


class SlowClassifier:
    def __init__(self, zero_delay_s: float = 0.0) -> None:
        self.zero_delay_s = zero_delay_s
        self.n_features_in_ = 4
        self.classes_ = np.array([0, 1, 2])

    def predict(self, features: Any) -> np.ndarray:
        rows = np.asarray(features, dtype=np.float64)
        first = float(rows[0, 0]) if rows.size else 0.0
        if not rows.any():
            time.sleep(self.zero_delay_s)
        elif 0.0 < first <= 60_000.0:
            time.sleep(first / 1000.0)
        return np.arange(len(rows)) % 3


class BrokenClassifier(SlowClassifier):
    """Loads fine, fails its first prediction: what warm-up is there to catch."""

    def predict(self, features: Any) -> np.ndarray:
        raise RuntimeError("weights are corrupt")


def save_model(model_dir: Path, estimator: Any) -> Path:
    import joblib

    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, model_dir / "model.joblib")
    return model_dir


def model_env() -> dict[str, str]:
    """Environment that lets a server process unpickle the classes above."""
    existing = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), existing) if p)}
