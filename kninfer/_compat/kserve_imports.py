"""Cold start: keep what a served model never uses off the import path of `import kserve`.

`import kserve` (0.21) imports, at module level and for every user: pandas (in
`kserve.protocol.infer_type` and `kserve.utils.utils`, used only by `as_dataframe` and the V1
DataFrame helpers), the Kubernetes client with requests, google-auth, oauthlib and tabulate (in
`kserve.api.kserve_client`, the InferenceService CRUD client a model server never calls) and, via
httpx, its command-line entry point with rich and pygments. Together that is about a third of
`import kserve` on this machine (`python -X importtime`; docs/performance.md).

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
  Starlette (kninfer.http) and never runs that app. Classes kserve names while importing are
  placeholders that accept any arguments (and stand for the real class after the window, see
  `_LazyClass`); after start-up, attribute reads import the real fastapi, and `import fastapi`
  elsewhere gets the real package.
- `httpx._main` (the `httpx` console script) is reported missing, which httpx handles by
  defining a stub `main` (httpx/__init__.py); the library itself is untouched.
- The swagger Kubernetes-API classes: kserve/__init__.py binds `ApiClient` (kserve.api_client),
  `Configuration` (kserve.configuration) and ~100 `V1beta1...`/`V1alpha1...` classes
  (kserve.models.*), which pull urllib3, dateutil and certifi. Only the KServeClient above
  uses them. These modules are stand-ins; at the end of the window the names in kserve's own
  namespace are replaced by a module `__getattr__`, so `kserve.V1beta1InferenceService` or
  `from kserve import ApiClient` imports and returns the real class.
- `kserve.protocol.rest.server` and `kserve.protocol.rest.multiprocess.server`: KServe's FastAPI
  REST server (with its v1/v2 endpoints, the time-series API and timing_asgi), imported by
  kserve/model_server.py only for `ModelServer.start`, which kninfer.server.lifecycle overrides.
- `kserve.protocol.rest.v2_datamodels` (pydantic models built at import): kserve/protocol/
  infer_type.py names `InferenceRequest` in an annotation; kserve/protocol/dataplane.py tests
  `isinstance(body, InferenceRequest)` in `decode`. The name stays bound to a placeholder class
  whose metaclass (`_LazyClass`) answers for the real class after the window: construction,
  class attributes, `isinstance`/`issubclass` (False, without importing, while the real module
  is not loaded, as nothing can then be an instance). kninfer hands kserve `InferRequest`s, so
  serving never imports the module.
- `yaml`: kserve/logging.py imports it at module level for `yaml.safe_load` of a logging config
  file (`configure_logging`); the stand-in imports the real yaml on that call.
- `psutil`: kserve/utils/utils.py (`cpu_count()`) and joblib's loky backend (`from psutil import
  Process`, `psutil.Process(...)`) bind stand-ins that use the real psutil on first call.
  kninfer.server.startup reads its own process age from /proc instead.
- `rich` is reported missing: sklearn/callback/_progressbar.py imports it in a `try` for the
  ProgressBar training callback (defining its rich-based classes only if the import works), so
  that callback fails in a `kninfer serve` process, which never fits. A scikit-learn predictor
  preloads `sklearn.callback` in the window, as most estimators import it (through
  sklearn.preprocessing) while the model loads.
- `numpy.f2py` and `numpy.testing` (with unittest, and charset_normalizer that f2py's
  crackfortran uses if installed): numpy imports them lazily on first attribute access
  (numpy/__init__.py `__getattr__`), and the array-API shims of scipy and scikit-learn
  (`array_api_compat.numpy`, `clone_module`) read every numpy attribute while
  sklearn.utils imports. They bind stand-ins that import the real module on first use;
  `import numpy.testing` afterwards gets the real one.

Stand-ins are handed to every module that imports one of these names during the window (the
list of importers above is what `-X importtime` shows for the serve path), and placeholders are
only ever bound where such a module said `from X import Name` (or read `X.Name` at import).
They must never stand for an exception class that is caught by `except` (CPython matches
exceptions on the real class hierarchy, not `__subclasscheck__`);
tests/_compat/test_kserve_imports.py pins the list of placeholders the serve path leaves bound.

Anything else is imported normally. `--eager-imports` (KNINFER_EAGER_IMPORTS=1) turns the shim
off; so does any kserve version but the one it was written for (kninfer._compat.fenced).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any

from kninfer._compat import fenced

_window_open = False


class _LazyClass(type):
    """Metaclass of the placeholder classes: inside the import window a placeholder accepts any
    construction and is nothing's class; after it, the placeholder stands for the real class.

    `from kserve.protocol.rest.v2_datamodels import InferenceRequest` binds the placeholder for
    good in the importing module (kserve/protocol/dataplane.py tests `isinstance(body,
    InferenceRequest)` in `DataPlane.decode`), so after the window construction, `isinstance`,
    `issubclass` and class-attribute reads go to the real class. `isinstance` and `issubclass`
    answer False without importing anything while the real module is not loaded: no instance or
    subclass of a class whose module was never imported can exist. Only the placeholder itself
    delegates; a class kserve derived from one inside the window stays an ordinary class.
    """

    _kninfer_target: tuple[str, str]

    def _kninfer_delegates(cls) -> bool:
        return not _window_open and "_kninfer_target" in cls.__dict__

    def _kninfer_real(cls) -> Any:
        module, name = cls._kninfer_target
        return getattr(_real_module(module), name)

    def _kninfer_loaded(cls) -> bool:
        module = sys.modules.get(cls._kninfer_target[0])
        return module is not None and not isinstance(module, _STAND_IN_TYPES)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls._kninfer_delegates():
            return cls._kninfer_real()(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        if cls._kninfer_delegates():
            return cls._kninfer_loaded() and isinstance(obj, cls._kninfer_real())
        return super().__instancecheck__(obj)

    def __subclasscheck__(cls, sub: type) -> bool:
        if cls._kninfer_delegates():
            return cls._kninfer_loaded() and issubclass(sub, cls._kninfer_real())
        return super().__subclasscheck__(sub)

    def __getattr__(cls, attr: str) -> Any:
        # Only reached for names the placeholder lacks (anything but its own few dunders).
        if attr.startswith("__") or attr.startswith("_kninfer") or not cls._kninfer_delegates():
            raise AttributeError(attr)
        return getattr(cls._kninfer_real(), attr)


class _Placeholder(metaclass=_LazyClass):
    """Accepts any construction; stands in for a class kserve names while it imports."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


