"""The Open Inference Protocol's gRPC service (grpc_predict_v2.proto, `GRPCInferenceService`) over
kninfer's dataplane: each method decodes (kninfer.protocol.grpc_v2), asks kninfer.dataplane, and
encodes; errors propagate to kninfer.grpc.server's interceptor, the one gRPC error map.

The repository extension methods (`RepositoryModelLoad`/`Unload`) are not served: a Knative
revision serves the model it started with, so they answer UNIMPLEMENTED (the generated base
class's answer).
"""

from __future__ import annotations

from typing import Any

from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceServicer

from kninfer.dataplane import DataPlane
from kninfer.observability import tracing
from kninfer.protocol.grpc_v2 import decode_grpc_request, encode_grpc_response


class InferenceServicer(GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, dataplane: DataPlane) -> None:
        super().__init__()
        self.dataplane = dataplane

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.dataplane.ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        metadata = self.dataplane.server_metadata()
        return pb.ServerMetadataResponse(
            name=metadata["name"], version=metadata["version"], extensions=metadata["extensions"]
        )

    async def ModelReady(self, request: Any, context: Any) -> Any:
        return pb.ModelReadyResponse(
            ready=self.dataplane.model_ready(request.name, request.version or None)
        )

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        metadata = self.dataplane.model_metadata(request.name, request.version or None)
        return pb.ModelMetadataResponse(
            name=metadata["name"],
            platform=metadata["platform"],
            versions=metadata.get("versions", []),
            inputs=metadata["inputs"],
            outputs=metadata["outputs"],
        )

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        headers = {key: value for key, value in (context.invocation_metadata() or ())}
        model = self.dataplane.ready_model(request.model_name, request.model_version or None)
        with tracing.step(tracing.DECODE):
            infer_request = decode_grpc_request(request)
        response, _ = await self.dataplane.infer(model, infer_request, headers)
        with tracing.step(tracing.ENCODE):
            return encode_grpc_response(response)
