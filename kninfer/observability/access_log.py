"""The JSON access log: one object per request on stderr (fields in docs/observability.md)."""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

import orjson

from kninfer.observability.tracing import trace_context

Scope = MutableMapping[str, Any]

access_logger = logging.getLogger("kninfer.access")


def configure_access_log(enabled: bool) -> None:
    """The access log writes bare JSON lines to stderr (one object per line, no prefix)."""
    if not enabled:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_logger.handlers[:] = [handler]
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False


def log_request(
    scope: Scope,
    headers: Mapping[str, str],
    state: Mapping[str, Any],
    kind: tuple[str, str] | None,
    status: int,
    seconds: float,
) -> None:
    """One line of JSON per request (fields documented in docs/observability.md,
    "Access log")."""
    context = trace_context()
    traceparent = context.get("traceparent")
    line: dict[str, Any] = {
        "ts": round(time.time(), 3),
        "request_id": headers.get("x-request-id")
        or headers.get("ce-id")
        or state.get("kninfer_ce_id")
        or uuid.uuid4().hex,
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "protocol": kind[0] if kind else None,
        "model": (state.get("kninfer_model") or kind[1]) if kind else None,
        "ce_id": headers.get("ce-id") or state.get("kninfer_ce_id"),
        "trace_id": traceparent.split("-")[1] if traceparent else None,
        "client": f"{scope['client'][0]}:{scope['client'][1]}" if scope.get("client") else None,
        # Knative's queue-proxy (the `client` above, in a pod) forwards the caller here.
        "forwarded_for": headers.get("x-forwarded-for"),
    }
    access_logger.info(orjson.dumps(line).decode())
