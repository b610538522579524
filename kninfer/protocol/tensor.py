"""V2 tensor datatypes and declared tensor specs (name, datatype, shape with -1 for free dims).

Open Inference Protocol, "Tensor Data Types": BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32,
FP64, BYTES (BF16 is added for GPU models; numpy has no bf16, so it travels as binary only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kninfer.errors import InvalidInput

# Tensors by name: what a request's inputs decode to and what a model's outputs are.
Arrays = dict[str, np.ndarray]

V2_TO_NUMPY: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}

NUMPY_TO_V2: dict[Any, str] = {np.dtype(v): k for k, v in V2_TO_NUMPY.items()}

NUMERIC_DATATYPES = frozenset(V2_TO_NUMPY) - {"BYTES"}


def v2_datatype_of(array: np.ndarray) -> str:
    """V2 datatype name of a numpy array (unicode/bytes arrays are BYTES)."""
    if array.dtype.kind in ("U", "S", "O"):
        return "BYTES"
    try:
        return NUMPY_TO_V2[array.dtype]
    except KeyError:
        raise InvalidInput(f"numpy dtype {array.dtype} has no V2 datatype") from None


@dataclass(frozen=True)
class TensorSpec:
    """A declared input or output: what model metadata states and what requests are checked against.

    `datatype` is the one stated in metadata; `accepts`, when given, is every datatype a request
    may send for this input instead (list `datatype` in it too), else only `datatype` is accepted.
    `shape` uses -1 for a dimension of any size. An `optional` input may be left out.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    accepts: tuple[str, ...] = field(default=())
    optional: bool = False

    @property
    def accepted_datatypes(self) -> tuple[str, ...]:
        return self.accepts or (self.datatype,)

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def check(self, array: np.ndarray, datatype: str) -> None:
        """Raise InvalidInput when `array` (declared as `datatype`) does not fit this spec."""
        if datatype not in self.accepted_datatypes:
            raise InvalidInput(
                f"input '{self.name}' has datatype {datatype}; expected one of "
                f"{', '.join(self.accepted_datatypes)}"
            )
        if not shape_matches(array.shape, self.shape):
            raise InvalidInput(
                f"input '{self.name}' has shape {list(array.shape)}; expected {list(self.shape)} "
                "(-1 is any size)"
            )


def shape_matches(actual: Sequence[int], declared: Sequence[int]) -> bool:
    if len(actual) != len(declared):
        return False
    return all(d == -1 or a == d for a, d in zip(actual, declared, strict=True))


def model_metadata(
    name: str,
    platform: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    version: str = "",
) -> dict[str, Any]:
    """V2 model metadata (Open Inference Protocol, "Model Metadata Response JSON Object"; the
    gRPC ModelMetadataResponse carries the same fields). `versions` holds the one version this
    server serves, when it has one."""
    return {
        "name": name,
        "versions": [version] if version else [],
        "platform": platform,
        "inputs": inputs,
        "outputs": outputs,
    }


class DeclaresTensors:
    """Mixin for a model that states its tensors: `inputs`/`outputs` as TensorSpecs, answered as
    KServe's `get_input_types`/`get_output_types` and as V2 model metadata. Predictors and
    transformers both put it before `kserve.Model`."""

    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # The version this server serves ("" when it states none): metadata, responses, routes.
    version: str = ""
    # Why a model that was ready stopped being so (its file changed under it), for the 503.
    not_ready_reason: str | None = None

    @property
    def platform(self) -> str:
        raise NotImplementedError

    def get_input_types(self) -> list[dict[str, Any]]:
        return [spec.metadata() for spec in self.inputs]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [spec.metadata() for spec in self.outputs]

    def metadata(self) -> dict[str, Any]:
        return model_metadata(
            self.name, self.platform, self.get_input_types(), self.get_output_types(), self.version
        )


def served_version(model: object) -> str:
    """The version a served model states (DeclaresTensors.version), else "": a bare
    `kserve.Model`, or no model, states none."""
    return model.version if isinstance(model, DeclaresTensors) else ""
