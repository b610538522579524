"""Open Inference Protocol REST (required_api.md) and KServe's V1 routes.

The routes and wire format are KServe's (kserve/protocol/rest/v1_endpoints.py,
v2_endpoints.py) and the Open Inference Protocol's; what differs is the request path. KServe 0.21
validates every body with pydantic before the model runs and maps client mistakes to 500; here
the body goes straight through kninfer.protocol (orjson + numpy), the model is reached through
kninfer.dataplane and every error goes through kninfer.errors, so a client mistake is a 4xx with
`{"error": ...}`. This module knows nothing of model families.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kninfer import __version__
from kninfer.dataplane import DataPlane
from kninfer.http.openapi import openapi_route
from kninfer.http.responses import guarded, json_response, read_body, request_headers
from kninfer.protocol.v1 import decode_v1_request
from kninfer.protocol.v2 import decode_v2_request, encode_v2_response


class V2Routes:
    """Open Inference Protocol REST (required_api.md) plus KServe's V1 routes."""

    def __init__(self, state: DataPlane) -> None:
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
            # A CloudEvent (binary or structured mode) gets a reply event (kninfer.cloudevents).
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
        from kninfer.observability.prometheus import render

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
