"""Why a compile stops. Each is a kninfer error, so the command prints its message and exits."""

from __future__ import annotations

from kninfer.errors import KninferError

# Every refusal to write model.onnx says this: nothing changes for the running service.
STILL_SERVED = "model.onnx not written; the model keeps being served by scikit-learn"
# The same for a PyTorch model (kninfer.compile.torch_export).
STILL_SERVED_BY_TORCH = "model.onnx not written; the model keeps being served by PyTorch"


class CompileError(KninferError):
    """The model could not be compiled; exit status 1."""


class NotConvertible(CompileError):
    """The estimator has no ONNX converter, or its converter failed: one line naming it."""


class VerificationFailed(CompileError):
    """The converted graph disagrees with the estimator on the verification rows."""
