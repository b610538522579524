"""Observability: Prometheus metrics, the JSON access log and W3C trace context.

KServe 0.21 exports only its latency histograms (`request_predict_seconds` & co., label
`model_name`); those stay, because models are still called through `kserve.Model.__call__`.
kninfer adds, for every inference request whatever the transport:

- `kninfer_requests_total{protocol,model,status}` and `kninfer_request_errors_total{...}`
  (status >= 400 for HTTP, anything but OK for gRPC), protocol one of `rest_v1`, `rest_v2`,
  `grpc_v2`, `cloudevents`; `status` is the HTTP status code or the gRPC status code name;
- `kninfer_request_duration_seconds{protocol,model}` (histogram, whole request);
- `kninfer_requests_in_flight{protocol}` (gauge);
- `kninfer_model_load_seconds{model}` and `kninfer_cold_start_seconds{phase}` (gauges, set once);
- `kninfer_batch_size{model}` (histogram, observed by kninfer.batching; get-or-create here, so
  whichever module touches it first registers it). CloudEvents redeliveries answered from the
  dedupe cache are `kninfer_cloudevent_replays_total{model_name}` (kninfer.event_routes).

Counting is an ASGI middleware (`InstrumentedApp`) and a gRPC interceptor (`MetricsInterceptor`)
so the route handlers stay untouched and the hot path pays for two dict look-ups, a histogram
observation and two gauge updates (overhead measured in README, "Performance and
observability").

Multi-worker: when `PROMETHEUS_MULTIPROC_DIR` is set (kninfer sets it for `--workers > 1`, before
prometheus_client is imported), every process writes its samples to mmap files there and
`/metrics` aggregates them with `MultiProcessCollector` (prometheus_client docs, "Multiprocess
Mode"). Gauges declare how to aggregate: in-flight sums live processes, cold-start takes the max.

Trace context: the W3C `traceparent` header (Trace Context, section 3.2) of the request is kept
in a context variable for the duration of the request, so code that calls a predictor or builds
a reply event can forward it (`trace_headers()`, `current_traceparent()`; CloudEvents carry it as
the `traceparent` extension, CloudEvents distributed-tracing extension). kninfer records no spans,
so it forwards the header unchanged, as section 3.2 asks of a non-participating hop; a request
without one gets a fresh trace id only when something asks for it.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_logger = logging.getLogger("kninfer.access")

REST_V1 = "rest_v1"
REST_V2 = "rest_v2"
GRPC_V2 = "grpc_v2"
CLOUDEVENTS = "cloudevents"
UNKNOWN_MODEL = "_unknown"

# Request latencies from sub-millisecond (a cached CloudEvent reply) to a slow GPU model.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUESTS = Counter("kninfer_requests", "Inference requests answered, by protocol, model and status",
                   ["protocol", "model", "status"])
ERRORS = Counter("kninfer_request_errors",
                 "Inference requests answered with an error (HTTP >= 400, gRPC not OK)",
                 ["protocol", "model", "status"])
DURATION = Histogram("kninfer_request_duration_seconds",
                     "Whole-request latency of inference requests, transport included",
                     ["protocol", "model"], buckets=DURATION_BUCKETS)
IN_FLIGHT = Gauge("kninfer_requests_in_flight", "Inference requests being answered now",
                  ["protocol"], multiprocess_mode="livesum")
MODEL_LOAD = Gauge("kninfer_model_load_seconds", "Seconds the model took to load (warm-up apart)",
                   ["model"], multiprocess_mode="max")
COLD_START = Gauge("kninfer_cold_start_seconds",
                   "Cold-start breakdown of this process: phase durations and time to ready",
                   ["phase"], multiprocess_mode="max")


def _get_or_create(name: str, factory: Callable[[], Any]) -> Any:
    """One collector per name per process, whichever module asks first (no double register)."""
    names = getattr(REGISTRY, "_names_to_collectors", {})
    existing = names.get(name)
    if existing is not None:
        return existing
    try:
        return factory()
    except ValueError:  # registered meanwhile under the same name
        return REGISTRY._names_to_collectors[name]  # type: ignore[attr-defined]


def batch_size_histogram() -> Any:
    """`kninfer_batch_size{model}`: rows per model call (same definition as kninfer.batching)."""
    return _get_or_create("kninfer_batch_size", lambda: Histogram(
        "kninfer_batch_size", "Rows per model call made by the adaptive batcher", ["model"],
        buckets=BATCH_SIZE_BUCKETS))


def ensure_registered() -> None:
    """Register the collectors other modules own, so /metrics lists them from the start."""
    batch_size_histogram()


# ---- exposition --------------------------------------------------------------------------------


def render(accept: str | None) -> tuple[bytes, str]:
    """The exposition for GET /metrics (all workers' samples in multiprocess mode)."""
    from prometheus_client import exposition

    registry: Any = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    encoder, content_type = exposition.choose_encoder(accept or "")
    return encoder(registry), content_type


# ---- cold start --------------------------------------------------------------------------------


def record_cold_start(breakdown: Mapping[str, float | None], model_name: str,
                      load_ms: float) -> None:
    """Export the cold-start log line's numbers (milliseconds there, seconds here)."""
    MODEL_LOAD.labels(model_name).set(load_ms / 1000)
    for key, value in breakdown.items():
        if value is not None:
            COLD_START.labels(key.removesuffix("_ms")).set(value / 1000)


# ---- trace context (W3C Trace Context, section 3.2 "traceparent Header") ---------------------

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_INVALID_TRACE = "0" * 32
_INVALID_PARENT = "0" * 16

_trace: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "kninfer_trace", default=None)


