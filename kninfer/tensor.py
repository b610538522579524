"""Deprecated: `kninfer.tensor` moved to `kninfer.protocol.tensor` (TensorSpec: `kninfer`).

Each name still imports from here, with a DeprecationWarning naming its new path.
"""

from __future__ import annotations

from kninfer._moved import moved_names

__getattr__ = moved_names(
    "kninfer.tensor",
    {
        name: "kninfer.protocol.tensor"
        for name in (
            "TensorSpec",
            "V2_TO_NUMPY",
            "NUMERIC_DATATYPES",
            "v2_datatype_of",
            "shape_matches",
        )
    },
)
