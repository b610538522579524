"""V1/V2 REST against a real `kninfer serve` of the embedded iris model."""

from __future__ import annotations

import struct

import httpx
import numpy as np
import orjson
import pytest

from tests.support.servers import served_version

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3], [4.9, 3.0, 1.4, 0.2]]


def v2_body(rows=ROWS, datatype="FP64", name="input-0", **extra):
    flat = [v for row in rows for v in row]
    return {
        "inputs": [{"name": name, "shape": [len(rows), 4], "datatype": datatype, "data": flat}],
        **extra,
    }


def test_health_and_server_metadata(iris_server):
    live = httpx.get(f"{iris_server.url}/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})
    ready = httpx.get(f"{iris_server.url}/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    meta = httpx.get(f"{iris_server.url}/v2").json()
    assert meta["name"] == "kninfer"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_states_real_tensors(iris_server):
    reply = httpx.get(f"{iris_server.url}/v2/models/iris")
    assert reply.status_code == 200
    assert reply.json() == {
        "name": "iris",
        "versions": [served_version(iris_server)],
        "platform": "kninfer-sklearn",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }
    ready = httpx.get(f"{iris_server.url}/v2/models/iris/ready")
    assert (ready.status_code, ready.json()) == (200, {"name": "iris", "ready": True})


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT32", "INT64"])
def test_v2_infer_agrees_with_estimator(iris_server, iris_estimator, datatype):
    rows = ROWS if datatype.startswith("FP") else [[5, 3, 1, 0], [7, 3, 5, 2]]
    reply = httpx.post(
        f"{iris_server.url}/v2/models/iris/infer", json=v2_body(rows, datatype, id="req-1")
    )
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    assert doc["id"] == "req-1"
    assert doc["model_name"] == "iris"
    expected = iris_estimator.predict(np.asarray(rows, dtype=np.float64)).tolist()
    assert doc["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [len(rows)], "data": expected}
    ]


def test_v2_outputs_selection_returns_probabilities(iris_server, iris_estimator):
    body = v2_body(outputs=[{"name": "predict_proba"}, {"name": "predict"}])
    doc = httpx.post(f"{iris_server.url}/v2/models/iris/infer", json=body).json()
    assert [o["name"] for o in doc["outputs"]] == ["predict_proba", "predict"]
    proba = np.asarray(doc["outputs"][0]["data"]).reshape(doc["outputs"][0]["shape"])
    np.testing.assert_allclose(proba, iris_estimator.predict_proba(np.asarray(ROWS)))
    assert doc["outputs"][0]["datatype"] == "FP64"


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/octet-stream", "text/plain"]
)
def test_json_accepted_whatever_the_content_type(iris_server, content_type):
    headers = {"content-type": content_type} if content_type else {}
    raw = orjson.dumps(v2_body())
    with httpx.Client() as client:
        request = client.build_request(
            "POST", f"{iris_server.url}/v2/models/iris/infer", content=raw, headers=headers
        )
        assert "content-type" not in request.headers or content_type
        reply = client.send(request)
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == [0, 1, 2, 0]


def test_binary_tensor_extension_both_directions(iris_server, iris_estimator):
    features = np.asarray(ROWS, dtype=np.float32)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [4, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": features.nbytes},
                }
            ],
            "outputs": [
                {"name": "predict", "parameters": {"binary_data": True}},
                {"name": "predict_proba", "parameters": {"binary_data": True}},
            ],
        }
    )
    reply = httpx.post(
        f"{iris_server.url}/v2/models/iris/infer",
        content=header + features.tobytes(),
        headers={
            "inference-header-content-length": str(len(header)),
            "content-type": "application/octet-stream",
        },
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/octet-stream"
    json_len = int(reply.headers["inference-header-content-length"])
    doc = orjson.loads(reply.content[:json_len])
    predict_meta, proba_meta = doc["outputs"]
    assert "data" not in predict_meta
    size = predict_meta["parameters"]["binary_data_size"]
    assert size == 4 * 8
    blob = reply.content[json_len:]
    labels = np.frombuffer(blob[:size], dtype=np.int64)
    proba = np.frombuffer(
        blob[size : size + proba_meta["parameters"]["binary_data_size"]], dtype=np.float64
    ).reshape(4, 3)
    assert labels.tolist() == iris_estimator.predict(features.astype(np.float64)).tolist()
    np.testing.assert_allclose(
        proba, iris_estimator.predict_proba(features.astype(np.float64)), rtol=1e-6
    )


def test_binary_output_requested_for_json_input(iris_server):
    reply = httpx.post(
        f"{iris_server.url}/v2/models/iris/infer",
        json=v2_body(parameters={"binary_data_output": True}),
    )
    assert reply.status_code == 200
    json_len = int(reply.headers["inference-header-content-length"])
    labels = struct.unpack("<4q", reply.content[json_len:])
    assert list(labels) == [0, 1, 2, 0]


def test_v1_predict_agrees_with_v2(iris_server, iris_estimator):
    reply = httpx.post(f"{iris_server.url}/v1/models/iris:predict", json={"instances": ROWS})
    assert reply.status_code == 200
    assert reply.json() == {"predictions": iris_estimator.predict(np.asarray(ROWS)).tolist()}
    assert httpx.get(f"{iris_server.url}/v1/models").json() == {"models": ["iris"]}
    assert httpx.get(f"{iris_server.url}/v1/models/iris").json() == {"name": "iris", "ready": True}


def test_prometheus_metrics_exposed(iris_server):
    httpx.post(f"{iris_server.url}/v2/models/iris/infer", json=v2_body())
    reply = httpx.get(f"{iris_server.url}/metrics")
    assert reply.status_code == 200
    assert 'request_predict_seconds_count{model_name="iris"}' in reply.text
