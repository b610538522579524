"""KServe's own clients against a real kninfer server: `kserve.InferenceRESTClient` with V1 and
V2 and `kserve.InferenceGRPCClient`, as a KServe user's code calls an InferenceService. Answers
are compared with the iris model's own in-process ones."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

from tests.support.servers import ServerProcess

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def v2_request() -> InferRequest:
    tensor = InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    wanted = [RequestedOutput(name="predict"), RequestedOutput(name="predict_proba")]
    return InferRequest(model_name="iris", infer_inputs=[tensor], request_outputs=wanted)


async def rest(protocol: str, call: str, *args: Any) -> Any:
    client = InferenceRESTClient(RESTConfig(protocol=protocol, timeout=30))
    try:
        return await getattr(client, call)(*args)
    finally:
        await client.close()


def test_rest_v1_client(iris_server: ServerProcess, iris_estimator: Any) -> None:
    base = iris_server.url
    # GET / answers {"status": "alive"}, KServe's ModelServer's liveness, which this reads.
    assert asyncio.run(rest("v1", "is_server_live", base)) is True
    assert asyncio.run(rest("v1", "is_model_ready", base, "iris")) is True
    answer = asyncio.run(rest("v1", "infer", base, {"instances": ROWS.tolist()}, "iris"))
    assert answer == {"predictions": iris_estimator.predict(ROWS).tolist()}


def test_rest_v2_client(iris_server: ServerProcess, iris_estimator: Any) -> None:
    base = iris_server.url
    assert asyncio.run(rest("v2", "is_server_live", base)) is True
    assert asyncio.run(rest("v2", "is_server_ready", base)) is True
    assert asyncio.run(rest("v2", "is_model_ready", base, "iris")) is True
    response = asyncio.run(rest("v2", "infer", base, v2_request(), "iris"))
    outputs = {o.name: o.as_numpy() for o in response.outputs}
    assert outputs["predict"].tolist() == iris_estimator.predict(ROWS).tolist()
    np.testing.assert_allclose(
        outputs["predict_proba"], iris_estimator.predict_proba(ROWS), rtol=1e-12
    )


def test_rest_v2_client_sees_a_client_mistake_as_a_400(iris_server: ServerProcess) -> None:
    import httpx

    tensor = InferInput("input-0", [1, 3], "FP64")
    tensor.set_data_from_numpy(np.array([[1.0, 2.0, 3.0]]))
    bad = InferRequest(model_name="iris", infer_inputs=[tensor])
    with pytest.raises(httpx.HTTPStatusError) as caught:
        asyncio.run(rest("v2", "infer", iris_server.url, bad, "iris"))
    assert caught.value.response.status_code == 400
    assert caught.value.response.json() == {
        "error": "input 'input-0' has shape [1, 3]; expected [-1, 4] (-1 is any size)"
    }


def test_grpc_client(iris_server: ServerProcess, iris_estimator: Any) -> None:
    async def calls() -> tuple[bool, bool, bool, Any]:
        client = InferenceGRPCClient(iris_server.grpc_target, timeout=30)
        try:
            return (
                await client.is_server_live(),
                await client.is_server_ready(),
                await client.is_model_ready("iris"),
                await client.infer(v2_request()),
            )
        finally:
            await client.close()

    live, ready, model_ready, response = asyncio.run(calls())
    assert (live, ready, model_ready) == (True, True, True)
    outputs = {o.name: o.as_numpy() for o in response.outputs}
    assert outputs["predict"].tolist() == iris_estimator.predict(ROWS).tolist()
    np.testing.assert_allclose(
        outputs["predict_proba"], iris_estimator.predict_proba(ROWS), rtol=1e-12
    )
