"""Transformers: a real transformer process in front of a real predictor process.

Covers: the iris pipeline over REST V2 and gRPC V2 agreeing with the model called directly, V1
records, gRPC clients, bad records (400 naming record and field), the tabular feature spec (JSON
and a fitted ColumnTransformer) checked on the tensor the predictor receives, trace headers
forwarded, predictor errors, a predictor stopped and restarted (503, then recovery, in two
workers), and a predictor slower than the timeout (504).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.servers import ServerProcess, free_port, server_env

SPECIES = ["setosa", "versicolor", "virginica"]
FIELDS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_FIELD_LIST = ", ".join(FIELDS)


def iris_rows() -> np.ndarray:
    from sklearn.datasets import load_iris

    return load_iris().data[::5]  # 30 rows, all three species


def records_of(rows: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(FIELDS, map(float, row), strict=True)) for row in rows]


def v2_records(records: list[Any]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "records",
                "shape": [len(records)],
                "datatype": "BYTES",
                "data": [json.dumps(r) for r in records],
            }
        ]
    }


def v2_infer(server: ServerProcess, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/iris/infer", json=body, timeout=30, **kwargs)


def decode_v2(reply: httpx.Response) -> tuple[list[str], list[dict[str, float]]]:
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    return outputs["label"]["data"], [json.loads(p) for p in outputs["probabilities"]["data"]]


def start_all(*servers: ServerProcess, timeout: float = 120.0) -> None:
    """Start the processes together (they load in parallel), then wait for each."""
    for server in servers:
        server.start(wait=False)
    for server in servers:
        server.wait_ready(timeout)


def transformer(
    tmp: Path, name: str, predictor: str, *args: str, env: dict[str, str] | None = None
) -> ServerProcess:
    return ServerProcess(
        ["--transformer", name, "--predictor-host", predictor, *args],
        server_env(tmp, **(env or {})),
        tmp / f"{name}-{free_port()}.log",
    )


# ---- the iris pipeline ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(
    iris_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProcess]]:
    """The default iris predictor with an iris transformer on each predictor protocol."""
    tmp = tmp_path_factory.mktemp("pipeline")
    rest = transformer(tmp, "iris", f"127.0.0.1:{iris_server.http_port}")
    grpc = transformer(tmp, "iris", iris_server.grpc_target, "--predictor-protocol", "grpc-v2")
    start_all(rest, grpc)
    yield {"predictor": iris_server, "v2": rest, "grpc-v2": grpc}
    rest.stop()
    grpc.stop()


@pytest.mark.parametrize("protocol", ["v2", "grpc-v2"])
def test_pipeline_agrees_with_the_model(
    pipeline: dict[str, ServerProcess], iris_estimator: Any, protocol: str
) -> None:
    rows = iris_rows()
    reply = v2_infer(pipeline[protocol], v2_records(records_of(rows)))
    assert reply.status_code == 200, reply.text
    labels, probabilities = decode_v2(reply)

    expected = [SPECIES[i] for i in iris_estimator.predict(rows)]  # type: ignore[attr-defined]
    assert labels == expected
    assert set(labels) == set(SPECIES)
    proba = iris_estimator.predict_proba(rows)  # type: ignore[attr-defined]
    for got, want in zip(probabilities, proba, strict=True):
        assert list(got) == SPECIES
        assert [got[s] for s in SPECIES] == pytest.approx(list(want), rel=1e-12)

    # ...and with the predictor process called directly over V2.
    direct = httpx.post(
        f"{pipeline['predictor'].url}/v2/models/iris/infer",
        json={
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(rows.shape),
                    "datatype": "FP64",
                    "data": rows.ravel().tolist(),
                }
            ]
        },
    ).json()
    assert [SPECIES[i] for i in direct["outputs"][0]["data"]] == labels


def test_v1_instances_of_records(pipeline: dict[str, ServerProcess], iris_estimator: Any) -> None:
    rows = iris_rows()[:3]
    reply = httpx.post(
        f"{pipeline['v2'].url}/v1/models/iris:predict",
        json={"instances": records_of(rows)},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    predictions = reply.json()["predictions"]
    assert [p["label"] for p in predictions] == [
        SPECIES[i]
        for i in iris_estimator.predict(rows)  # type: ignore[attr-defined]
    ]
    proba = iris_estimator.predict_proba(rows)  # type: ignore[attr-defined]
    assert [p["probabilities"]["setosa"] for p in predictions] == pytest.approx(proba[:, 0])


def test_grpc_client_to_transformer(pipeline: dict[str, ServerProcess]) -> None:
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    record = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}

    async def call() -> Any:
        client = InferenceGRPCClient(pipeline["grpc-v2"].grpc_target, timeout=30, retries=0)
        try:
            request = InferRequest(
                "iris", [InferInput("records", [1], "BYTES", [json.dumps(record).encode()])]
            )
            return await client.infer(request)
        finally:
            await client.close()

    response = asyncio.run(call())
    outputs = {o.name: o.as_numpy() for o in response.outputs}
    assert [v.decode() if isinstance(v, bytes) else v for v in outputs["label"]] == ["virginica"]


def test_transformer_metadata(pipeline: dict[str, ServerProcess]) -> None:
    reply = httpx.get(f"{pipeline['v2'].url}/v2/models/iris")
    assert reply.status_code == 200
    assert reply.json() == {
        "name": "iris",
        "versions": [],
        "platform": "kninfer-transformer-iris",
        "inputs": [{"name": "records", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "BYTES", "shape": [-1]},
        ],
    }


GOOD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}

BAD_RECORDS = [
    (
        [GOOD, {**GOOD, "colour": "blue"}],
        f"record 1: unknown field 'colour'; expected fields: {IRIS_FIELD_LIST}",
    ),
    (
        [{k: v for k, v in GOOD.items() if k != "petal_width"}],
        "record 0: missing required field 'petal_width'",
    ),
    (
        [GOOD, GOOD, {**GOOD, "sepal_width": "wide"}],
        "record 2: field 'sepal_width' must be a number, got string \"wide\"",
    ),
    (
        [{**GOOD, "sepal_length": True}],
        "record 0: field 'sepal_length' must be a number, got boolean true",
    ),
    ([{**GOOD, "petal_length": None}], "record 0: missing required field 'petal_length'"),
    ([GOOD, "hello"], 'record 1 must be a JSON object of fields, got string "hello"'),
]


@pytest.mark.parametrize(("records", "message"), BAD_RECORDS)
def test_bad_records_are_400_naming_record_and_field(
    pipeline: dict[str, ServerProcess], records: list[Any], message: str
) -> None:
    server = pipeline["v2"]
    reply = v2_infer(server, v2_records(records))
    assert reply.status_code == 400
    assert reply.json() == {"error": message}
    reply = httpx.post(f"{server.url}/v1/models/iris:predict", json={"instances": records})
    assert reply.status_code == 400
    assert reply.json() == {"error": message}


def test_malformed_requests_are_400(pipeline: dict[str, ServerProcess]) -> None:
    server = pipeline["v2"]
    not_json = {
        "inputs": [
            {"name": "records", "shape": [1], "datatype": "BYTES", "data": ["{sepal_length: 1"]}
        ]
    }
    reply = v2_infer(server, not_json)
    assert reply.status_code == 400
    assert reply.json()["error"].startswith(
        "record 0 (element 0 of input 'records') is not valid JSON"
    )

    numeric = {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}
        ]
    }
    reply = v2_infer(server, numeric)
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("expected one BYTES input of JSON records")

    reply = v2_infer(
        server, {"inputs": [{"name": "records", "shape": [0], "datatype": "BYTES", "data": []}]}
    )
    assert reply.status_code == 400
    assert reply.json() == {"error": "the request has no records"}

    reply = httpx.post(f"{server.url}/v1/models/iris:predict", json={"instances": []})
    assert reply.status_code == 400
    assert reply.json() == {"error": "the request has no records"}

    # The transformer keeps serving after every one of them.
    assert v2_infer(server, v2_records([GOOD])).status_code == 200


# ---- a recording predictor: what the transformer sends, and predictor failures -------------


class Recorder(ThreadingHTTPServer):
    """A stand-in predictor (not kninfer code) that records requests and answers V2."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecorderHandler)
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.fail_with: tuple[int, dict[str, Any]] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class RecorderHandler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
        if self.server.fail_with is not None:
            status, doc = self.server.fail_with
        else:
            (tensor,) = body["inputs"]
            rows = tensor["shape"][0]
            status, doc = (
                200,
                {
                    "model_name": "m",
                    "id": body.get("id", ""),
                    "outputs": [
                        {
                            "name": "predict",
                            "datatype": "INT64",
                            "shape": [rows],
                            "data": [i % 2 for i in range(rows)],
                        },
                        {
                            "name": "predict_proba",
                            "datatype": "FP64",
                            "shape": [rows, 2],
                            "data": [0.25, 0.75] * rows,
                        },
                    ],
                },
            )
        payload = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


