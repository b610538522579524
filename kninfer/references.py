"""`package.module:Class` references, as `--transformer`, `--torch-module` and the family table
name classes: imported only when used, with one error (ModelLoadError, so start-up fails with
one line naming the reason) for every way the reference can be wrong."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from kninfer.errors import ModelLoadError


def import_class(target: str, what: str, search_path: Path | None = None) -> Any:
    """The attribute `target` (`package.module:Class`) names. `what` says what it is for the
    error ("transformer", "--torch-module"); `search_path` is tried first (a model directory
    holding its own `model.py`, as TorchServe's model files do)."""
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise ModelLoadError(f"{what} must be 'package.module:Class', got '{target}'")
    if search_path is not None:
        sys.path.insert(0, str(search_path))
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"cannot import {what} '{target}': {exc}") from None
    finally:
        if search_path is not None:
            sys.path.remove(str(search_path))