def _placeholder(module: str, attr: str) -> type:
    return _LazyClass(
        attr, (_Placeholder,), {"__module__": module, "_kninfer_target": (module, attr)}
    )


def _real_module(name: str) -> types.ModuleType:
    real = sys.modules.get(name)
    if real is None or isinstance(real, _STAND_IN_TYPES):
        sys.modules.pop(name, None)
        real = importlib.import_module(name)
    return real


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
            # An annotation such as `-> pd.DataFrame`, `FastAPI(...)` building
            # kserve.model_server's module-level app that kninfer never serves, or a
            # `from kserve.models.x import V1beta1X` in kserve/__init__.py.
            placeholders = self._kninfer_placeholders
            if attr not in placeholders:
                placeholders[attr] = _placeholder(self.__name__, attr)
            return placeholders[attr]
        return getattr(_real_module(self.__name__), attr)


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
        raise ImportError(f"{spec.name} deferred by kninfer._compat.kserve_imports", name=spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


STAND_INS: dict[str, Any] = {
    "pandas": _DeferredModule,
    "kserve.api.kserve_client": _KServeClientModule,
}
# Reported as not installed during the window; each importer handles the ImportError.
MISSING = frozenset({"httpx._main", "rich"})


# Modules (and their submodules) that are a _DeferredModule during the window.
DEFERRED_PACKAGES = (
    "fastapi",
    "kserve.api_client",
    "kserve.configuration",
    "kserve.models",
    "kserve.protocol.rest.server",
    "kserve.protocol.rest.multiprocess.server",
    "kserve.protocol.rest.v2_datamodels",
    "yaml",
    "psutil",
    "numpy.f2py",
    "numpy.testing",
)

# Packages whose public names bound to placeholders are rebound lazily to the real objects at
# the end of the window (module `__getattr__`, PEP 562), so `kserve.V1beta1InferenceService`
# and `from kserve import ApiClient` give the real class itself.
REBOUND_PACKAGES = ("kserve",)

_STAND_IN_TYPES = (_DeferredModule, _KServeClientModule)


def _is_deferred_package(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in DEFERRED_PACKAGES)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in STAND_INS:
            return importlib.machinery.ModuleSpec(fullname, _StandInLoader(STAND_INS[fullname]))
        if _is_deferred_package(fullname):
            return importlib.machinery.ModuleSpec(
                fullname, _StandInLoader(_DeferredModule), is_package=True
            )
        if fullname in MISSING:
            return importlib.machinery.ModuleSpec(fullname, _MissingLoader())
        return None


def _rebind_lazily(package: types.ModuleType) -> None:
    """Replace the placeholders in `package`'s namespace by a module `__getattr__` that imports
    the real object on first use (and binds it, so the lookup happens once)."""
    namespace = vars(package)
    targets = {
        name: value._kninfer_target
        for name, value in list(namespace.items())
        if isinstance(value, _LazyClass) and "_kninfer_target" in vars(value)
    }
    if not targets or "__getattr__" in namespace:
        return
    for name in targets:
        del namespace[name]

    def __getattr__(name: str) -> Any:
        if name not in targets:
            raise AttributeError(f"module {package.__name__!r} has no attribute {name!r}")
        module, attr = targets[name]
        value = getattr(_real_module(module), attr)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(targets))

    namespace["__getattr__"] = __getattr__
    namespace["__dir__"] = __dir__


def _preload(name: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # e.g. sklearn.callback before scikit-learn 1.9, or scikit-learn not installed at all
        # (the onnx image: a --storage-uri model that turns out to be compiled needs none of it)
        missing = exc.name or ""
        if not (name == missing or name.startswith(missing + ".")):
            raise


@contextlib.contextmanager
def deferred_imports(*preload: str, eager: bool = False) -> Iterator[None]:
    """Import kserve (and what kninfer's server needs) inside this block.

    `preload` names modules to import inside the window as well: scikit-learn >= 1.6 imports
    pandas in `sklearn.utils.fixes` without using it at import time, so a scikit-learn predictor
    preloads `sklearn.utils` here and pays for pandas only if a model really uses it; and
    `sklearn.callback` (imported by `sklearn.preprocessing`, hence by most estimators) imports
    rich only for its ProgressBar, so preloading it here leaves rich out. A preloaded module
    that does not exist in the installed version, or whose package is not installed, is
    skipped.
    """
    global _window_open
    if eager or "kserve" in sys.modules or not fenced():
        # Asked not to defer (--eager-imports), kserve imported already, or a kserve this
        # was not written for (kninfer._compat.fenced warns): a plain import.
        yield
        return
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    _window_open = True
    try:
        yield
        for name in preload:
            _preload(name)
    finally:
        _window_open = False
        sys.meta_path.remove(finder)
        for name, module in list(sys.modules.items()):
            if isinstance(module, _STAND_IN_TYPES):
                del sys.modules[name]
        for name in REBOUND_PACKAGES:
            package = sys.modules.get(name)
            if package is not None:
                _rebind_lazily(package)
