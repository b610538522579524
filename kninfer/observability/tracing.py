"""W3C trace context (Trace Context, section 3.2 "traceparent Header") for the current request,
and the switch for OpenTelemetry traces.

The `traceparent` header of the request is kept in a context variable for the duration of the
request, so code that calls a predictor or builds a reply event can forward it
(`trace_headers()`, `current_traceparent()`; CloudEvents carry it as the `traceparent`
extension, CloudEvents distributed-tracing extension).

With tracing off (the default) kninfer records no spans, so it forwards the header unchanged, as
section 3.2 asks of a non-participating hop; a request without one gets a fresh trace id only
when something asks for it. With tracing on (kninfer.observability.otel.start; docs/
observability.md, "Traces"), `OTEL` is the tracer (kninfer.observability.otel) and the request's
trace context names the request's server span instead. With tracing off the hot path asks
`tracing.OTEL is not None`, or enters `step`'s shared no-op context, and nothing else;
`opentelemetry` is imported only when tracing is on.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import uuid
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kninfer.observability.otel import Otel

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


_INVALID_TRACE = "0" * 32


_INVALID_PARENT = "0" * 16


_trace: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "kninfer_trace", default=None
)


# The child spans' names (kninfer.observability.otel; docs/observability.md, "Traces").
DECODE = "decode"
QUEUE = "queue"
PREDICT = "predict"
ENCODE = "encode"
EVENT_REPLY = "event reply"
PAYLOAD_LOG = "payload log"
PREDICTOR_CALL = "predictor call"

# The OpenTelemetry tracer while tracing is on (set once, before the ports open); None: off.
OTEL: Otel | None = None


# What `step` gives with tracing off: one shared context that does nothing (nullcontext keeps no
# state, so every request may enter it at once).
_NO_SPAN: AbstractContextManager[object] = contextlib.nullcontext()


def step(name: str) -> AbstractContextManager[object]:
    """A step of the request (`DECODE`, `ENCODE`, `EVENT_REPLY`) as a child span of the request's
    span with tracing on; with it off, the shared no-op context."""
    otel = OTEL
    return _NO_SPAN if otel is None else otel.span(name)


def use_otel(otel: Otel | None) -> None:
    """Turn OpenTelemetry tracing on (`otel`, from kninfer.observability.otel.start) or off."""
    global OTEL
    OTEL = otel


def bind_trace_context(traceparent: str, tracestate: str | None = None) -> None:
    """Bind an already valid trace context for the current request (the request span's, when
    tracing is on)."""
    context = {"traceparent": traceparent}
    if tracestate:
        context["tracestate"] = tracestate
    _trace.set(context)


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


def trace_context() -> dict[str, str]:
    """The current request's trace context: `traceparent` (and `tracestate`) when it has one."""
    return _trace.get() or {}
