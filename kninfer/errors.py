"""One error hierarchy, each type carrying its status; the one map for HTTP, gRPC and CloudEvents.

Model code and codecs raise these; transports (REST, gRPC, CloudEvents) call `status_of` and
`grpc_code_of` and never decide a status themselves. This module imports nothing of kninfer's and
nothing heavy, so every layer can depend on it.

KServe's own error types (`kserve.errors.*`) reach us from KServe code kninfer still calls (its
`InferInput.as_numpy`, a custom transformer calling KServe helpers); `status_of` maps them by
name so that importing this module never imports kserve.
"""

from __future__ import annotations

from typing import ClassVar

# One answer for an empty batch in every family and transport (docs/serving.md, "Errors"): a
# 400. Models disagree on zero rows (scikit-learn's check_array raises, a torch module may return
# an empty tensor of any shape), so kninfer refuses the request before any of them sees it.
EMPTY_BATCH = "an empty batch is refused: send at least one row"


class KninferError(Exception):
    """Base of every error kninfer answers on purpose. `status_code` is the HTTP status."""

    status_code: ClassVar[int] = 500
    # Name of the grpc.StatusCode member (kept as a string so this module does not import grpc).
    grpc_code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(KninferError):
    """The client sent something we cannot run: bad JSON, wrong shape, datatype, names, NaN."""

    status_code = 400
    grpc_code = "INVALID_ARGUMENT"


class ModelNotFound(KninferError):
    status_code = 404
    grpc_code = "NOT_FOUND"

    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found; GET /v1/models lists the served models")
        self.name = name


class VersionNotFound(ModelNotFound):
    """A request named a model version this server does not serve (V2's /versions/{v}/ routes,
    gRPC's model_version). KServe answers 501 there; a version it does not have is a 404."""

    def __init__(self, name: str, version: str, served: str) -> None:
        KninferError.__init__(
            self,
            f"model '{name}' has no version '{version}'; this server "
            f"serves version '{served or '(none)'}'",
        )
        self.name = name


class PayloadTooLarge(KninferError):
    status_code = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class UnsupportedMediaType(KninferError):
    status_code = 415
    grpc_code = "INVALID_ARGUMENT"


class Overloaded(KninferError):
    """Too many inferences in flight; the client (or Knative's delivery) should retry."""

    status_code = 429
    grpc_code = "RESOURCE_EXHAUSTED"


class ModelNotReady(KninferError):
    status_code = 503
    grpc_code = "UNAVAILABLE"

    def __init__(self, name: str, why: str = "it is not loaded yet") -> None:
        super().__init__(f"model '{name}' is not ready: {why}")
        self.name = name


class ServiceUnavailable(KninferError):
    """The server is draining or a dependency is down; retryable."""

    status_code = 503
    grpc_code = "UNAVAILABLE"


class UpstreamError(KninferError):
    """A transformer's predictor answered with an error or could not be reached."""

    status_code = 502
    grpc_code = "UNAVAILABLE"


class UpstreamTimeout(KninferError):
    status_code = 504
    grpc_code = "DEADLINE_EXCEEDED"


class RequestTimeout(KninferError):
    status_code = 504
    grpc_code = "DEADLINE_EXCEEDED"


class ModelLoadError(KninferError):
    """The model could not be loaded; the process exits non-zero with this message."""

    status_code = 500
    grpc_code = "INTERNAL"


class WarmupFailed(ModelLoadError):
    """The model loaded, but its warm-up prediction on a valid row failed."""


# KServe 0.21's error types (kserve/errors.py), mapped by class name so this module stays
# import-free. InferenceError is what KServe raises for bad tensors in its codecs.
_KSERVE_STATUS: dict[str, tuple[int, str]] = {
    "InvalidInput": (400, "INVALID_ARGUMENT"),
    "InferenceError": (400, "INVALID_ARGUMENT"),
    "UnsupportedProtocol": (400, "INVALID_ARGUMENT"),
    "ModelNotFound": (404, "NOT_FOUND"),
    "ModelNotReady": (503, "UNAVAILABLE"),
    "ServerNotReady": (503, "UNAVAILABLE"),
    "ServerNotLive": (503, "UNAVAILABLE"),
    "NoModelReady": (503, "UNAVAILABLE"),
}

_HTTP_TO_GRPC: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    413: "RESOURCE_EXHAUSTED",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _kserve_entry(exc: BaseException) -> tuple[int, str] | None:
    if type(exc).__module__.startswith("kserve"):
        return _KSERVE_STATUS.get(type(exc).__name__)
    return None


def status_of(exc: BaseException) -> int:
    """HTTP status for any exception: ours carry it, KServe's are mapped, the rest are 500."""
    if isinstance(exc, KninferError):
        return exc.status_code
    entry = _kserve_entry(exc)
    if entry is not None:
        return entry[0]
    if isinstance(exc, NotImplementedError):
        return 501
    return 500


def grpc_code_of(exc: BaseException) -> str:
    """Name of the grpc.StatusCode member for an exception (see `status_of`)."""
    if isinstance(exc, KninferError):
        return exc.grpc_code
    entry = _kserve_entry(exc)
    if entry is not None:
        return entry[1]
    return _HTTP_TO_GRPC.get(status_of(exc), "INTERNAL")


def message_of(exc: BaseException) -> str:
    """Text for the `{"error": ...}` body. A real server fault never leaks internals."""
    if status_of(exc) == 500 and not isinstance(exc, KninferError):
        return "internal server error; see the server log"
    reason = getattr(exc, "reason", None)  # kserve.errors.* keep their text in .reason
    return str(reason if isinstance(reason, str) else exc)
