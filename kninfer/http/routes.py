"""Open Inference Protocol REST (required_api.md) and KServe's V1 routes.

The routes and wire format are KServe's (kserve/protocol/rest/v1_endpoints.py,
v2_endpoints.py) and the Open Inference Protocol's; what differs is the request path. KServe 0.21
validates every body with pydantic before the model runs and maps client mistakes to 500; here
the body goes straight through kninfer.protocol (orjson + numpy), the model is reached through
kninfer.dataplane and every error goes through kninfer.errors, so a client mistake is a 4xx with
`{"error": ...}`. This module knows nothing of model families.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from kninfer.http.events import EventEndpoint

from kninfer.cloudevents.binding import is_event
from kninfer.dataplane import DataPlane
from kninfer.http.openapi import openapi_route
from kninfer.http.responses import guarded, json_response, read_body, request_headers
from kninfer.observability import tracing
from kninfer.protocol import paths
from kninfer.protocol.v1 import decode_v1_request
from kninfer.protocol.v2 import decode_v2_request, encode_v2_response


class V2Routes:
    """Open Inference Protocol REST (required_api.md) plus KServe's V1 routes: each decodes,
    calls the dataplane and encodes."""

    def __init__(
        self, dataplane: DataPlane, max_body_bytes: int, events: EventEndpoint | None = None
    ) -> None:
        self.dataplane = dataplane
        self.max_body_bytes = max_body_bytes
        self.events = events

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def alive(self, request: Request) -> Response:
        """`GET /` as KServe's ModelServer answers it (kserve.protocol.dataplane.live), which
        KServe's own REST client reads (`InferenceRESTClient.is_server_live` with V1)."""
        return json_response({"status": "alive"})

    async def ready(self, request: Request) -> Response:
        ready = self.dataplane.ready
        return json_response({"ready": ready}, 200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        return json_response(self.dataplane.server_metadata())

    async def model_metadata(self, request: Request) -> Response:
        params = request.path_params
        return json_response(self.dataplane.model_metadata(params["name"], params.get("version")))

    async def model_ready(self, request: Request) -> Response:
        name = request.path_params["name"]
        ready = self.dataplane.model_ready(name, request.path_params.get("version"))
        return json_response({"name": name, "ready": ready}, 200 if ready else 503)

    async def infer(self, request: Request) -> Response:
        name = request.path_params["name"]
        headers = request_headers(request)
        events = self.events
        if events is not None and is_event(headers):  # two dict lookups
            # A CloudEvent (binary or structured mode) gets a reply event (kninfer.http.events).
            return await events.respond(request, name)
        model = self.dataplane.ready_model(name, request.path_params.get("version"))
        with tracing.step(tracing.DECODE):
            body = await read_body(request, self.max_body_bytes)
            infer_request = decode_v2_request(body, headers, name)
        response, response_headers = await self.dataplane.infer(model, infer_request, headers)
        with tracing.step(tracing.ENCODE):
            payload, wire_headers = encode_v2_response(response, infer_request)
        wire_headers.update(response_headers)
        return Response(payload, headers=wire_headers)

    async def v1_models(self, request: Request) -> Response:
        return json_response({"models": [m.name for m in self.dataplane.models()]})

    async def v1_model(self, request: Request) -> Response:
        model = self.dataplane.model(request.path_params["name"])
        return json_response({"name": model.name, "ready": bool(model.ready)})

    async def v1_predict(self, request: Request) -> Response:
        model = self.dataplane.ready_model(request.path_params["name"])
        with tracing.step(tracing.DECODE):
            payload = decode_v1_request(await read_body(request, self.max_body_bytes))
        response, response_headers = await self.dataplane.infer(
            model, payload, request_headers(request)
        )
        with tracing.step(tracing.ENCODE):
            return json_response(response, headers=response_headers or None)

    async def metrics(self, request: Request) -> Response:
        from kninfer.observability.prometheus import render

        payload, content_type = render(request.headers.get("accept"))
        return Response(payload, headers={"content-type": content_type})

    def routes(self) -> list[Route]:
        g = guarded
        # Starlette tries routes in order: the inference routes come first so the hot path
        # skips the other patterns (every path below is distinct, so order changes no answer).
        return [
            Route(paths.V2_INFER, g(self.infer), methods=["POST"]),
            Route(paths.V1_PREDICT, g(self.v1_predict), methods=["POST"]),
            Route("/v2/health/live", g(self.live), methods=["GET"]),
            Route("/v2/health/ready", g(self.ready), methods=["GET"]),
            Route("/v2", g(self.server_metadata), methods=["GET"]),
            Route("/v2/models/{name}", g(self.model_metadata), methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}", g(self.model_metadata), methods=["GET"]),
            Route("/v2/models/{name}/ready", g(self.model_ready), methods=["GET"]),
            Route(
                "/v2/models/{name}/versions/{version}/ready", g(self.model_ready), methods=["GET"]
            ),
            Route(paths.V2_VERSION_INFER, g(self.infer), methods=["POST"]),
            Route("/v1/models", g(self.v1_models), methods=["GET"]),
            Route("/v1/models/{name}", g(self.v1_model), methods=["GET"]),
            Route("/metrics", g(self.metrics), methods=["GET"]),
            Route("/openapi.json", g(openapi_route), methods=["GET"]),
            Route("/", g(self.alive), methods=["GET"]),
        ]