SPEC = {
    "fields": [
        {"name": "age", "type": "number", "scale": {"mean": 40, "std": 10}},
        {"name": "colour", "type": "category", "categories": ["red", "green", "blue"]},
        {
            "name": "size",
            "type": "category",
            "categories": ["S", "M", "L"],
            "encoding": "ordinal",
            "default": "M",
        },
        {"name": "smoker", "type": "boolean", "default": False},
        {"name": "income", "type": "number", "scale": {"min": 0, "max": 1000}, "default": 500},
    ],
    "labels": ["no", "yes"],
    "probabilities": True,
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Tabular transformers (JSON spec; fitted ColumnTransformer) in front of a Recorder."""
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    tmp = tmp_path_factory.mktemp("tabular")
    recorder = Recorder()
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()

    json_dir = tmp / "json-spec"
    json_dir.mkdir()
    (json_dir / "features.json").write_text(json.dumps(SPEC))

    frame = pd.DataFrame(
        {
            "age": [20.0, 30.0, 50.0, 60.0],
            "city": ["oslo", "rome", "oslo", "lima"],
            "height": [1.6, 1.7, 1.8, 1.9],
        }
    )
    column_transformer = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "height"]),
            ("cat", OneHotEncoder(), ["city"]),
        ]
    ).fit(frame)
    ct_dir = tmp / "ct-spec"
    ct_dir.mkdir()
    joblib.dump(column_transformer, ct_dir / "preprocessor.joblib")
    (ct_dir / "features.json").write_text(
        json.dumps(
            {
                "column_transformer": "preprocessor.joblib",
                "fields": [{"name": "height", "type": "number", "default": 1.75}],
                "labels": ["no", "yes"],
            }
        )
    )

    spec_json = transformer(
        tmp,
        "tabular",
        recorder.host,
        "--model-dir",
        str(json_dir),
        "--model-name",
        "churn",
        "--predictor-retries",
        "0",
    )
    spec_ct = transformer(
        tmp, "tabular", recorder.host, "--model-dir", str(ct_dir), "--model-name", "churn"
    )
    start_all(spec_json, spec_ct)
    yield {
        "recorder": recorder,
        "json": spec_json,
        "ct": spec_ct,
        "column_transformer": column_transformer,
    }
    spec_json.stop()
    spec_ct.stop()
    recorder.shutdown()


def last_tensor(recorder: Recorder) -> np.ndarray:
    _, body = recorder.requests[-1]
    (tensor,) = body["inputs"]
    assert tensor["name"] == "input-0" and tensor["datatype"] == "FP64"
    return np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])


def test_json_spec_encodes_records(recorded: dict[str, Any]) -> None:
    records = [
        {"age": 50, "colour": "green", "size": "L", "smoker": True, "income": 250},
        {"age": 30.5, "colour": "red"},  # defaults: size M, smoker false, income 500
    ]
    reply = httpx.post(
        f"{recorded['json'].url}/v2/models/churn/infer",
        json=v2_records(records),
        headers={
            "x-request-id": "req-42",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "vendor=1",
            "x-private": "not forwarded",
        },
    )
    assert reply.status_code == 200, reply.text
    headers, body = recorded["recorder"].requests[-1]
    assert body["model_name"] == "churn"
    assert [o["name"] for o in body["outputs"]] == ["predict", "predict_proba"]
    np.testing.assert_allclose(
        last_tensor(recorded["recorder"]),
        [
            # age scaled, colour one-hot (red, green, blue), size ordinal, smoker, income min-max
            [1.0, 0, 1, 0, 2, 1, 0.25],
            [-0.95, 1, 0, 0, 1, 0, 0.5],
        ],
    )
    # Trace context and request id reach the predictor; other headers do not.
    assert headers["x-request-id"] == "req-42"
    assert headers["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert headers["tracestate"] == "vendor=1"
    assert "x-private" not in headers
    labels, probabilities = decode_v2(reply)
    assert labels == ["no", "yes"]  # class indices 0, 1 named by the spec's labels
    assert probabilities == [{"no": 0.25, "yes": 0.75}] * 2


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"age": 1, "colour": "purple"},
            "record 0: field 'colour' has unknown category 'purple'; expected one of red, green, "
            "blue",
        ),
        (
            {"age": 1, "colour": "red", "size": 3},
            "record 0: field 'size' must be a category (string), got int 3",
        ),
        (
            {"age": 1, "colour": "red", "smoker": "yes"},
            "record 0: field 'smoker' must be true or false, got string \"yes\"",
        ),
        ({"colour": "red"}, "record 0: missing required field 'age'"),
    ],
)
def test_json_spec_rejects_bad_values(
    recorded: dict[str, Any], record: dict[str, Any], message: str
) -> None:
    reply = httpx.post(f"{recorded['json'].url}/v2/models/churn/infer", json=v2_records([record]))
    assert reply.status_code == 400
    assert reply.json() == {"error": message}


def test_column_transformer_spec(recorded: dict[str, Any]) -> None:
    import pandas as pd

    records = [{"age": 25, "city": "rome", "height": 1.65}, {"age": 61.5, "city": "lima"}]
    reply = httpx.post(f"{recorded['ct'].url}/v1/models/churn:predict", json={"instances": records})
    assert reply.status_code == 200, reply.text
    # This spec asks for no probabilities: V1 predictions are the labels alone.
    assert reply.json() == {"predictions": ["no", "yes"]}
    _, body = recorded["recorder"].requests[-1]
    assert [o["name"] for o in body["outputs"]] == ["predict"]
    frame = pd.DataFrame([{**r, "height": r.get("height", 1.75)} for r in records])
    expected = recorded["column_transformer"].transform(frame[["age", "city", "height"]])
    np.testing.assert_allclose(last_tensor(recorded["recorder"]), expected)

    reply = httpx.post(
        f"{recorded['ct'].url}/v1/models/churn:predict",
        json={"instances": [{"age": 1, "city": "paris"}]},
    )
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "record 0: field 'city' has unknown category 'paris'; "
        "expected one of lima, oslo, rome"
    }


@pytest.mark.parametrize(
    ("status", "doc", "expected_status", "expected"),
    [
        (500, {"error": "boom"}, 502, "answered 500: boom"),
        (
            400,
            {"error": "input 'input-0' has shape [2, 7]"},
            502,
            "answered 400: input 'input-0' has shape [2, 7]",
        ),
        (
            503,
            {"error": "model 'churn' is not ready"},
            503,
            "answered 503: model 'churn' is not ready",
        ),
    ],
)
def test_predictor_errors_are_upstream_errors(
    recorded: dict[str, Any], status: int, doc: dict[str, Any], expected_status: int, expected: str
) -> None:
    recorder = recorded["recorder"]
    recorder.fail_with = (status, doc)
    try:
        reply = httpx.post(
            f"{recorded['json'].url}/v2/models/churn/infer",
            json=v2_records([{"age": 1, "colour": "red"}]),
        )
    finally:
        recorder.fail_with = None
    assert reply.status_code == expected_status
    assert reply.json() == {"error": f"predictor at http://{recorder.host} {expected}"}


# ---- predictor down and back, slower than the timeout; --workers 2 -------------------------

# A scikit-learn-style classifier that answers in microseconds, except that a record with a
# negative first feature makes it take 6 s (longer than the transformers' 2.5 s timeout).
SLOW_MODEL = textwrap.dedent("""
    import time
    import numpy as np

    class SometimesSlow:
        n_features_in_ = 4
        classes_ = np.array([0, 1, 2])

        def predict(self, X):
            if (X[:, 0] < 0).any():
                time.sleep(6.0)
            return (X[:, 0] > 5).astype(np.int64)

        def predict_proba(self, X):
            return np.eye(3)[self.predict(X)]
""")


def slow_capable_model(tmp_path: Path) -> tuple[Path, Path]:
    """(PYTHONPATH entry, model dir) for a joblib-saved SometimesSlow."""
    import joblib

    code = tmp_path / "code"
    code.mkdir()
    (code / "slowmodel.py").write_text(SLOW_MODEL)
    sys.path.insert(0, str(code))
    try:
        import slowmodel  # type: ignore[import-not-found]

        model_dir = tmp_path / "model"
        model_dir.mkdir()
        joblib.dump(slowmodel.SometimesSlow(), model_dir / "model.joblib")
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("slowmodel", None)
    return code, model_dir


def lingering(processes: list[Any], within_s: float) -> list[Any]:
    """The processes still running (not zombies) after waiting up to `within_s` for them."""
    import psutil

    deadline = time.monotonic() + within_s
    while True:
        alive = []
        for process in processes:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def test_predictor_down_restarted_and_slow(tmp_path: Path) -> None:
    """One predictor, a REST transformer with --workers 2 and a gRPC transformer: they agree
    with the model, answer 503 naming the predictor while it is down, recover when it is back,
    and answer 504 when it is slower than --predictor-timeout-s."""
    import psutil

    code, model_dir = slow_capable_model(tmp_path)
    predictor_args = ["--model-dir", str(model_dir)]
    env = {"PYTHONPATH": str(code)}
    predictor = ServerProcess(
        predictor_args, server_env(tmp_path, **env), tmp_path / "predictor.log"
    )
    timeout = ["--predictor-timeout-s", "2.5", "--predictor-retries", "1"]
    rest = transformer(
        tmp_path, "iris", f"127.0.0.1:{predictor.http_port}", "--workers", "2", *timeout
    )
    grpc = transformer(
        tmp_path, "iris", predictor.grpc_target, "--predictor-protocol", "grpc-v2", *timeout
    )
    again: ServerProcess | None = None
    addresses = {
        "rest": f"http://127.0.0.1:{predictor.http_port}",
        "grpc": f"grpc://{predictor.grpc_target}",
    }
    body = v2_records([GOOD, {**GOOD, "sepal_length": 4.9}])
    expected = ["versicolor", "setosa"]  # SometimesSlow: class 1 when sepal_length > 5
    try:
        start_all(predictor, rest, grpc)
        assert rest.process is not None
        workers = psutil.Process(rest.process.pid).children()
        assert len([w for w in workers if "spawn_main" in " ".join(w.cmdline())]) == 2
        # Fresh connections, so both REST workers answer (SO_REUSEPORT spreads connections);
        # KServe 0.21's multi-worker transformer answers 501 here.
        for _ in range(6):
            for server in (rest, grpc):
                reply = v2_infer(server, body)
                assert reply.status_code == 200, reply.text
                assert decode_v2(reply)[0] == expected

        predictor.stop()
        for server, address in ((rest, addresses["rest"]), (grpc, addresses["grpc"])):
            reply = v2_infer(server, body)
            assert reply.status_code == 503
            assert reply.json()["error"].startswith(
                f"predictor at {address} is unreachable after 2 attempts: "
            )
            assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200

        again = ServerProcess(
            predictor_args,
            server_env(tmp_path, **env),
            tmp_path / "predictor.log",
            http_port=predictor.http_port,
            grpc_port=predictor.grpc_port,
        )
        again.start(timeout=120)
        for server in (rest, grpc):
            deadline = time.monotonic() + 30
            while True:  # gRPC reconnects with backoff (capped at 1 s by the client)
                reply = v2_infer(server, body)
                if reply.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert reply.status_code == 200, reply.text
            assert decode_v2(reply)[0] == expected
        for _ in range(6):  # both REST workers recovered
            assert v2_infer(rest, body).status_code == 200

        slow = v2_records([{**GOOD, "sepal_length": -1.0}])
        for server, address in ((rest, addresses["rest"]), (grpc, addresses["grpc"])):
            reply = v2_infer(server, slow)
            assert reply.status_code == 504
            assert reply.json() == {
                "error": f"predictor at {address} did not answer within "
                "2.5s (KNINFER_PREDICTOR_TIMEOUT_S)"
            }
            assert v2_infer(server, body).status_code == 200  # and it keeps serving

        rest.signal(signal.SIGTERM)
        assert rest.process.wait(60) == 0  # every worker drained and exited 0
        # The parent joined its workers; its other child, multiprocessing's resource tracker,
        # exits when it reads EOF from the parent, so give it a moment rather than racing it.
        assert not lingering(workers, within_s=10)
    finally:
        for server in (rest, grpc, predictor, again):
            if server is not None:
                server.stop()


def test_transformer_that_cannot_load_exits_1(tmp_path: Path) -> None:
    """No port opens and the process says why (Knative then marks the revision failed)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (
            ["--transformer", "tabular", "--model-dir", str(empty)],
            f"model failed to load: no feature spec: {empty.resolve() / 'features.json'} does not "
            "exist",
        ),
        (
            ["--transformer", "nosuch"],
            "model failed to load: unknown transformer 'nosuch'; choose one of passthrough, "
            "tabular, iris or give package.module:Class",
        ),
    ]
    for args, message in cases:
        server = ServerProcess(
            [*args, "--predictor-host", "127.0.0.1:1"],
            server_env(tmp_path),
            tmp_path / f"fail-{len(args)}.log",
        )
        server.start(wait=False)
        assert server.process is not None
        assert server.process.wait(120) == 1
        server.stop()
        assert message in server.log()
