"""The ASGI middleware that counts inference requests, tracks in-flight, binds the trace context
and writes the access log, so route handlers stay untouched. The hot path pays for two dict
look-ups, a histogram observation and two gauge updates (docs/performance.md).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from kninfer.cloudevents.binding import is_event
from kninfer.cloudevents.contract import MODEL_EXTENSION
from kninfer.observability import tracing
from kninfer.observability.access_log import log_request
from kninfer.observability.prometheus import (
    CLOUDEVENTS,
    REST_V1,
    REST_V2,
    UNKNOWN_MODEL,
    request_counts,
)
from kninfer.observability.tracing import set_trace_context
from kninfer.protocol import paths

Scope = MutableMapping[str, Any]


Message = MutableMapping[str, Any]


Receive = Callable[[], Awaitable[Message]]


Send = Callable[[Message], Awaitable[None]]


ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


_MODEL_HEADER = "ce-" + MODEL_EXTENSION  # binary mode (CloudEvents HTTP binding, 3.1.3)


def classify(
    method: str, path: str, headers: Mapping[str, str], default_model: str
) -> tuple[str, str] | None:
    """(protocol, model) for an inference request, None for anything else (probes, metadata).

    Routes: OIP REST `POST /v2/models/{name}[/versions/{v}]/infer`, KServe V1
    `POST /v1/models/{name}:predict`, CloudEvents on `POST /` (model from the `kninfermodel`
    extension, else the default model) and on the V2 infer route when the request is an event
    (binary mode: a `ce-specversion` header; structured: `application/cloudevents+json`).
    """
    if method != "POST":
        return None
    if path == paths.EVENTS:
        return CLOUDEVENTS, headers.get(_MODEL_HEADER) or default_model
    name = paths.v2_any_infer_model(path)
    if name is not None:
        return (CLOUDEVENTS if is_event(headers) else REST_V2), name
    name = paths.v1_predict_model(path)
    return (REST_V1, name) if name is not None else None


class InstrumentedApp:
    """ASGI middleware: counts inference requests, tracks in-flight, binds trace context and
    writes one JSON access-log line per request when `access_log` is on.

    Route handlers may refine the labels through `request.state` (Starlette keeps it in
    `scope["state"]`): `kninfer_model` (e.g. the model a structured CloudEvent named) and
    `kninfer_ce_id` (the CloudEvent id, for the access log).
    """

    def __init__(
        self,
        app: ASGIApp,
        default_model: str,
        access_log: bool = False,
        known_model: Callable[[str], bool] | None = None,
    ) -> None:
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
        headers = scope_headers(scope)  # the route handler reuses it (kninfer.http)
        traceparent = headers.get("traceparent")
        set_trace_context(traceparent, headers.get("tracestate"))
        kind = classify(scope["method"], scope["path"], headers, self.default_model)
        if kind is None and not self.access_log:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state: dict[str, Any] = scope.setdefault("state", {})
        # OpenTelemetry (kninfer.observability.otel): the request's server span; off, one check.
        otel = tracing.OTEL
        span = (
            otel.start_http(scope["method"], scope["path"], headers, kind)
            if otel is not None and kind is not None
            else None
        )

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if span is not None:  # the answer names the request's span
                    message["headers"] = [
                        *message.get("headers", ()),
                        (b"traceparent", span.traceparent.encode()),
                    ]
            await send(message)

        gauge = request_counts.gauge(kind[0]) if kind is not None else None
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
                request_counts.count(kind[0], model, str(status), seconds)
                if span is not None and otel is not None:
                    otel.end_http(span, status, model)
            if self.access_log:
                log_request(scope, headers, state, kind, status, seconds)


def scope_headers(scope: Scope) -> dict[str, str]:
    """An ASGI request's headers as a dict with lower-case names (ASGI spec: names arrive
    lower-cased), built once per request and kept in the scope for every later reader."""
    headers: dict[str, str] | None = scope.get("kninfer.headers")
    if headers is None:
        headers = scope["kninfer.headers"] = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
        }
    return headers
