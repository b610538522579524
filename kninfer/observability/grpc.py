"""The gRPC side of kninfer.observability: a server interceptor counting `ModelInfer` calls,
binding their trace context and, with tracing on, recording each call's server span.
"""

from __future__ import annotations

import time
from typing import Any

from kninfer.observability import tracing
from kninfer.observability.prometheus import GRPC_V2, request_counts
from kninfer.observability.tracing import set_trace_context


def grpc_interceptor() -> Any:
    """A grpc.aio interceptor counting `ModelInfer` calls; imported lazily (grpc is optional on
    the cold-start path, gRPC starts after HTTP)."""
    from grpc_interceptor.server import AsyncServerInterceptor

    class MetricsInterceptor(AsyncServerInterceptor):  # type: ignore[misc]
        async def intercept(
            self, method: Any, request_or_iterator: Any, context: Any, method_name: str
        ) -> Any:
            if not method_name.endswith("/ModelInfer"):
                return await method(request_or_iterator, context)
            metadata = dict(context.invocation_metadata() or ())
            set_trace_context(metadata.get("traceparent"), metadata.get("tracestate"))
            model = getattr(request_or_iterator, "model_name", "") or ""
            gauge = request_counts.gauge(GRPC_V2)
            gauge.inc()
            started = time.perf_counter()
            status = "UNKNOWN"
            # OpenTelemetry (kninfer.observability.otel): the call's server span; off, one check.
            otel = tracing.OTEL
            span = otel.start_grpc(method_name, metadata, model) if otel is not None else None
            if span is not None:  # the answer names the call's span
                context.set_trailing_metadata((("traceparent", span.traceparent),))
            try:
                result = await method(request_or_iterator, context)
                code = context.code()
                status = code.name if code is not None else "OK"
                return result
            except BaseException:
                code = context.code()
                status = code.name if code is not None else "UNKNOWN"
                raise
            finally:
                gauge.dec()
                request_counts.count(GRPC_V2, model, status, time.perf_counter() - started)
                if span is not None and otel is not None:
                    otel.end_grpc(span, status, model)

    return MetricsInterceptor()
