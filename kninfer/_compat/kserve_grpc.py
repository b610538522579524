"""Two gaps in KServe 0.21's gRPC V2 support, filled with public APIs (protobuf's and KServe's).

- Parameters: KServe's `grpc_predict_v2.proto` has `InferParameter` as a oneof of bool, int64
  and string; Triton's (triton-inference-server/common grpc_service.proto) adds
  `double_param = 4` and `uint64_param = 5`, which tritonclient sends for a Python float or a
  large int. KServe's generated classes lack the two, so protobuf keeps them as unknown fields;
  `unknown_parameter_value` reads them from there (wire type 1 is 64-bit fixed, 0 a varint;
  protobuf encoding spec). A KServe whose proto has the fields answers through `WhichOneof`
  and never reaches it.
- Responses: `InferResponse.to_grpc` evaluates an output's `data` for truth when it is not raw,
  which raises for a numpy array of more than one element; `response_to_grpc` gives numpy
  outputs as raw bytes first, which is what `to_grpc` produces for them anyway.

Both stay correct on any KServe, so neither asks `fenced()`: they are here because they exist
for KServe's shortcomings, to be dropped when KServe's proto and `to_grpc` no longer need them.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np


def unknown_parameter_value(value: Any) -> float | int | None:
    """A Triton `double_param` or `uint64_param` that KServe's `InferParameter` kept as an
    unknown field; None when it holds neither (or protobuf is older than 4.22, which has no
    public unknown-field reader)."""
    try:
        from google.protobuf.unknown_fields import UnknownFieldSet
    except ImportError:
        return None
    for unknown in UnknownFieldSet(value):
        if unknown.field_number == 4 and unknown.wire_type == 1:
            return float(struct.unpack("<d", struct.pack("<Q", unknown.data))[0])
        if unknown.field_number == 5 and unknown.wire_type == 0:
            return int(unknown.data)
    return None


def response_to_grpc(response: Any) -> Any:
    """A `kserve.InferResponse` as a `ModelInferResponse`, numpy outputs as raw contents."""
    for output in response.outputs:
        if isinstance(output.data, np.ndarray):
            output.set_data_from_numpy(output.data, binary_data=True)
    return response.to_grpc()
