"""`GET /openapi.json`: the OpenAPI 3.0 document of kninfer's own REST surface.

The document (kninfer/http/openapi.json, package data) states the V2 (Open Inference Protocol
REST, required_api.md), V1 and CloudEvents routes with their error responses, so clients can
generate code and the test suite can fuzz the live server against it (schemathesis,
tests/http/test_openapi.py).
It is a checked-in file rather than generated from the routes: the routes are plain Starlette
handlers with no schema to generate from, and a test keeps the two in step.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response


@cache
def document() -> bytes:
    return resources.files("kninfer.http").joinpath("openapi.json").read_bytes()


async def openapi_route(request: Request) -> Response:
    return Response(document(), media_type="application/json")
