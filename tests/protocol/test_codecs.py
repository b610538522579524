"""The pure request codecs in process: gRPC V2 (kninfer.protocol.grpc_v2) and V1
(kninfer.protocol.v1), each against what a real client builds (KServe's InferRequest for gRPC)."""

from __future__ import annotations

import numpy as np
import pytest
from kserve import InferInput, InferRequest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from kninfer.errors import InvalidInput
from kninfer.protocol.grpc_v2 import decode_grpc_request
from kninfer.protocol.v1 import decode_v1_request, instances_by_input, v1_rows

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])


def grpc_request(raw: bool) -> pb.ModelInferRequest:
    tensor = InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS, binary_data=raw)
    return InferRequest(model_name="iris", infer_inputs=[tensor]).to_grpc()


@pytest.mark.parametrize("raw", [False, True])
def test_grpc_request_decodes_to_the_same_tensor(raw: bool) -> None:
    request = decode_grpc_request(grpc_request(raw))
    assert request.model_name == "iris"
    np.testing.assert_array_equal(request.inputs[0].as_numpy(), ROWS)


def test_a_grpc_input_without_contents_says_so() -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=[1, 4])
    with pytest.raises(InvalidInput, match="input 'input-0' has no 'contents'"):
        decode_grpc_request(pb.ModelInferRequest(model_name="iris", inputs=[tensor]))


def test_v1_bodies() -> None:
    payload = decode_v1_request(b'{"instances": [[1, 2], [3, 4]]}')
    assert v1_rows(payload).instance_list("no rows") == [[1, 2], [3, 4]]
    split = v1_rows(
        decode_v1_request(b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}')
    )
    assert (split.form, split.columns, split.rows) == ("dataframe_split", ["a", "b"], [[1, 2]])
    for bad, message in ((b"[1, 2]", "JSON object"), (b"{", "not valid JSON")):
        with pytest.raises(InvalidInput, match=message):
            decode_v1_request(bad)
    with pytest.raises(InvalidInput, match="empty batch"):
        v1_rows(decode_v1_request(b'{"instances": []}')).instance_list("no rows")
    with pytest.raises(InvalidInput, match='request has no "instances"'):
        decode_v1_request(b'{"rows": [[1]]}')  # the body names none of V1's fields


def test_v1_instances_keyed_by_input() -> None:
    split = instances_by_input(
        [{"x": [1, 2], "mask": [1, 0]}, {"x": [3, 4], "mask": [0, 1]}], ["x", "mask"]
    )
    assert split == {"x": [[1, 2], [3, 4]], "mask": [[1, 0], [0, 1]]}
    with pytest.raises(InvalidInput, match="mask"):
        instances_by_input([{"x": [1, 2]}], ["x", "mask"])


@pytest.mark.parametrize(
    ("path", "v2", "v2_any", "v1"),
    [
        ("/v2/models/iris/infer", "iris", "iris", None),
        ("/v2/models/iris/versions/1/infer", None, "iris", None),
        ("/v2/models/iris/versions/infer", None, None, None),
        ("/v2/models//infer", None, None, None),
        ("/v2/models/a/b/infer", None, None, None),
        ("/v2/models/iris/versions/1/x/infer", None, None, None),
        ("/v1/models/iris:predict", None, None, "iris"),
        ("/v1/models/a/b:predict", None, None, None),
        ("/v2/models/iris", None, None, None),
    ],
)
def test_route_paths_name_the_model_as_starlette_matches_it(path, v2, v2_any, v1) -> None:
    from kninfer.protocol.paths import v1_predict_model, v2_any_infer_model, v2_infer_model

    assert (v2_infer_model(path), v2_any_infer_model(path), v1_predict_model(path)) == (
        v2,
        v2_any,
        v1,
    )
