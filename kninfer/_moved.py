"""Module-level `__getattr__` for a module whose names moved (PEP 562): each old name still
resolves, from its new module, with a `DeprecationWarning` that names the new path.

Used by the paths the docs showed before the layout change (`kninfer.tensor`, `kninfer.codec`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib import import_module
from typing import Any


def moved_names(old_module: str, new_homes: dict[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` of OLD_MODULE, whose names now live in NEW_HOMES (name -> module)."""

    def __getattr__(name: str) -> Any:
        home = new_homes.get(name)
        if home is None:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        new_path = f"{home}.{name}"
        public = f"kninfer.{name}" if name in _public_names() else None
        warnings.warn(
            f"{old_module}.{name} moved to {public or new_path}; import it from there "
            f"({old_module} will be removed in kninfer 0.3)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(import_module(home), name)

    return __getattr__


def _public_names() -> set[str]:
    import kninfer

    return set(kninfer.__all__)
