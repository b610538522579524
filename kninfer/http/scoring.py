"""MLflow's scoring routes: what `mlflow models serve` answers, so its clients work unchanged.

- `GET /ping`, `GET /health`: 200 with body "\\n" once the model is ready (503 before, and
  while draining: readiness, as a load balancer polling /ping needs it);
- `GET /version`: the MLflow version installed beside kninfer (kninfer's own when none is);
- `POST /invocations` (payloads: kninfer.protocol.mlflow_scoring). The answer is
  `{"predictions": ...}`. Errors are MLflow's `{"error_code": "BAD_REQUEST", "message": ...}`
  with the HTTP status kninfer's error map gives (kninfer.errors), and an unsupported content
  type is a 415 with a text body, as MLflow answers it.

The payload reaches the model through the dataplane as a V1 request, the path
`/v1/models/NAME:predict` takes. This module knows no model family.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kninfer import __version__
from kninfer.dataplane import DataPlane, ServedModel
from kninfer.errors import (
    ModelNotFound,
    UnsupportedMediaType,
    message_of,
    status_of,
)
from kninfer.http.responses import log_fault, read_body, request_headers
from kninfer.protocol.jsonio import encode_json
from kninfer.protocol.mlflow_scoring import CONTENT_TYPE_JSON, decode_invocation

# The error codes MLflow's client and callers read (mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS
# run backwards), for the statuses kninfer answers.
_ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "ENDPOINT_NOT_FOUND",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    429: "REQUEST_LIMIT_EXCEEDED",
    501: "NOT_IMPLEMENTED",
    502: "TEMPORARILY_UNAVAILABLE",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(exc: BaseException) -> Response:
    status = status_of(exc)
    if isinstance(exc, UnsupportedMediaType):
        return Response(message_of(exc), 415, media_type="text/plain")
    code = _ERROR_CODES.get(status, "INTERNAL_ERROR")
    return Response(
        encode_json({"error_code": code, "message": message_of(exc)}),
        status,
        media_type=CONTENT_TYPE_JSON,
    )


def mlflow_version() -> str:
    from importlib import metadata

    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return __version__


class ScoringRoutes:
    """`/ping`, `/health`, `/version` and `/invocations` over the server's one model."""

    def __init__(self, dataplane: DataPlane, max_body_bytes: int) -> None:
        self.dataplane = dataplane
        self.max_body_bytes = max_body_bytes

    def _model(self) -> ServedModel:
        models = self.dataplane.models()
        if not models:
            raise ModelNotFound("(none)")
        # A server serves one model (DESIGN.md); a transformer's is the one it fronts.
        return models[0]

    async def ping(self, request: Request) -> Response:
        if not self.dataplane.ready:
            return Response("\n", 503, media_type=CONTENT_TYPE_JSON)
        return Response("\n", 200, media_type=CONTENT_TYPE_JSON)

    async def version(self, request: Request) -> Response:
        return Response(mlflow_version(), 200, media_type=CONTENT_TYPE_JSON)

    async def invocations(self, request: Request) -> Response:
        # While draining, requests that still reach the server are answered, as on every other
        # inference route (V2, V1, gRPC, CloudEvents): only readiness (/ping) says 503.
        try:
            model = self._model()
            body = await read_body(request, self.max_body_bytes)
            payload = decode_invocation(body, request.headers.get("content-type"))
            response, response_headers = await self.dataplane.infer(
                model, payload, request_headers(request)
            )
        except Exception as exc:
            log_fault(exc)  # as every HTTP route does (kninfer.http.responses.error_response)
            return error_body(exc)
        return Response(
            encode_json(response),
            200,
            headers=response_headers or None,
            media_type=CONTENT_TYPE_JSON,
        )

    def routes(self) -> list[Route]:
        return [
            Route("/invocations", self.invocations, methods=["POST"]),
            Route("/ping", self.ping, methods=["GET"]),
            Route("/health", self.ping, methods=["GET"]),
            Route("/version", self.version, methods=["GET"]),
        ]
