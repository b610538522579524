"""HTTP transport: KServe's V1 and V2 REST routes on a lean Starlette app.

The routes and wire format are KServe's (kserve/protocol/rest/v1_endpoints.py, v2_endpoints.py) and
the Open Inference Protocol's; what differs is the request path. KServe 0.21 validates every body
with pydantic before the model runs and maps client mistakes to 500; here the body goes straight
through kninfer.codec (orjson + numpy) and every error goes through kninfer.errors, so a client
mistake is a 4xx with `{"error": ...}`. Models are still called through `kserve.Model.__call__`,
so KServe's latency histograms keep working.

This module knows nothing of model families: it sees `kserve.Model` objects in a registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from kninfer import __version__
from kninfer.codec import (
    JSON_CONTENT_TYPE,
    decode_v1_request,
    decode_v2_request,
    encode_json,
    encode_v2_response,
)
from kninfer.errors import (
    KninferError,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
    ServiceUnavailable,
    message_of,
    status_of,
)
from kninfer.openapi import openapi_route

logger = logging.getLogger("kninfer")

Handler = Callable[[Request], Awaitable[Response]]

SERVER_EXTENSIONS = ["binary_tensor_data", "cloudevents"]


@dataclass
class ServerState:
    """What the transports share: the models, the limits, and whether we are draining."""

    registry: Any  # kserve.model_repository.ModelRepository
    max_body_bytes: int
    draining: bool = False
    extensions: list[str] = field(default_factory=lambda: list(SERVER_EXTENSIONS))
    # CloudEvents endpoint (kninfer.event_routes.EventEndpoint), installed by server_routes.
    events: Any = None

    def model(self, name: str) -> Any:
        model = self.registry.get_model(name)
        if model is None:
            raise ModelNotFound(name)
        return model

    def ready_model(self, name: str) -> Any:
        model = self.model(name)
        if not model.ready:
            raise ModelNotReady(name)
        return model

    def models(self) -> list[Any]:
        return list(self.registry.get_models().values())

    @property
    def ready(self) -> bool:
        models = self.models()
        return not self.draining and bool(models) and all(m.ready for m in models)


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode_json(doc), status, headers=headers, media_type=JSON_CONTENT_TYPE)


def log_fault(exc: BaseException) -> None:
    """Log a real server fault (a 5xx kninfer did not raise on purpose) with its traceback."""
    if status_of(exc) >= 500 and not isinstance(exc, KninferError):
        logger.exception("unhandled error answering a request", exc_info=exc)


def error_response(exc: BaseException) -> Response:
    """The one place an exception becomes an HTTP answer."""
    log_fault(exc)
    return json_response({"error": message_of(exc)}, status_of(exc))


def guarded(handler: Handler) -> Handler:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            return error_response(exc)
        except asyncio.CancelledError:
            # Only uvicorn cancels a request's task: when its graceful-shutdown timeout (our
            # grace period) ends, and it would answer with a bare text 500. Answer a retryable
            # 503 instead, so the client or Knative's delivery retries elsewhere.
            task = asyncio.current_task()
            if task is None or not task.cancelling():
                raise
            task.uncancel()
            return error_response(ServiceUnavailable(
                "the server is shutting down and its grace period (KNINFER_GRACE_PERIOD_S) "
                "ended before this request finished; retry"
            ))

    run.__name__ = handler.__name__
    return run


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes before reading them all.

    Reads ASGI `http.request` messages directly (ASGI spec, "HTTP: Request"): the same as
    Starlette's `request.stream()` without an async generator per request, which is measurable
    at a few thousand requests per second on one core.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"request body is {declared} bytes; the limit is {limit} (KNINFER_MAX_BODY_BYTES)"
        )
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"request body exceeds the limit of {limit} bytes (KNINFER_MAX_BODY_BYTES)"
                )
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def request_headers(request: Request) -> dict[str, str]:
    """The request's headers as a dict with lower-case names, built once per request: by the
    metrics middleware (kninfer.metrics.InstrumentedApp) when it runs, else from the scope."""
    scope = request.scope
    headers: dict[str, str] | None = scope.get("kninfer.headers")
    if headers is None:
        headers = scope["kninfer.headers"] = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    return headers


class V2Routes:
    """Open Inference Protocol REST (required_api.md) plus KServe's V1 routes."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.state.ready
        return json_response({"ready": ready}, 200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        return json_response(
            {"name": "kninfer", "version": __version__, "extensions": self.state.extensions}
        )

    async def model_metadata(self, request: Request) -> Response:
        model = self.state.model(request.path_params["name"])
        if hasattr(model, "metadata"):
            return json_response(model.metadata())
        return json_response(
            {
                "name": model.name,
                "versions": [],
                "platform": "",
                "inputs": model.get_input_types(),
                "outputs": model.get_output_types(),
            }
        )

    async def model_ready(self, request: Request) -> Response:
        model = self.state.model(request.path_params["name"])
        ready = bool(model.ready) and not self.state.draining
        return json_response({"name": model.name, "ready": ready}, 200 if ready else 503)

    async def infer(self, request: Request) -> Response:
        name = request.path_params["name"]
        headers = request_headers(request)
        events = self.state.events
        if events is not None and events.wants(headers):  # two dict lookups
            # A CloudEvent (binary or structured mode) gets a reply event (kninfer.events).
            return await events.respond(request, name)
        model = self.state.ready_model(name)
        body = await read_body(request, self.state.max_body_bytes)
        infer_request = decode_v2_request(body, headers, name)
        response, response_headers = await model(infer_request, headers=headers)
        payload, wire_headers = encode_v2_response(response, infer_request)
        wire_headers.update(response_headers or {})
        return Response(payload, headers=wire_headers)

    async def v1_models(self, request: Request) -> Response:
        return json_response({"models": [m.name for m in self.state.models()]})

    async def v1_model(self, request: Request) -> Response:
        model = self.state.model(request.path_params["name"])
        return json_response({"name": model.name, "ready": bool(model.ready)})

    async def v1_predict(self, request: Request) -> Response:
        model = self.state.ready_model(request.path_params["name"])
        body = await read_body(request, self.state.max_body_bytes)
        headers = request_headers(request)
        response, response_headers = await model(decode_v1_request(body), headers=headers)
        return json_response(response, headers=response_headers or None)

    async def metrics(self, request: Request) -> Response:
        from kninfer.metrics import render  # aggregates all workers in multiprocess mode

        payload, content_type = render(request.headers.get("accept"))
        return Response(payload, headers={"content-type": content_type})

    def routes(self) -> list[Route]:
        g = guarded
        # Starlette tries routes in order: the inference routes come first so the hot path
        # skips the other patterns (every path below is distinct, so order changes no answer).
        return [
            Route("/v2/models/{name}/infer", g(self.infer), methods=["POST"]),
            Route("/v1/models/{name}:predict", g(self.v1_predict), methods=["POST"]),
            Route("/v2/health/live", g(self.live), methods=["GET"]),
            Route("/v2/health/ready", g(self.ready), methods=["GET"]),
            Route("/v2", g(self.server_metadata), methods=["GET"]),
            Route("/v2/models/{name}", g(self.model_metadata), methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}", g(self.model_metadata), methods=["GET"]),
            Route("/v2/models/{name}/ready", g(self.model_ready), methods=["GET"]),
            Route(
                "/v2/models/{name}/versions/{version}/ready", g(self.model_ready), methods=["GET"]
            ),
            Route(
                "/v2/models/{name}/versions/{version}/infer", g(self.infer), methods=["POST"]
            ),
            Route("/v1/models", g(self.v1_models), methods=["GET"]),
            Route("/v1/models/{name}", g(self.v1_model), methods=["GET"]),
            Route("/metrics", g(self.metrics), methods=["GET"]),
            Route("/openapi.json", g(openapi_route), methods=["GET"]),
            Route("/", g(self.live), methods=["GET"]),
        ]


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    detail = "no such route" if status == 404 else "method not allowed"
    return json_response({"error": f"{detail}: {request.method} {request.url.path}"}, status)


class InferFastPath:
    """ASGI app: `POST /v2/models/{name}/infer` goes straight to its guarded handler; every other
    request goes to the Starlette app.

    The hot route skips Starlette's ServerErrorMiddleware, ExceptionMiddleware and the route
    table scan (about a tenth of the server's time per request at batch 1, measured with py-spy;
    README "Performance and observability"). Answers are the same: the handler is the one the
    route table holds, `guarded` already turns every exception into kninfer's error answer, and
    a name is matched as Starlette's `{name}` is (`[^/]+`, on the decoded path).
    """

    PREFIX = "/v2/models/"
    SUFFIX = "/infer"

    def __init__(self, infer: Handler, app: Starlette) -> None:
        self.infer = infer
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(self.PREFIX) and path.endswith(self.SUFFIX):
                name = path[len(self.PREFIX):-len(self.SUFFIX)]
                if name and "/" not in name:
                    scope["path_params"] = {"name": name}
                    scope["app"] = self.app
                    response = await self.infer(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def build_app(state: ServerState, extra_routes: list[Route] | None = None) -> InferFastPath:
    """The ASGI app. `extra_routes` (e.g. CloudEvents on POST /) come before the V2 routes; none
    may claim the V2 infer path, which the fast path answers first."""
    v2 = V2Routes(state)
    routes = list(extra_routes or []) + v2.routes()
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
    return InferFastPath(guarded(v2.infer), app)
