"""gRPC transport: the server for kninfer.grpc.servicer, with kninfer's error map.

KServe's `ExceptionToStatusInterceptor` sends any error it does not know as INTERNAL; here every
exception goes through `kninfer.errors.grpc_code_of`, so a client mistake is INVALID_ARGUMENT, an
unknown model NOT_FOUND and a model that is not ready UNAVAILABLE (gRPC status codes,
grpc/doc/statuscodes.md).
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any, NoReturn

import grpc
from grpc import aio
from grpc_interceptor.exceptions import GrpcException
from grpc_interceptor.server import AsyncServerInterceptor

from kninfer.dataplane import DataPlane
from kninfer.errors import grpc_code_of, message_of, status_of

logger = logging.getLogger("kninfer")


class ErrorStatusInterceptor(AsyncServerInterceptor):
    async def intercept(
        self, method: Any, request_or_iterator: Any, context: Any, method_name: str
    ) -> Any:
        try:
            return await method(request_or_iterator, context)
        except GrpcException as exc:
            await context.abort(exc.status_code, exc.details)
        except Exception as exc:
            await self.abort(exc, context, method_name)

    async def abort(self, exc: Exception, context: Any, method_name: str) -> NoReturn:
        if status_of(exc) >= 500:
            logger.error("gRPC %s failed", method_name, exc_info=exc)
        code = getattr(grpc.StatusCode, grpc_code_of(exc))
        await context.abort(code, message_of(exc))
        raise AssertionError("unreachable: context.abort raises")


def build_grpc_server(
    dataplane: DataPlane, port: int, host: str, max_message_bytes: int, threads: int = 4
) -> aio.Server:
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

    from kninfer.grpc.servicer import InferenceServicer
    from kninfer.observability.grpc import grpc_interceptor

    server = aio.server(
        futures.ThreadPoolExecutor(max_workers=threads),
        # Outermost first: metrics see the status the error map chose.
        interceptors=(grpc_interceptor(), ErrorStatusInterceptor()),
        options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ],
    )
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(dataplane), server
    )
    address = f"[::]:{port}" if host in ("0.0.0.0", "::") else f"{host}:{port}"
    server.add_insecure_port(address)
    return server
