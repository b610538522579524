"""Drift in the server: a reference profile of the training data (`kninfer profile`, or
`build_profile` in Python) written beside the model as `drift_profile.json`, and, when a served
model has one, every answered request counted into the profile's bins and exported to
Prometheus (docs/monitoring.md).

- `profile`: the profile's format, and building one from a DataFrame or an array;
- `monitor`: the live counting, the Prometheus counters and the windowed PSI.

    from kninfer.observability.drift import build_profile

    build_profile(X_train, model=pipeline).write(model_dir)

Importing this package imports neither module: every model's load asks `load_monitor`, and
without a profile that is one stat (the modules cost ~4 ms of a cold start to import).
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kninfer.observability.drift.location import PROFILE_FILE

if TYPE_CHECKING:
    from kninfer.observability.drift.monitor import DriftMonitor
    from kninfer.observability.drift.profile import (
        Feature,
        Profile,
        ProfileError,
        Window,
        build_profile,
        read_profile,
    )

_LAZY = {
    "DriftMonitor": "monitor",
    "Feature": "profile",
    "Profile": "profile",
    "ProfileError": "profile",
    "Window": "profile",
    "build_profile": "profile",
    "read_profile": "profile",
}

__all__ = [
    "PROFILE_FILE",
    "DriftMonitor",
    "Feature",
    "Profile",
    "ProfileError",
    "Window",
    "build_profile",
    "load_monitor",
    "read_profile",
]


def load_monitor(
    model_dir: Path,
    model: str,
    version: str,
    inputs: Collection[str] = (),
    outputs: Collection[str] = (),
) -> DriftMonitor | None:
    """The monitor for MODEL_DIR/drift_profile.json, or None without one
    (kninfer.observability.drift.monitor.load_monitor)."""
    if not (model_dir / PROFILE_FILE).is_file():
        return None
    from kninfer.observability.drift import monitor

    return monitor.load_monitor(model_dir, model, version, inputs, outputs)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
