"""The server's own OpenAPI document, served at GET /openapi.json, and schemathesis against it.

Schemathesis generates requests from the document, valid and deliberately invalid (schemathesis
"negative" mode), and sends them to a real server; no answer may be a 5xx, every answer must be the
content type the document states, and documented responses must match their schemas. The CI
variant is bounded (a few dozen examples per operation); `make test-long` runs many more.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from starlette.routing import Route

from kninfer.http.openapi import document
from tests.support.servers import ServerProcess

DOCUMENT = json.loads(document())
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], deterministic=True
)
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def server(iris_server: ServerProcess) -> Iterator[ServerProcess]:
    """The session's default server: fuzzing must leave it serving for the tests after."""
    yield iris_server
    assert "Traceback" not in iris_server.log()
    assert httpx.get(f"{iris_server.url}/v2/health/ready", timeout=30).status_code == 200


def test_served_document_is_the_packaged_one(server: ServerProcess) -> None:
    reply = httpx.get(f"{server.url}/openapi.json", timeout=30)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == DOCUMENT


def test_document_covers_every_route() -> None:
    """Every REST route the server has is documented (and nothing else), so fuzzing sees all."""
    from kninfer.dataplane import DataPlane
    from kninfer.http.routes import V2Routes

    routes = [r for r in V2Routes(DataPlane(None), 1).routes() if isinstance(r, Route)]
    served = {(r.path, m.lower()) for r in routes for m in (r.methods or ()) if m != "HEAD"}
    served.add(("/", "post"))  # CloudEvents (kninfer.http.events)
    documented = {(path, method) for path, ops in DOCUMENT["paths"].items() for method in ops}
    assert documented == served


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_fuzz_no_server_errors(case: schemathesis.Case, server: ServerProcess) -> None:
    response = case.call(base_url=server.url, timeout=30)
    case.validate_response(response, checks=CHECKS)


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_fuzz_long(case: schemathesis.Case, server: ServerProcess) -> None:
    response = case.call(base_url=server.url, timeout=30)
    case.validate_response(response, checks=CHECKS)


def test_document_refs_and_path_parameters_resolve() -> None:
    # The structural rules schemathesis relies on: every $ref resolves, every path parameter
    # is declared by each operation under it.
    text = json.dumps(DOCUMENT)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        node = DOCUMENT
        for key in ref.removeprefix("#/").split("/"):
            node = node[key]
    for path, ops in DOCUMENT["paths"].items():
        wanted = {
            seg[1:-1].split("}")[0]
            for seg in path.replace(":", "/").split("/")
            if seg.startswith("{")
        }
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == wanted, path
