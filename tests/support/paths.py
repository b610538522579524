"""Where things are: the checkout, the vendored CRD schemas, the lock checker."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
# The CRDs kninfer validates against: the copy vendored in the package, never a folder outside it.
SCHEMAS = ROOT / "kninfer" / "deploy" / "crds"
# Where the vendored copy was taken from, beside the checkout in the project's own workspace only:
# tests/deploy compares the two when it is there and says so when it is not.
UPSTREAM_SCHEMAS = ROOT.parent / "shared" / "schemas"


def lock_checker() -> ModuleType:
    """requirements/check.py (the lock reader `make check-lock` runs; a script, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lock_check", ROOT / "requirements" / "check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
