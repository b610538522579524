import httpx


def test_default_server_infers_iris(iris_server):
    body = {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
        ]
    }
    reply = httpx.post(f"{iris_server.url}/v2/models/iris/infer", json=body)
    assert reply.status_code == 200
    assert reply.json()["outputs"][0]["data"] == [0]
