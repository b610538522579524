"""`kninfer serve --predictor pytorch` with a model of two inputs (x, and an integer mask sharing
its batch dimension) and two named outputs (a returned dict): the torch.export program and the
eager module, compared with the program's (or module's) own answers in this process, over V2
REST, gRPC and V1 records; the program's batch constraints as 400s. Bad-input rows for the same
program are in tests/reliability/test_reliability_inputs.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from kninfer.errors import InvalidInput, ModelLoadError
from kninfer.settings import ServeSettings
from tests.support.servers import ServerProcess, grpc_stub, served_version, servers_started
from tests.support.torch_models import (
    MASKED_MAX_BATCH,
    MASKED_MODULE,
    MASKED_SPEC,
    masked_module,
    module_outputs,
    program_outputs,
    save_masked_eager,
    save_masked_export,
)

RNG = np.random.default_rng(3)
X = RNG.normal(size=(3, 8)).round(3).astype(np.float32)
MASK = (RNG.random(size=(3, 8)) > 0.3).astype(np.int64)
OUTPUTS = [
    {"name": "logits", "datatype": "FP32", "shape": [-1, 3]},
    {"name": "probs", "datatype": "FP32", "shape": [-1, 3]},
]
KINDS = ["export", "eager"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("torch-masked")
    model = masked_module(tmp / "src")
    return SimpleNamespace(
        tmp=tmp,
        model=model,
        export=save_masked_export(model, tmp / "export"),
        eager=save_masked_eager(model, tmp / "eager"),
    )


@pytest.fixture(scope="module")
def servers(built: SimpleNamespace) -> Iterator[dict[str, ServerProcess]]:
    """The program with batching (the PyTorch default, so two inputs go through the batcher)
    and its warm-up on; the eager module with the same dict output, from --torch-module."""
    commands = {
        "export": [
            "--predictor",
            "pytorch",
            "--model-name",
            "masked",
            "--model-dir",
            str(built.export),
            "--max-latency-ms",
            "20",
        ],
        "eager": [
            "--predictor",
            "pytorch",
            "--model-name",
            "masked",
            "--model-dir",
            str(built.eager),
            "--torch-module",
            f"{MASKED_MODULE}:Masked",
            "--input-spec",
            MASKED_SPEC,
        ],
    }
    with servers_started(commands, built.tmp, timeout=180) as started:
        yield started


def expected(
    built: SimpleNamespace, kind: str, x: np.ndarray, mask: np.ndarray
) -> dict[str, np.ndarray]:
    """The program's own answer (its module(), loaded here), or the eager module's."""
    if kind == "export":
        answer: dict[str, np.ndarray] = program_outputs(built.export, x, mask)
    else:
        answer = module_outputs(built.model, x, mask)
    return answer


def v2_body(x: np.ndarray, mask: np.ndarray, **extra: object) -> dict[str, object]:
    return {
        "id": "m-1",
        **extra,
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()},
            {"name": "mask", "shape": list(mask.shape), "datatype": "INT64", "data": mask.tolist()},
        ],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_names_both_inputs_and_the_dict_keys(servers, kind: str) -> None:
    """The program states its outputs by the keys it returns, as the eager probe does; the
    server started, so the warm-up prediction passed."""
    reply = httpx.get(f"{servers[kind].url}/v2/models/masked", timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "name": "masked",
        "versions": [served_version(servers[kind])],
        "platform": "kninfer-pytorch",
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [-1, 8]},
            {"name": "mask", "datatype": "INT64", "shape": [-1, 8]},
        ],
        "outputs": OUTPUTS,
    }


@pytest.mark.parametrize("kind", KINDS)
def test_v2_answers_are_the_models_own(servers, built, kind: str) -> None:
    reply = httpx.post(
        f"{servers[kind].url}/v2/models/masked/infer", json=v2_body(X, MASK), timeout=30
    )
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    assert doc["id"] == "m-1"
    want = expected(built, kind, X, MASK)
    assert [(o["name"], o["datatype"], o["shape"]) for o in doc["outputs"]] == [
        ("logits", "FP32", [3, 3]),
        ("probs", "FP32", [3, 3]),
    ]
    for output in doc["outputs"]:
        np.testing.assert_allclose(
            np.reshape(output["data"], (3, 3)), want[output["name"]], rtol=1e-5, atol=1e-6
        )


def test_v2_one_requested_output(servers, built) -> None:
    reply = httpx.post(
        f"{servers['export'].url}/v2/models/masked/infer",
        json=v2_body(X, MASK, outputs=[{"name": "probs"}]),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    assert output["name"] == "probs"
    np.testing.assert_allclose(
        np.reshape(output["data"], (3, 3)),
        expected(built, "export", X, MASK)["probs"],
        rtol=1e-5,
        atol=1e-6,
    )


def test_grpc_answers_are_the_programs_own(servers, built) -> None:
    x = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[3, 8])
    x.contents.fp32_contents.extend(X.reshape(-1).tolist())
    mask = pb.ModelInferRequest.InferInputTensor(name="mask", datatype="INT64", shape=[3, 8])
    mask.contents.int64_contents.extend(MASK.reshape(-1).tolist())
    want = expected(built, "export", X, MASK)
    with grpc_stub(servers["export"].grpc_target) as stub:
        reply = stub.ModelInfer(
            pb.ModelInferRequest(model_name="masked", id="g", inputs=[x, mask]), timeout=30
        )
        assert [(o.name, o.datatype, list(o.shape)) for o in reply.outputs] == [
            ("logits", "FP32", [3, 3]),
            ("probs", "FP32", [3, 3]),
        ]
        for output, raw in zip(reply.outputs, reply.raw_output_contents, strict=True):
            got = np.frombuffer(raw, dtype=np.float32).reshape(3, 3)
            np.testing.assert_allclose(got, want[output.name], rtol=1e-5, atol=1e-6)

        short = pb.ModelInferRequest.InferInputTensor(name="mask", datatype="INT64", shape=[2, 8])
        short.contents.int64_contents.extend(MASK[:2].reshape(-1).tolist())
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(
                pb.ModelInferRequest(model_name="masked", inputs=[x, short]), timeout=30
            )
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details() == (
            "input 'x' has shape [3, 8] but input 'mask' has shape [2, 8]; the model takes the "
            "same size in dimension 0"
        )


@pytest.mark.parametrize("kind", KINDS)
def test_v1_records_keyed_by_input_name_feed_both_inputs(servers, built, kind: str) -> None:
    """KServe V1's named tensors: each instance an object; each key stacked as that input's
    batch. V1 answers with the first output."""
    instances = [{"x": row.tolist(), "mask": m.tolist()} for row, m in zip(X, MASK, strict=True)]
    reply = httpx.post(
        f"{servers[kind].url}/v1/models/masked:predict", json={"instances": instances}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(
        reply.json()["predictions"], expected(built, kind, X, MASK)["logits"], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("kind", KINDS)
def test_v1_rows_for_a_two_input_model_are_a_400(servers, kind: str) -> None:
    reply = httpx.post(
        f"{servers[kind].url}/v1/models/masked:predict", json={"instances": X.tolist()}, timeout=30
    )
    assert reply.status_code == 400, reply.text
    assert reply.json() == {
        "error": (
            "model 'masked' takes 2 inputs (x, mask): send each instance as an object keyed by "
            'input name, {"instances": [{"x": [...], "mask": [...]}]}, or the tensors by name, '
            '{"inputs": {"x": [...], "mask": [...]}}'
        )
    }


def test_mismatched_batches_are_a_400_for_both_forms(servers) -> None:
    """x has 2 rows, mask 3. The program declares them one batch: refused before the call,
    naming both inputs and shapes. The eager module says so itself (torch's shape error)."""
    body = v2_body(X[:2], MASK)
    exported = httpx.post(f"{servers['export'].url}/v2/models/masked/infer", json=body, timeout=30)
    assert exported.status_code == 400, exported.text
    assert exported.json() == {
        "error": (
            "input 'x' has shape [2, 8] but input 'mask' has shape [3, 8]; the model takes the "
            "same "
            "size in dimension 0"
        )
    }
    eager = httpx.post(f"{servers['eager'].url}/v2/models/masked/infer", json=body, timeout=30)
    assert eager.status_code == 400, eager.text
    assert eager.json()["error"].startswith(
        "model rejected the input: The size of tensor a (2) must match the size of tensor b (3) "
        "at non-singleton dimension 0"
    ), eager.text


def test_a_batch_past_the_programs_range_is_a_400(servers, built) -> None:
    """Dim("batch", max=64): 65 rows are refused with the limit named; 64 are answered."""
    rows = MASKED_MAX_BATCH + 1
    x, mask = np.ones((rows, 8), np.float32), np.ones((rows, 8), np.int64)
    url = f"{servers['export'].url}/v2/models/masked/infer"
    reply = httpx.post(url, json=v2_body(x, mask), timeout=30)
    assert reply.status_code == 400, reply.text
    assert reply.json() == {
        "error": "input 'x' has shape [65, 8]; the model takes at most 64 in dimension 0"
    }
    good = httpx.post(url, json=v2_body(x[:-1], mask[:-1]), timeout=30)
    assert good.status_code == 200, good.text
    np.testing.assert_allclose(
        np.reshape(good.json()["outputs"][0]["data"], (rows - 1, 3)),
        expected(built, "export", x[:-1], mask[:-1])["logits"],
        rtol=1e-5,
        atol=1e-6,
    )


# ---- in-process: the same load and run code `kninfer serve` calls ------------------------------


def load(model_dir: Path, **settings: object):
    from kninfer.predictors.pytorch import PytorchPredictor

    predictor = PytorchPredictor("masked", model_dir, ServeSettings(**settings))
    predictor.load()
    return predictor


def test_a_tuple_program_keeps_positional_names(built) -> None:
    pair = save_masked_export(masked_module(built.tmp / "src", "MaskedPair"), built.tmp / "pair")
    predictor = load(pair)
    assert predictor.get_output_types() == [
        {"name": "output-0", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "output-1", "datatype": "FP32", "shape": [-1, 3]},
    ]
    got = predictor.run({"x": X, "mask": MASK}, ["output-0", "output-1"])
    logits, probs = program_outputs(pair, X, MASK)
    np.testing.assert_allclose(got["output-0"], logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["output-1"], probs, rtol=1e-5, atol=1e-6)


def test_a_nested_output_is_a_load_error(built) -> None:
    nested = save_masked_export(
        masked_module(built.tmp / "src", "MaskedNested"), built.tmp / "nested"
    )
    with pytest.raises(ModelLoadError) as error:
        load(nested)
    assert str(error.value) == (
        "the exported program returns dict {'scores': (0, 1)}; kninfer serves a tensor, a "
        "tuple/list of tensors or a dict of tensors (re-export the module returning one of them)"
    )


def test_the_batcher_is_capped_at_the_programs_range(built) -> None:
    """Requests that each fit must not be merged into a batch the program refuses."""
    predictor = load(built.export, max_batch_size=128, warmup=False)
    assert (predictor.batch_cap(), predictor.settings.max_batch_size) == (MASKED_MAX_BATCH, 128)
    assert load(built.export, max_batch_size=8, warmup=False).batch_cap() == 8


def test_a_guard_on_a_derived_dimension_is_a_400_and_the_programs_own_errors_are_not(built) -> None:
    """y has twice x's rows (a derived dimension: no plain symbol to check up front), so only
    torch's guard sees a mismatch; it is the request's fault. An AssertionError from the model's
    own code (swapped in here) is not turned into one."""
    import torch

    class Doubled(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x.sum(-1) + y[: x.shape[0]].sum(-1)

    batch = torch.export.Dim("batch")
    program = torch.export.export(
        Doubled(),
        (torch.zeros(2, 4), torch.zeros(4, 4)),
        dynamic_shapes={"x": {0: batch}, "y": {0: 2 * batch}},
    )
    doubled = built.tmp / "doubled"
    doubled.mkdir()
    torch.export.save(program, str(doubled / "model.pt2"))
    # The batch-1 zeros warm-up cannot satisfy y = 2 * batch: serve it without one.
    predictor = load(doubled, warmup=False)
    x, y = np.ones((2, 4), np.float32), np.ones((4, 4), np.float32)
    np.testing.assert_allclose(
        predictor.run({"x": x, "y": y}, ["output-0"])["output-0"],
        program_outputs(doubled, x, y),
        rtol=1e-6,
    )
    with pytest.raises(InvalidInput) as refused:
        predictor.run({"x": x, "y": y[:3]}, ["output-0"])
    # The guard's own wording is torch's (y.size()[0] == 2 * x.size()[0] in torch 2.13).
    message = str(refused.value)
    assert message.startswith(
        "model rejected the input: the exported program's input "
        "constraints refuse it (Guard failed: y.size()[0] "
    ), message
    assert message.endswith("); inputs x [2, 4], y [3, 4]"), message

    def broken(*args: object) -> object:
        raise AssertionError("Guard failed: a message the model wrote itself")

    predictor.module = broken
    with pytest.raises(AssertionError, match="a message the model wrote itself"):
        predictor.run({"x": x, "y": y}, ["output-0"])


def test_v1_records_are_checked_like_v2_tensors(built) -> None:
    """Each key's values are numbers of the input's shape; a wrong key is named."""
    predictor = load(built.export, warmup=False)
    row, mask = X[0].tolist(), MASK[0].tolist()
    cases = [
        ([{"x": row}], "instances[0] has no input 'mask'; each instance needs x, mask"),
        (
            [{"x": row, "mask": mask, "tokens": [1]}],
            "instances[0] has unknown input 'tokens'; the model takes x, mask",
        ),
        (
            [{"x": row, "mask": mask}, row],
            "instances[1] is not an object; the model takes named inputs (x, mask): send each "
            'instance as {"x": ..., ...}',
        ),
        (
            [{"x": row, "mask": [0.5] * 8}],
            "'instances': input 'mask' takes integers (INT64); found fractional numbers",
        ),
        ([{"x": [True] * 8, "mask": mask}], "'instances': input 'x' takes numbers (FP32)"),
        (
            [{"x": row[:7], "mask": mask}],
            "input 'x' has shape [1, 7]; expected [-1, 8] (-1 is any size)",
        ),
        (
            [{"x": row, "mask": mask}, {"x": row[:7], "mask": mask}],
            "'instances': the values of input 'x' are ragged; each must have shape [8]",
        ),
    ]
    for instances, message in cases:
        with pytest.raises(InvalidInput) as error:
            predictor.v1_arrays({"instances": instances})
        assert str(error.value) == message
    arrays = predictor.v1_arrays({"instances": [{"mask": mask, "x": row}]})
    assert (arrays["x"].dtype, arrays["mask"].dtype) == (np.float64, np.int64)
    np.testing.assert_array_equal(arrays["x"], X[:1].astype(np.float64))
