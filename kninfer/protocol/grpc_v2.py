"""V2 gRPC codec: KServe's protobuf messages (the Open Inference Protocol's grpc_predict_v2.proto)
to and from `InferRequest`/`InferResponse`, with the REST codec's checks and words.

KServe's `InferRequest.from_grpc` checks nothing: protobuf shapes are int64, so a negative
dimension would reach numpy's reshape as "infer this one", and an unknown datatype would be
refused later as "invalid content type". Here both are refused first, as kninfer.protocol.v2
refuses them, and so are the two raw-contents mistakes KServe's servicer checks
(`raw_input_contents` count, `contents` beside raw contents; grpc_predict_v2.proto,
"ModelInferRequest"), in KServe's words. The protobuf classes are KServe's, imported when first
used.
"""

from __future__ import annotations

from typing import Any

from kserve import InferRequest, InferResponse

from kninfer._compat.kserve_grpc import response_to_grpc
from kninfer.errors import InvalidInput
from kninfer.protocol.v2 import checked_datatype, checked_shape


def decode_grpc_request(request: Any) -> InferRequest:
    """A `ModelInferRequest` as an InferRequest, checked; tensors stay raw until first read
    (kninfer.protocol.v2.input_array decodes them)."""
    raw_count = len(request.raw_input_contents)
    if raw_count and raw_count != len(request.inputs):
        raise InvalidInput(
            f"the number of inputs ({len(request.inputs)}) does not match the expected number of "
            f"raw input contents ({raw_count}) for model '{request.model_name}'."
        )
    for tensor in request.inputs:
        if raw_count and tensor.HasField("contents"):
            raise InvalidInput(
                "contents field must not be specified when using raw_input_contents for input "
                f"'{tensor.name}' for model '{request.model_name}'"
            )
        checked_datatype(tensor.name, tensor.datatype, exact_case=True)
        checked_shape(tensor.name, list(tensor.shape))
        if not raw_count and not tensor.HasField("contents"):
            raise InvalidInput(
                f"input '{tensor.name}' has no 'contents' (and the request has no "
                "raw_input_contents)"
            )
    return InferRequest.from_grpc(request)


def encode_grpc_response(response: Any) -> Any:
    """The model's answer as a `ModelInferResponse`; numpy outputs travel as
    `raw_output_contents` (kninfer._compat.kserve_grpc)."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    if isinstance(response, pb.ModelInferResponse):
        return response
    if isinstance(response, InferResponse):
        return response_to_grpc(response)
    return pb.ModelInferResponse(
        id=response["id"], model_name=response["model_name"], outputs=response["outputs"]
    )
