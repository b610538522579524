"""The ASGI app in process (kninfer.http.app over kninfer.dataplane), no server process: routing,
the fast path, the one error map and the CloudEvents and MLflow extensions, with exact statuses
and bodies, and a good request answered after every error.

The model is a real scikit-learn predictor (the embedded iris model, built into tmp_path) and a
bare `kserve.Model` that never loads, in KServe's own registry. Process-level behaviour (signals,
workers, real clients over sockets) is tested elsewhere; this is the fast table.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kninfer import __version__

with warnings.catch_warnings():
    # Starlette 1.x's TestClient says it will want httpx2; httpx is what this project uses.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

GOOD = {
    "inputs": [
        {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
    ]
}
GOOD_ANSWER = {
    "model_name": "iris",
    "model_version": "1",
    "outputs": [{"name": "predict", "datatype": "INT64", "shape": [1], "data": [0]}],
}
MAX_BODY = 2048


@pytest.fixture(scope="module")
def dataplane(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from kserve import Model
    from kserve.model_repository import ModelRepository

    from kninfer.dataplane import DataPlane
    from kninfer.iris import ensure_iris_model
    from kninfer.predictors.sklearn import SklearnPredictor
    from kninfer.settings import ServeSettings

    cache = tmp_path_factory.mktemp("cache")
    settings = ServeSettings(cache_dir=cache, model_version="1")
    iris = SklearnPredictor("iris", ensure_iris_model(cache), settings)
    iris.load()
    registry = ModelRepository()
    registry.update(iris)
    registry.update(Model("cold"))  # a kserve.Model that is never loaded: ready is False
    return DataPlane(registry)


def client_for(dataplane: Any, tmp_path: Path, **settings: Any) -> TestClient:
    from kninfer.http.app import build_app
    from kninfer.settings import ServeSettings

    app = build_app(
        dataplane, ServeSettings(cache_dir=tmp_path, max_body_bytes=MAX_BODY, **settings)
    )
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(dataplane: Any, tmp_path: Path) -> Iterator[TestClient]:
    with client_for(dataplane, tmp_path) as test_client:
        yield test_client
    dataplane.draining = False


def assert_still_serving(client: TestClient) -> None:
    reply = client.post("/v2/models/iris/infer", json=GOOD)
    assert (reply.status_code, reply.json()) == (200, GOOD_ANSWER)


def error(message: str) -> dict[str, str]:
    return {"error": message}


NOT_FOUND = "model 'nosuch' not found; GET /v1/models lists the served models"
NOT_READY = "model 'cold' is not ready: it is not loaded yet"

ROUTES = [
    ("GET", "/", None, 200, {"status": "alive"}),  # KServe's ModelServer answer
    ("GET", "/v2/health/live", None, 200, {"live": True}),
    ("GET", "/v2/health/ready", None, 503, {"ready": False}),  # "cold" is not ready
    (
        "GET",
        "/v2",
        None,
        200,
        {
            "name": "kninfer",
            "version": __version__,
            "extensions": ["binary_tensor_data", "cloudevents"],
        },
    ),
    ("GET", "/v2/models/iris/ready", None, 200, {"name": "iris", "ready": True}),
    ("GET", "/v2/models/iris/versions/1/ready", None, 200, {"name": "iris", "ready": True}),
    ("GET", "/v2/models/cold/ready", None, 503, {"name": "cold", "ready": False}),
    ("GET", "/v2/models/nosuch/ready", None, 404, error(NOT_FOUND)),
    ("GET", "/v2/models/nosuch", None, 404, error(NOT_FOUND)),
    ("GET", "/v1/models", None, 200, {"models": ["iris", "cold"]}),
    ("GET", "/v1/models/cold", None, 200, {"name": "cold", "ready": False}),
    ("GET", "/v1/models/nosuch", None, 404, error(NOT_FOUND)),
    ("POST", "/v2/models/iris/infer", GOOD, 200, GOOD_ANSWER),
    ("POST", "/v2/models/iris/versions/1/infer", GOOD, 200, GOOD_ANSWER),
    # The served version is 1 (--model-version); another is a 404 (KServe answers 501).
    (
        "POST",
        "/v2/models/iris/versions/7/infer",
        GOOD,
        404,
        error("model 'iris' has no version '7'; this server serves version '1'"),
    ),
    (
        "GET",
        "/v2/models/iris/versions/7",
        None,
        404,
        error("model 'iris' has no version '7'; this server serves version '1'"),
    ),  # Starlette's route
    ("POST", "/v2/models/cold/infer", GOOD, 503, error(NOT_READY)),
    ("POST", "/v2/models/nosuch/infer", GOOD, 404, error(NOT_FOUND)),
    (
        "POST",
        "/v2/models/iris/infer",
        b"{",
        400,
        error("request body is not valid JSON (unexpected end of data: line 1 column 2 (char 1))"),
    ),
    (
        "POST",
        "/v2/models/iris/infer",
        {"inputs": []},
        400,
        error(
            "'inputs' must be a non-empty list; expected a V2 inference request: {\"inputs\": "
            '[{"name": ..., "shape": [...], "datatype": "FP32", "data": [...]}]}'
        ),
    ),
    (
        "POST",
        "/v2/models/iris/infer",
        b"[" + b" " * MAX_BODY + b"]",
        413,
        error(
            f"request body is {MAX_BODY + 2} bytes; the limit is {MAX_BODY} "
            "(KNINFER_MAX_BODY_BYTES)"
        ),
    ),
    (
        "POST",
        "/v1/models/iris:predict",
        {"instances": [[5.1, 3.5, 1.4, 0.2]]},
        200,
        {"predictions": [0]},
    ),
    (
        "POST",
        "/v1/models/iris:predict",
        {"rows": []},
        400,
        error('request has no "instances"; expected {"instances": [[...], ...]}'),
    ),
    ("POST", "/v1/models/cold:predict", {"instances": [[1, 2, 3, 4]]}, 503, error(NOT_READY)),
    (
        "GET",
        "/v2/models/iris/infer",
        None,
        405,
        error("method not allowed: GET /v2/models/iris/infer"),
    ),
    ("GET", "/no/such/route", None, 404, error("no such route: GET /no/such/route")),
    (
        "POST",
        "/",
        {"inputs": []},
        415,
        error(
            "POST / takes CloudEvents only: binary mode (ce-* headers) or structured mode "
            "(content-type application/cloudevents+json); plain V2 requests go to "
            "POST /v2/models/{name}/infer"
        ),
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "expected"),
    ROUTES,
    ids=[f"{m} {p} {s}" for m, p, _, s, _ in ROUTES],
)
def test_route(
    client: TestClient, method: str, path: str, body: Any, status: int, expected: Any
) -> None:
    if isinstance(body, bytes):
        reply = client.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
    else:
        reply = client.request(method, path, json=body)
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == expected
    assert_still_serving(client)


def test_model_metadata_comes_from_the_dataplane(client: TestClient) -> None:
    reply = client.get("/v2/models/iris")
    assert reply.status_code == 200
    assert reply.json() == {
        "name": "iris",
        "versions": ["1"],
        "platform": "kninfer-sklearn",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }
    assert client.get("/v2/models/iris/versions/1").json()["versions"] == ["1"]
    # A bare kserve.Model has no metadata() of its own: the dataplane states what it can.
    assert client.get("/v2/models/cold").json() == {
        "name": "cold",
        "versions": [],
        "platform": "",
        "inputs": [],
        "outputs": [],
    }


def test_draining_turns_readiness_off_and_keeps_answering(
    client: TestClient, dataplane: Any
) -> None:
    dataplane.draining = True
    assert (
        client.get("/v2/models/iris/ready").status_code,
        client.get("/v2/models/iris/ready").json(),
    ) == (503, {"name": "iris", "ready": False})
    assert client.get("/ping").status_code == 503  # MLflow's readiness, likewise
    assert_still_serving(client)  # in-flight and queued work is still answered while draining
    # One rule for every inference route: V1 and MLflow's /invocations are served too.
    v1 = client.post("/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert (v1.status_code, v1.json()) == (200, {"predictions": [0]})
    scoring = client.post("/invocations", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert (scoring.status_code, scoring.json()) == (200, {"predictions": [0]})


def test_a_binary_cloudevent_on_v2_infer_gets_a_reply_event(client: TestClient) -> None:
    import orjson

    headers = {
        "ce-specversion": "1.0",
        "ce-id": "e-1",
        "ce-source": "tests/http",
        "ce-type": "dev.kninfer.inference.request",
        "content-type": "application/json",
    }
    reply = client.post("/v2/models/iris/infer", content=orjson.dumps(GOOD), headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["ce-type"] == "dev.kninfer.inference.response"
    assert reply.headers["ce-causationid"] == "e-1"
    assert reply.headers["ce-source"] == "kninfer/local/models/iris"
    assert reply.json() == GOOD_ANSWER
    # The same event again (a redelivery) is answered from the dedupe cache, identically.
    again = client.post("/v2/models/iris/infer", content=orjson.dumps(GOOD), headers=headers)
    assert (again.status_code, again.json(), again.headers["ce-id"]) == (
        200,
        GOOD_ANSWER,
        reply.headers["ce-id"],
    )


def test_an_event_naming_no_served_model_is_a_400(client: TestClient) -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "e-2",
        "ce-source": "tests/http",
        "ce-type": "dev.kninfer.inference.request",
        "ce-kninfermodel": "nosuch",
        "content-type": "application/json",
    }
    reply = client.post("/", json=GOOD, headers=headers)
    assert reply.status_code == 400
    assert reply.json() == error(
        "CloudEvent extension kninfermodel='nosuch' names a model this "
        "server does not serve; it serves: iris, cold"
    )
    assert_still_serving(client)


def test_mlflow_scoring_routes_unless_turned_off(dataplane: Any, tmp_path: Path) -> None:
    with client_for(dataplane, tmp_path, scoring_protocol=True) as client:
        ping = client.get("/ping")
        assert (ping.status_code, ping.text) == (503, "\n")  # "cold" is not ready
        answer = client.post("/invocations", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
        assert (answer.status_code, answer.json()) == (200, {"predictions": [0]})
        refused = client.post("/invocations", content=b"a,b", headers={"content-type": "x/y"})
        assert refused.status_code == 415
        assert refused.text == (
            "This predictor only supports the following content types: "
            "application/json, text/csv. Got 'x/y'."
        )
    with client_for(dataplane, tmp_path, scoring_protocol=False) as client:
        assert client.get("/ping").status_code == 404  # --no-scoring-protocol: not served
