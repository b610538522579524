"""OpenTelemetry traces, exported over OTLP/HTTP (protobuf) (docs/observability.md, "Traces").

Imported only when tracing is on (`ServeSettings.otel_on`: `--otel`, or the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), by kninfer.server.lifecycle,
which calls `start` and, once drained, `stop`; with tracing off neither this module nor anything
of `opentelemetry` is imported. The SDK reads the other standard variables itself: the sampler
(`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the service name and resource
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`; the service name defaults to `K_SERVICE`,
else the served model's name), the exporter's headers, timeout, compression and certificates
(`OTEL_EXPORTER_OTLP_[TRACES_]*`) and the batch span processor's (`OTEL_BSP_*`).

One server span per inference request (HTTP: kninfer.observability.middleware; gRPC:
kninfer.observability.grpc), its parent the request's `traceparent`; the request's trace
context (`kninfer.observability.tracing`) then names that span, so a reply event, a
payload-log event, a transformer's call and the response's `traceparent` header join it. Child
spans (`decode`, `queue`, `predict`, `encode`, `event reply`, `payload log`, `predictor call`)
are made only under a recording request span: an inference outside one (MLflow scoring, a
request the sampler dropped) records nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kninfer import __version__
from kninfer.observability import tracing
from kninfer.observability.prometheus import request_counts

if TYPE_CHECKING:
    from kninfer.settings import ServeSettings

logger = logging.getLogger("kninfer")

_PROPAGATOR = TraceContextTextMapPropagator()

# gRPC's service (grpc_predict_v2.proto, package `inference`), for `rpc.service`.
_GRPC_PREFIX = "/inference.GRPCInferenceService/"


def traceparent_of(span: Span) -> str:
    """The W3C traceparent naming `span` (Trace Context, section 3.2)."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


class Request:
    """One inference request's server span, and what ends it."""

    __slots__ = ("span", "token", "traceparent")

    def __init__(self, span: Span, token: object, traceparent: str) -> None:
        self.span = span
        self.token = token
        self.traceparent = traceparent


