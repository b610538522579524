"""gRPC V2 against a real server: same answers as REST, and client mistakes never INTERNAL."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from tests.support.servers import grpc_stub

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def stub(iris_server):
    with grpc_stub(iris_server.grpc_target) as stub:
        yield stub


def infer_request(rows=ROWS, datatype="FP64", name="input-0", model="iris", outputs=()):
    flat = [v for row in rows for v in row]
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=name, datatype=datatype, shape=[len(rows), len(rows[0])]
    )
    if datatype == "FP64":
        tensor.contents.fp64_contents.extend(flat)
    elif datatype == "FP32":
        tensor.contents.fp32_contents.extend(flat)
    elif datatype == "INT64":
        tensor.contents.int64_contents.extend(int(v) for v in flat)
    return pb.ModelInferRequest(
        model_name=model,
        id="g-1",
        inputs=[tensor],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=o) for o in outputs],
    )


def test_health_and_metadata(stub):
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="iris")).ready
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="iris"))
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("input-0", "FP64", [-1, 4])
    ]
    assert [t.name for t in meta.outputs] == ["predict", "predict_proba"]


def test_infer_matches_estimator(stub, iris_estimator):
    reply = stub.ModelInfer(infer_request(outputs=("predict", "predict_proba")))
    assert reply.model_name == "iris" and reply.id == "g-1"
    names = [o.name for o in reply.outputs]
    assert names == ["predict", "predict_proba"]
    labels = np.frombuffer(reply.raw_output_contents[0], dtype=np.int64)
    proba = np.frombuffer(reply.raw_output_contents[1], dtype=np.float64).reshape(2, 3)
    assert labels.tolist() == iris_estimator.predict(np.asarray(ROWS)).tolist()
    np.testing.assert_allclose(proba, iris_estimator.predict_proba(np.asarray(ROWS)))


def test_raw_input_contents(stub, iris_estimator):
    features = np.asarray(ROWS, dtype=np.float32)
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP32", shape=[2, 4])
    reply = stub.ModelInfer(
        pb.ModelInferRequest(
            model_name="iris", inputs=[tensor], raw_input_contents=[features.tobytes()]
        )
    )
    labels = np.frombuffer(reply.raw_output_contents[0], dtype=np.int64)
    assert labels.tolist() == iris_estimator.predict(features.astype(np.float64)).tolist()


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (
            infer_request(model="nope"),
            grpc.StatusCode.NOT_FOUND,
            "model 'nope' not found; GET /v1/models lists the served models",
        ),
        (
            infer_request(rows=[[1.0, 2.0, 3.0]]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'input-0' has shape [1, 3]; expected [-1, 4] (-1 is any size)",
        ),
        (infer_request(datatype="INT64", rows=[[1, 2, 3, 4]]), grpc.StatusCode.OK, ""),
        (
            infer_request(datatype="INT64", rows=[[1, 2, 3, 4]], name="a"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown input 'a'; model 'iris' takes input-0",
        ),
        (
            infer_request(outputs=("nope",)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown output(s) nope; model 'iris' has predict, predict_proba",
        ),
        (
            pb.ModelInferRequest(
                model_name="iris",
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input-0", datatype="FP32", shape=[2, 4]
                    )
                ],
                raw_input_contents=[b"\x00" * 12],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'input-0': data does not match shape [2, 4] and datatype FP32 (cannot reshape "
            "array of size 3 into shape (2,4))",
        ),
        (
            pb.ModelInferRequest(
                model_name="iris",
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input-0", datatype="FP64", shape=[1, 4]
                    )
                ],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'input-0' has no 'contents' (and the request has no raw_input_contents)",
        ),
    ],
    ids=[
        "unknown-model",
        "wrong-features",
        "int64-ok",
        "renamed-input",
        "unknown-output",
        "short-raw-bytes",
        "no-data",
    ],
)
def test_errors_use_matching_status(stub, request_, code, message):
    if code == grpc.StatusCode.OK:
        assert stub.ModelInfer(request_).outputs[0].name == "predict"
        return
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request_)
    assert caught.value.code() == code
    assert caught.value.details() == message
    # and the server keeps serving
    assert stub.ModelInfer(infer_request()).outputs[0].name == "predict"


def test_the_served_version_answers_and_another_is_not_found(stub, iris_server):
    from tests.support.servers import served_version

    version = served_version(iris_server)
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="iris"), timeout=10)
    assert list(meta.versions) == [version]
    request = infer_request()
    assert stub.ModelInfer(request, timeout=10).model_version == version
    request.model_version = version
    assert stub.ModelInfer(request, timeout=10).model_version == version
    request.model_version = "nope"
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == (
        f"model 'iris' has no version 'nope'; this server serves version '{version}'"
    )
