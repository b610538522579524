"""Cold start: keep what a served model never uses off the import path of `import kserve`.

`import kserve` (0.21) imports, at module level and for every user: pandas (in
`kserve.protocol.infer_type` and `kserve.utils.utils`, used only by `as_dataframe` and the V1
DataFrame helpers), the Kubernetes client with requests, google-auth, oauthlib and tabulate (in
`kserve.api.kserve_client`, the InferenceService CRUD client a model server never calls) and, via
httpx, its command-line entry point with rich and pygments. Together that is about a third of
`import kserve` on this machine (`python -X importtime`; README "Performance and observability").

`deferred_imports()` wraps the one `import kserve` of `kninfer serve`:

- `pandas` inside kserve binds to a stand-in module; the real pandas is imported the first time
  kserve code actually uses an attribute after start-up (placeholder classes answer the
  annotations kserve evaluates while importing). The stand-in never stays in `sys.modules`, so
  `import pandas` anywhere else (the MLflow predictor, a DataFrame-fitted estimator, sklearn's
  `sys.modules["pandas"]` checks) sees the real module or none at all.
- `kserve.api.kserve_client` is a stand-in whose `KServeClient` builds the real client on first
  use; `import kserve.api.kserve_client` afterwards gets the real module.
- `fastapi` (and its submodules) are stand-ins too: kserve imports FastAPI for its own REST
  server and builds an app at import (kserve/model_server.py), but kninfer serves HTTP with
  Starlette (kninfer.rest) and never runs that app. Classes kserve names while importing are
  placeholders that accept any arguments; after start-up, attribute reads import the real
  fastapi, and `import fastapi` elsewhere gets the real package.
- `httpx._main` (the `httpx` console script) is reported missing, which httpx handles by
  defining a stub `main` (httpx/__init__.py); the library itself is untouched.

Anything else is imported normally. Set KNINFER_EAGER_IMPORTS=1 to turn the shim off.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any

_window_open = False


class _Placeholder:
    """Accepts any construction; stands in for a class kserve names while it imports."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


class _DeferredModule(types.ModuleType):
    """A module that imports the real one on first attribute use outside the import window.

    Nothing is cached on the stand-in: after the window every attribute read goes to the real
    module, so `isinstance(x, pd.DataFrame)` in kserve means the real DataFrame.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._kninfer_placeholders: dict[str, type] = {}

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "_kninfer_placeholders":
            raise AttributeError(attr)
        if _window_open:
            # An annotation such as `-> pd.DataFrame`, or `FastAPI(...)` building
            # kserve.model_server's module-level app that kninfer never serves.
            placeholders = self._kninfer_placeholders
            if attr not in placeholders:
                placeholders[attr] = type(attr, (_Placeholder,), {"__module__": self.__name__})
            return placeholders[attr]
        real = sys.modules.get(self.__name__)
        if real is None or real is self:
            sys.modules.pop(self.__name__, None)
            real = importlib.import_module(self.__name__)
        return getattr(real, attr)


class _KServeClientModule(types.ModuleType):
    """Stand-in for kserve.api.kserve_client: `KServeClient(...)` builds the real client."""

    def __init__(self, name: str) -> None:
        super().__init__(name)

        class KServeClient:
            def __new__(cls, *args: Any, **kwargs: Any) -> Any:
                if isinstance(sys.modules.get(name), _KServeClientModule):
                    del sys.modules[name]
                return importlib.import_module(name).KServeClient(*args, **kwargs)

        self.KServeClient = KServeClient


class _StandInLoader(importlib.abc.Loader):
    def __init__(self, factory: Any) -> None:
        self.factory = factory

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module: types.ModuleType = self.factory(spec.name)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _MissingLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        raise ImportError(f"{spec.name} deferred by kninfer.fastimport", name=spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


STAND_INS: dict[str, Any] = {
    "pandas": _DeferredModule,
    "kserve.api.kserve_client": _KServeClientModule,
}
MISSING = frozenset({"httpx._main"})


# Packages whose every submodule is a _DeferredModule during the window.
DEFERRED_PACKAGES = ("fastapi",)


def _is_deferred_package(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in DEFERRED_PACKAGES)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname in STAND_INS:
            return importlib.machinery.ModuleSpec(fullname, _StandInLoader(STAND_INS[fullname]))
        if _is_deferred_package(fullname):
            return importlib.machinery.ModuleSpec(fullname, _StandInLoader(_DeferredModule),
                                                  is_package=True)
        if fullname in MISSING:
            return importlib.machinery.ModuleSpec(fullname, _MissingLoader())
        return None


@contextlib.contextmanager
def deferred_imports(*preload: str) -> Iterator[None]:
    """Import kserve (and what kninfer's server needs) inside this block.

    `preload` names modules to import inside the window as well: scikit-learn >= 1.6 imports
    pandas in `sklearn.utils.fixes` without using it at import time, so a scikit-learn predictor
    preloads `sklearn.utils` here and pays for pandas only if a model really uses it.
    """
    global _window_open
    if os.environ.get("KNINFER_EAGER_IMPORTS") or "kserve" in sys.modules:
        yield  # kserve is imported already (or we were asked not to defer): nothing to do
        return
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    _window_open = True
    try:
        yield
        for name in preload:
            importlib.import_module(name)
    finally:
        _window_open = False
        sys.meta_path.remove(finder)
        for name, module in list(sys.modules.items()):
            if isinstance(module, (_DeferredModule, _KServeClientModule)):
                del sys.modules[name]