class Otel:
    """The tracer and its provider, for the request path (`tracing.OTEL`)."""

    CLIENT = SpanKind.CLIENT

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("kninfer", __version__)

    @staticmethod
    def headers_of(span: Span) -> dict[str, str]:
        """The W3C trace context headers naming `span`, for a call made in it."""
        headers = {"traceparent": traceparent_of(span)}
        state = span.get_span_context().trace_state
        if state:
            headers["tracestate"] = state.to_header()
        return headers

    # ---- the request span -------------------------------------------------------------------

    def start(
        self,
        name: str,
        kind: SpanKind,
        traceparent: str | None,
        tracestate: str | None,
        attributes: Mapping[str, Any],
    ) -> Request:
        """Start the request's server span as a child of `traceparent` (when valid), make it
        current for the request's task, and bind the request's trace context to it."""
        # No valid traceparent: a root span, whatever the task's context held.
        parent = otel_context.Context()
        if tracing.parse_traceparent(traceparent) is not None:
            carrier = {"traceparent": traceparent or ""}
            if tracestate:
                carrier["tracestate"] = tracestate
            parent = _PROPAGATOR.extract(carrier)
        span = self.tracer.start_span(name, parent, kind, attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        value = traceparent_of(span)
        state = span.get_span_context().trace_state
        tracing.bind_trace_context(value, state.to_header() if state else None)
        return Request(span, token, value)

    def start_http(
        self, method: str, path: str, headers: Mapping[str, str], kind: tuple[str, str]
    ) -> Request:
        """The server span of an HTTP inference request (OTel semantic conventions, HTTP server
        spans; `kind` is the middleware's (protocol, model))."""
        protocol, model = kind
        traceparent = headers.get("traceparent")
        tracestate = headers.get("tracestate")
        if traceparent is None and protocol == "cloudevents":
            # A binary-mode CloudEvent's distributed-tracing extension (CloudEvents HTTP binding,
            # 3.1.3): the trace a Broker delivers without the HTTP header.
            traceparent = headers.get("ce-traceparent")
            tracestate = headers.get("ce-tracestate")
        route = _route_of(protocol, path)
        attributes = {
            "http.request.method": method,
            "url.path": path,
            "http.route": route,
            "kninfer.protocol": protocol,
            "kninfer.model": model,
        }
        return self.start(f"{method} {route}", SpanKind.SERVER, traceparent, tracestate, attributes)

    def end_http(self, request: Request, status: int, model: str) -> None:
        span = request.span
        if span.is_recording():
            span.set_attribute("http.response.status_code", status)
            _set_model(span, model)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", str(status))
        span.end()
        otel_context.detach(request.token)  # type: ignore[arg-type]

    def start_grpc(self, method_name: str, metadata: Mapping[str, str], model: str) -> Request:
        """The server span of a gRPC call (OTel semantic conventions, RPC spans)."""
        method = method_name.removeprefix(_GRPC_PREFIX)
        attributes = {
            "rpc.system": "grpc",
            "rpc.service": _GRPC_PREFIX.strip("/"),
            "rpc.method": method,
            "kninfer.protocol": "grpc_v2",
            "kninfer.model": model,
        }
        return self.start(
            method_name.lstrip("/"),
            SpanKind.SERVER,
            metadata.get("traceparent"),
            metadata.get("tracestate"),
            attributes,
        )

    def end_grpc(self, request: Request, code: str, model: str) -> None:
        span = request.span
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", code)
            _set_model(span, model)
            if code != "OK":
                span.set_status(Status(StatusCode.ERROR, code))
        span.end()
        otel_context.detach(request.token)  # type: ignore[arg-type]

    # ---- children ---------------------------------------------------------------------------

    @contextmanager
    def span(
        self,
        name: str,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
    ) -> Iterator[Span | None]:
        """A child of the current span for the block (ERROR when it raises); none (None) when
        the current span is not recording."""
        if not trace.get_current_span().is_recording():
            yield None
            return
        with self.tracer.start_as_current_span(name, kind=kind, attributes=attributes) as span:
            yield span

    def record(
        self,
        name: str,
        start_ns: int,
        end_ns: int | None = None,
        error: BaseException | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """A finished child of the current span, from `start_ns` to `end_ns` (now)."""
        if not trace.get_current_span().is_recording():
            return
        span = self.tracer.start_span(name, attributes=attributes, start_time=start_ns)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end(end_time=end_ns)

    def annotate(self, attributes: Mapping[str, Any], link_traceparent: str | None = None) -> None:
        """Add attributes to the current (request) span, and a link to another trace context
        (a structured-mode CloudEvent's `traceparent` extension) when given."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        span.set_attributes(attributes)
        if link_traceparent and tracing.parse_traceparent(link_traceparent) is not None:
            linked = trace.get_current_span(
                _PROPAGATOR.extract({"traceparent": link_traceparent})
            ).get_span_context()
            parent = getattr(span, "parent", None)  # the SDK's span knows its parent
            if linked.is_valid and (parent is None or parent.span_id != linked.span_id):
                span.add_link(linked, {"kninfer.link": "cloudevent traceparent"})

    @contextmanager
    def send_span(
        self, name: str, traceparent: str, attributes: Mapping[str, Any]
    ) -> Iterator[Span | None]:
        """A client span for work done later for a request (a payload-log event's delivery),
        the child of the request span `traceparent` names; none when that one was not sampled."""
        parent = _PROPAGATOR.extract({"traceparent": traceparent})
        if not trace.get_current_span(parent).get_span_context().trace_flags.sampled:
            yield None
            return
        with self.tracer.start_as_current_span(name, parent, SpanKind.CLIENT, attributes) as span:
            yield span

    @staticmethod
    def mark_error(span: Span, description: str) -> None:
        span.set_status(Status(StatusCode.ERROR, description))

    # ---- shutdown ---------------------------------------------------------------------------

    def shutdown(self, timeout_s: float) -> None:
        """Export what is buffered (for at most `timeout_s`), then stop the exporter thread."""
        try:
            self.provider.force_flush(max(1, int(timeout_s * 1000)))
        finally:
            self.provider.shutdown()


def _route_of(protocol: str, path: str) -> str:
    if protocol == "rest_v1":
        return "/v1/models/{name}:predict"
    if path == "/":
        return "/"
    if "/versions/" in path:
        return "/v2/models/{name}/versions/{version}/infer"
    return "/v2/models/{name}/infer"


def _set_model(span: Span, model: str) -> None:
    span.set_attribute("kninfer.model", model)
    version = request_counts.version_of(model)
    if version:
        span.set_attribute("kninfer.model_version", version)


def service_resource(default_name: str) -> Resource:
    """The SDK's resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, the SDK's own), with
    `default_name` as service.name where neither variable names one."""
    resource = Resource.create()
    name = str(resource.attributes.get(SERVICE_NAME, ""))
    if not name or name.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_name}))
    return resource


def build(service_name: str, endpoint: str | None) -> Otel:
    """The tracer provider: the SDK's sampler (OTEL_TRACES_SAMPLER), a BatchSpanProcessor
    (OTEL_BSP_*) and the OTLP/HTTP protobuf exporter (to `endpoint`, else where the SDK's
    OTEL_EXPORTER_OTLP_* variables or its default, http://localhost:4318/v1/traces, say)."""
    started = time.perf_counter()
    provider = TracerProvider(resource=service_resource(service_name))
    exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # a custom predictor's own spans join the request's
    logger.info(
        "OpenTelemetry traces to %s (service %s, sampler %s; set up in %.0f ms)",
        getattr(exporter, "_endpoint", endpoint or "the SDK's default endpoint"),
        provider.resource.attributes.get(SERVICE_NAME),
        provider.sampler.get_description(),
        (time.perf_counter() - started) * 1000,
    )
    return Otel(provider)


def start(settings: ServeSettings) -> Otel:
    """Turn tracing on for this process (`settings.otel_on`; each `--workers` process has its
    own provider and exporter thread)."""
    otel = build(settings.k_service or settings.model_name, settings.otel_traces_endpoint)
    tracing.use_otel(otel)
    return otel


async def stop(timeout_s: float) -> None:
    """Export the spans still buffered, for at most `timeout_s`, and stop (after the drain)."""
    otel = tracing.OTEL
    tracing.use_otel(None)
    if otel is None:
        return
    try:
        async with asyncio.timeout(max(timeout_s, 0.1) + 0.5):
            await asyncio.to_thread(otel.shutdown, timeout_s)
    except TimeoutError:
        logger.warning("OpenTelemetry: spans still buffered after %.1fs were dropped", timeout_s)
