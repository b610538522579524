"""kninfer: scikit-learn, MLflow and PyTorch models as scale-to-zero KServe/Knative services.

Importing this package is cheap on purpose: nothing here imports kserve, a model framework,
or builds an app. The CLI (`kninfer.cli`) decides what to import for the model being served.

The names below are kninfer's public API, what a person needs to write a predictor or a
transformer of their own (docs/api.md). Each is imported from its module on first use (PEP 562),
so `import kninfer` stays cheap and `from kninfer import Transformer` pays only for what a
transformer needs. A change to these names or their signatures is deliberate:
tests/test_public_api.py holds them as a snapshot.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC: dict[str, str] = {
    # writing a transformer
    "Transformer": "kninfer.transformers.base",
    "request_arrays": "kninfer.transformers.base",
    "response_arrays": "kninfer.transformers.base",
    "input_array": "kninfer.protocol.v2",
    # writing a predictor
    "Predictor": "kninfer.predictors.base",
    "TensorSpec": "kninfer.protocol.tensor",
    # errors a model raises; each carries its HTTP status and gRPC code
    "KninferError": "kninfer.errors",
    "InvalidInput": "kninfer.errors",
    "ModelNotFound": "kninfer.errors",
    "PayloadTooLarge": "kninfer.errors",
    "UnsupportedMediaType": "kninfer.errors",
    "Overloaded": "kninfer.errors",
    "ModelNotReady": "kninfer.errors",
    "ServiceUnavailable": "kninfer.errors",
    "UpstreamError": "kninfer.errors",
    "UpstreamTimeout": "kninfer.errors",
    "RequestTimeout": "kninfer.errors",
    "ModelLoadError": "kninfer.errors",
}

# Spelled out (not computed from _PUBLIC) so linters and IDEs read it; tests/test_public_api.py
# checks the two agree.
__all__ = [
    "__version__",
    "InvalidInput",
    "KninferError",
    "ModelLoadError",
    "ModelNotFound",
    "ModelNotReady",
    "Overloaded",
    "PayloadTooLarge",
    "Predictor",
    "RequestTimeout",
    "ServiceUnavailable",
    "TensorSpec",
    "Transformer",
    "UnsupportedMediaType",
    "UpstreamError",
    "UpstreamTimeout",
    "input_array",
    "request_arrays",
    "response_arrays",
]

if TYPE_CHECKING:
    from kninfer.errors import (
        InvalidInput,
        KninferError,
        ModelLoadError,
        ModelNotFound,
        ModelNotReady,
        Overloaded,
        PayloadTooLarge,
        RequestTimeout,
        ServiceUnavailable,
        UnsupportedMediaType,
        UpstreamError,
        UpstreamTimeout,
    )
    from kninfer.predictors.base import Predictor
    from kninfer.protocol.tensor import TensorSpec
    from kninfer.protocol.v2 import input_array
    from kninfer.transformers.base import Transformer, request_arrays, response_arrays


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'kninfer' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value  # once imported, later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