def parse_traceparent(value: str | None) -> str | None:
    """The header if it is a valid version-00 traceparent (section 3.2.2), else None."""
    if not value:
        return None
    value = value.strip().lower()
    match = _TRACEPARENT.match(value)
    if match is None or match.group(1) == _INVALID_TRACE or match.group(2) == _INVALID_PARENT:
        return None
    return value


def new_traceparent() -> str:
    """A fresh, unsampled traceparent (section 3.2.2.5: flags 00, we record nothing)."""
    return f"00-{uuid.uuid4().hex}-{os.urandom(8).hex()}-00"


def set_trace_context(traceparent: str | None, tracestate: str | None = None) -> None:
    """Bind the trace context for the current request (middleware, interceptor, events)."""
    context: dict[str, str] = {}
    parsed = parse_traceparent(traceparent)
    if parsed is not None:
        context["traceparent"] = parsed
        if tracestate:
            context["tracestate"] = tracestate
    _trace.set(context)


def adopt_event_trace(traceparent: str | None, tracestate: str | None = None) -> None:
    """Use a CloudEvent's `traceparent` extension when the HTTP request carried no header
    (a Broker may deliver the trace in either place)."""
    context = _trace.get()
    if context and "traceparent" in context:
        return
    if parse_traceparent(traceparent) is not None:
        set_trace_context(traceparent, tracestate)


def current_traceparent() -> str:
    """The request's traceparent; one is created (and kept for the request) if it came without."""
    context = _trace.get()
    if context is None:
        context = {}
        _trace.set(context)
    value = context.get("traceparent")
    if value is None:
        value = context["traceparent"] = new_traceparent()
    return value


def trace_headers() -> dict[str, str]:
    """Headers to forward on a call made for the current request (e.g. transformer->predictor)."""
    headers = {"traceparent": current_traceparent()}
    context = _trace.get() or {}
    if "tracestate" in context:
        headers["tracestate"] = context["tracestate"]
    return headers


# ---- labels ------------------------------------------------------------------------------------


