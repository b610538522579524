"""Reading KServe's `InferInput` without decoding a tensor twice.

A tensor decoded by kninfer's REST codec is an `InferInput` whose `data` is already the numpy
array; one from KServe's gRPC decoder (`InferRequest.from_grpc`) holds raw bytes that
`as_numpy()` decodes. KServe 0.21 says which by its private `_raw_data`; on any other kserve
version (kninfer._compat.fenced) every tensor goes through the public `as_numpy()`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kninfer._compat import fenced


def decoded_array(infer_input: Any) -> np.ndarray | None:
    """The input's numpy array if it is decoded already, else None (call `as_numpy()`)."""
    data = infer_input.data
    if isinstance(data, np.ndarray) and fenced() and infer_input._raw_data is None:
        return data
    return None
