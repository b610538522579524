"""MLflow's scoring protocol: what `mlflow models serve` answers, so its clients work unchanged.

Routes and wire format are those of mlflow.pyfunc.scoring_server (MLflow 2.x/3.x):

- `GET /ping`, `GET /health`: 200 with body "\\n" once the model is ready (503 before, and while
  draining: readiness, as a load balancer polling /ping needs it);
- `GET /version`: the MLflow version installed beside kninfer (kninfer's own when none is);
- `POST /invocations`: `application/json` with exactly one of `dataframe_split`,
  `dataframe_records`, `instances`, `inputs`, plus optional `params`; or `text/csv` (a header
  row, then rows). The answer is `{"predictions": ...}`. Errors are MLflow's
  `{"error_code": "BAD_REQUEST", "message": ...}` with the HTTP status kninfer's error map
  gives (kninfer.errors), and an unsupported content type is a 415 with a text body, as MLflow
  answers it.

The payload reaches the model as a V1 request (a dict), the same path `/v1/models/NAME:predict`
takes, so every family that reads a table (scikit-learn DataFrame models, MLflow models) or rows
(array models) answers here too. This module knows no model family.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kninfer import __version__
from kninfer.codec import CSV_PAYLOAD_KEY, encode_json, loads_json
from kninfer.errors import (
    InvalidInput,
    ModelNotFound,
    ServiceUnavailable,
    UnsupportedMediaType,
    message_of,
    status_of,
)

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"
# mlflow.pyfunc.scoring_server.SUPPORTED_FORMATS
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
# The error codes MLflow's client and callers read (mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS
# run backwards), for the statuses kninfer answers.
_ERROR_CODES = {400: "BAD_REQUEST", 404: "ENDPOINT_NOT_FOUND", 413: "BAD_REQUEST",
                415: "BAD_REQUEST", 429: "REQUEST_LIMIT_EXCEEDED", 501: "NOT_IMPLEMENTED",
                502: "TEMPORARILY_UNAVAILABLE", 503: "TEMPORARILY_UNAVAILABLE",
                504: "DEADLINE_EXCEEDED"}


def decode_invocation(body: bytes, content_type: str | None) -> dict[str, Any]:
    """An `/invocations` body as the V1 payload the model reads. Pure."""
    mime, _, rest = (content_type or "").partition(";")
    mime = mime.strip().lower()
    parameters = dict(p.strip().partition("=")[::2] for p in rest.split(";") if p.strip())
    charset = parameters.pop("charset", "utf-8").strip().lower()
    if charset != "utf-8":
        raise UnsupportedMediaType("The scoring server only supports UTF-8")
    if parameters:
        raise UnsupportedMediaType(
            f"Unrecognized content type parameters: {', '.join(parameters)}")
    if mime == CONTENT_TYPE_JSON:
        return _json_payload(body)
    if mime == CONTENT_TYPE_CSV:
        return _csv_payload(body)
    raise UnsupportedMediaType(
        "This predictor only supports the following content types: "
        f"{CONTENT_TYPE_JSON}, {CONTENT_TYPE_CSV}. Got '{content_type or ''}'."
    )


def _json_payload(body: bytes) -> dict[str, Any]:
    doc = loads_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput(
            f"The input must be a JSON dictionary with exactly one of the input fields "
            f"{', '.join(FORMATS)}. Received a {type(doc).__name__}."
        )
    given = [k for k in FORMATS if k in doc]
    if len(given) != 1:
        raise InvalidInput(
            f"The input must be a JSON dictionary with exactly one of the input fields "
            f"{', '.join(FORMATS)}. Received dictionary with input fields: {list(doc)}."
        )
    payload = {given[0]: doc[given[0]]}
    if doc.get("params") is not None:
        payload["params"] = doc["params"]
    return payload


def _csv_payload(body: bytes) -> dict[str, Any]:
    import csv
    import io

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV body is not UTF-8 text") from None
    rows = list(csv.reader(io.StringIO(text)))
    rows = [row for row in rows if row]
    if not rows:
        raise InvalidInput("the CSV body is empty; expected a header row, then rows")
    header, data = rows[0], rows[1:]
    if header and header[0] == "":
        # pandas.DataFrame.to_csv() writes the index as a first, unnamed column.
        header, data = header[1:], [row[1:] for row in data]
    for i, row in enumerate(data):
        if len(row) != len(header):
            raise InvalidInput(
                f"CSV row {i + 1} has {len(row)} values; the header names {len(header)}")
    return {"dataframe_split": {"columns": header, "data": data}, CSV_PAYLOAD_KEY: True}


def error_body(exc: BaseException) -> Response:
    status = status_of(exc)
    if isinstance(exc, UnsupportedMediaType):
        return Response(message_of(exc), 415, media_type="text/plain")
    code = _ERROR_CODES.get(status, "INTERNAL_ERROR")
    return Response(encode_json({"error_code": code, "message": message_of(exc)}), status,
                    media_type=CONTENT_TYPE_JSON)


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

    def __init__(self, state: Any) -> None:
        self.state = state  # kninfer.rest.ServerState

    def _model(self) -> Any:
        models = self.state.models()
        if not models:
            raise ModelNotFound("(none)")
        # A server serves one model (DESIGN.md); a transformer's is the one it fronts.
        return models[0]

    async def ping(self, request: Request) -> Response:
        if not self.state.ready:
            return Response("\n", 503, media_type=CONTENT_TYPE_JSON)
        return Response("\n", 200, media_type=CONTENT_TYPE_JSON)

    async def version(self, request: Request) -> Response:
        return Response(mlflow_version(), 200, media_type=CONTENT_TYPE_JSON)

    async def invocations(self, request: Request) -> Response:
        from kninfer.rest import read_body, request_headers

        try:
            if self.state.draining:
                raise ServiceUnavailable("the server is draining; retry")
            model = self._model()
            body = await read_body(request, self.state.max_body_bytes)
            payload = decode_invocation(body, request.headers.get("content-type"))
            response, response_headers = await model(payload, headers=request_headers(request))
        except Exception as exc:
            from kninfer.rest import log_fault

            log_fault(exc)  # as every HTTP route does (kninfer.rest.error_response)
            return error_body(exc)
        return Response(encode_json(response), 200, headers=response_headers or None,
                        media_type=CONTENT_TYPE_JSON)

    def routes(self) -> list[Route]:
        return [
            Route("/invocations", self.invocations, methods=["POST"]),
            Route("/ping", self.ping, methods=["GET"]),
            Route("/health", self.ping, methods=["GET"]),
            Route("/version", self.version, methods=["GET"]),
        ]