class _Children:
    """Label children cached by key (`Counter.labels()` takes a lock on every call)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], Any] = {}
        self.duration: dict[tuple[str, str], Any] = {}
        self.in_flight: dict[str, Any] = {}

    def count(self, protocol: str, model: str, status: str, seconds: float) -> None:
        key = (protocol, model, status)
        child = self.requests.get(key)
        if child is None:
            child = self.requests[key] = REQUESTS.labels(*key)
        child.inc()
        if not (status == "OK" or (len(status) == 3 and status[0] in "123")):
            ERRORS.labels(*key).inc()
        timer = self.duration.get((protocol, model))
        if timer is None:
            timer = self.duration[(protocol, model)] = DURATION.labels(protocol, model)
        timer.observe(seconds)

    def gauge(self, protocol: str) -> Any:
        gauge = self.in_flight.get(protocol)
        if gauge is None:
            gauge = self.in_flight[protocol] = IN_FLIGHT.labels(protocol)
        return gauge


_children = _Children()


def count_request(protocol: str, model: str, status: str | int, seconds: float) -> None:
    """Count one inference request (for transports that are not behind the middleware)."""
    _children.count(protocol, model, str(status), seconds)


# ---- HTTP: ASGI middleware ---------------------------------------------------------------------


def classify(method: str, path: str, headers: Mapping[str, str],
             default_model: str) -> tuple[str, str] | None:
    """(protocol, model) for an inference request, None for anything else (probes, metadata).

    Routes: OIP REST `POST /v2/models/{name}[/versions/{v}]/infer`, KServe V1
    `POST /v1/models/{name}:predict`, CloudEvents on `POST /` (model from the `kninfermodel`
    extension, else the default model) and on the V2 infer route when the request is an event
    (binary mode: a `ce-specversion` header; structured: `application/cloudevents+json`).
    """
    if method != "POST":
        return None
    is_event = "ce-specversion" in headers or headers.get("content-type", "").startswith(
        "application/cloudevents")
    if path == "/":
        return CLOUDEVENTS, headers.get("ce-kninfermodel") or default_model
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        name = path[len("/v2/models/"):-len("/infer")].split("/", 1)[0]
        return (CLOUDEVENTS if is_event else REST_V2), name
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        return REST_V1, path[len("/v1/models/"):-len(":predict")]
    return None


class InstrumentedApp:
    """ASGI middleware: counts inference requests, tracks in-flight, binds trace context and
    writes one JSON access-log line per request when `access_log` is on.

    Route handlers may refine the labels through `request.state` (Starlette keeps it in
    `scope["state"]`): `kninfer_model` (e.g. the model a structured CloudEvent named) and
    `kninfer_ce_id` (the CloudEvent id, for the access log).
    """

    def __init__(self, app: ASGIApp, default_model: str, access_log: bool = False,
                 known_model: Callable[[str], bool] | None = None) -> None:
        self.app = app
        self.default_model = default_model
        self.access_log = access_log
        # Model names come from the URL: names the server does not serve are counted as
        # "_unknown", so a client cannot grow the label set without bound.
        self.known_model = known_model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] != "POST" and not self.access_log):
            await self.app(scope, receive, send)  # probes, metadata, scrapes: nothing to count
            return
        headers = _headers(scope)
        scope["kninfer.headers"] = headers  # the route handler reuses it (kninfer.rest)
        traceparent = headers.get("traceparent")
        _trace.set({"traceparent": traceparent, **_tracestate(headers)}
                   if traceparent and parse_traceparent(traceparent) else {})
        kind = classify(scope["method"], scope["path"], headers, self.default_model)
        if kind is None and not self.access_log:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        gauge = _children.gauge(kind[0]) if kind is not None else None
        if gauge is not None:
            gauge.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            if gauge is not None and kind is not None:
                gauge.dec()
                model = state.get("kninfer_model") or kind[1]
                if self.known_model is not None and not self.known_model(model):
                    model = UNKNOWN_MODEL
                _children.count(kind[0], model, str(status), seconds)
            if self.access_log:
                self.log(scope, headers, state, kind, status, seconds)

    def log(self, scope: Scope, headers: Mapping[str, str], state: Mapping[str, Any],
            kind: tuple[str, str] | None, status: int, seconds: float) -> None:
        """One line of JSON per request (fields documented in README "Performance and
        observability")."""
        context = _trace.get() or {}
        traceparent = context.get("traceparent")
        line: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "request_id": headers.get("x-request-id") or headers.get("ce-id")
            or state.get("kninfer_ce_id") or uuid.uuid4().hex,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "protocol": kind[0] if kind else None,
            "model": (state.get("kninfer_model") or kind[1]) if kind else None,
            "ce_id": headers.get("ce-id") or state.get("kninfer_ce_id"),
            "trace_id": traceparent.split("-")[1] if traceparent else None,
            "client": f"{scope['client'][0]}:{scope['client'][1]}" if scope.get("client")
            else None,
            # Knative's queue-proxy (the `client` above, in a pod) forwards the caller here.
            "forwarded_for": headers.get("x-forwarded-for"),
        }
        access_logger.info(orjson.dumps(line).decode())


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def _tracestate(headers: Mapping[str, str]) -> dict[str, str]:
    value = headers.get("tracestate")
    return {"tracestate": value} if value else {}


def configure_access_log(enabled: bool) -> None:
    """The access log writes bare JSON lines to stderr (one object per line, no prefix)."""
    if not enabled:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_logger.handlers[:] = [handler]
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False


# ---- gRPC: server interceptor ------------------------------------------------------------------


def grpc_interceptor() -> Any:
    """A grpc.aio interceptor counting `ModelInfer` calls; imported lazily (grpc is optional on
    the cold-start path, gRPC starts after HTTP)."""
    from grpc_interceptor.server import AsyncServerInterceptor

    class MetricsInterceptor(AsyncServerInterceptor):  # type: ignore[misc]
        async def intercept(self, method: Any, request_or_iterator: Any, context: Any,
                            method_name: str) -> Any:
            if not method_name.endswith("/ModelInfer"):
                return await method(request_or_iterator, context)
            metadata = dict(context.invocation_metadata() or ())
            set_trace_context(metadata.get("traceparent"), metadata.get("tracestate"))
            model = getattr(request_or_iterator, "model_name", "") or ""
            gauge = _children.gauge(GRPC_V2)
            gauge.inc()
            started = time.perf_counter()
            status = "UNKNOWN"
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
                _children.count(GRPC_V2, model, status, time.perf_counter() - started)

    return MetricsInterceptor()
