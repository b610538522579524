"""`kninfer serve --predictor pytorch`: TorchScript, torch.export and eager models served over V2
REST, gRPC and V1, compared with calling the module directly; load failures; CUDA variant."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from kninfer.errors import ModelLoadError
from kninfer.settings import ServeSettings
from tests.support.servers import ServerProcess, grpc_stub, served_version, server_env
from tests.support.torch_models import (
    MODULE,
    mlp_module,
    reference,
    save_eager,
    save_export,
    save_torchscript,
)

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [-1.0, 0.0, 2.5, 10.0]]
EAGER_SPEC = "[{name: x, datatype: FP32, shape: [-1, 4]}]"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("torch-models")
    model = mlp_module(tmp / "src")
    return SimpleNamespace(
        tmp=tmp,
        model=model,
        torchscript=save_torchscript(model, tmp / "torchscript"),
        export=save_export(model, tmp / "export"),
        eager=save_eager(model, tmp / "eager"),
    )


@pytest.fixture(scope="module")
def servers(built: SimpleNamespace):
    """Three servers started together (their start-ups overlap): TorchScript with batching (the
    PyTorch default), torch.export without batching, eager from --torch-module/--input-spec."""
    configs = {
        "torchscript": ["--model-dir", str(built.torchscript), "--max-latency-ms", "50"],
        "export": ["--model-dir", str(built.export), "--no-batching"],
        "eager": [
            "--model-dir",
            str(built.eager),
            "--torch-module",
            f"{MODULE}:MLP",
            "--input-spec",
            EAGER_SPEC,
        ],
    }
    started = {}
    for kind, args in configs.items():
        tmp = built.tmp / f"server-{kind}"
        tmp.mkdir()
        started[kind] = ServerProcess(
            ["--predictor", "pytorch", "--model-name", "mlp", *args],
            server_env(tmp),
            tmp / "server.log",
        ).start(wait=False)
    try:
        for server in started.values():
            server.wait_ready(timeout=180)
        yield started
    finally:
        for server in started.values():
            server.stop()


def v2_body(rows: list[list[float]], name: str, datatype: str = "FP64") -> dict[str, object]:
    return {
        "id": "t-1",
        "inputs": [
            {"name": name, "shape": [len(rows), len(rows[0])], "datatype": datatype, "data": rows}
        ],
    }


INPUT_NAMES = {"torchscript": "input-0", "export": "x", "eager": "x"}


@pytest.mark.parametrize("kind", ["torchscript", "export", "eager"])
def test_metadata_states_inputs_and_outputs(servers, kind: str) -> None:
    reply = httpx.get(f"{servers[kind].url}/v2/models/mlp", timeout=10)
    assert reply.status_code == 200
    assert reply.json() == {
        "name": "mlp",
        "versions": [served_version(servers[kind])],
        "platform": "kninfer-pytorch",
        "inputs": [{"name": INPUT_NAMES[kind], "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "output-0", "datatype": "FP32", "shape": [-1, 3]}],
    }


@pytest.mark.parametrize("kind", ["torchscript", "export", "eager"])
@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_v2_infer_matches_the_module(servers, built, kind: str, datatype: str) -> None:
    reply = httpx.post(
        f"{servers[kind].url}/v2/models/mlp/infer",
        json=v2_body(ROWS, INPUT_NAMES[kind], datatype),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    assert doc["id"] == "t-1"
    (output,) = doc["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output-0", "FP32", [3, 3])
    np.testing.assert_allclose(
        np.reshape(output["data"], (3, 3)), reference(built.model, ROWS), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("kind", ["torchscript", "export"])
def test_v1_predict_matches_the_module(servers, built, kind: str) -> None:
    reply = httpx.post(
        f"{servers[kind].url}/v1/models/mlp:predict", json={"instances": ROWS}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(
        reply.json()["predictions"], reference(built.model, ROWS), rtol=1e-5, atol=1e-6
    )


def test_grpc_infer_matches_the_module(servers, built) -> None:
    with grpc_stub(servers["torchscript"].grpc_target) as stub:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="input-0", datatype="FP32", shape=[3, 4]
        )
        tensor.contents.fp32_contents.extend(v for row in ROWS for v in row)
        reply = stub.ModelInfer(
            pb.ModelInferRequest(model_name="mlp", id="g", inputs=[tensor]), timeout=30
        )
        (output,) = reply.outputs
        assert (output.name, output.datatype, list(output.shape)) == ("output-0", "FP32", [3, 3])
        got = np.frombuffer(reply.raw_output_contents[0], dtype=np.float32).reshape(3, 3)
        np.testing.assert_allclose(got, reference(built.model, ROWS), rtol=1e-5, atol=1e-6)

        bad = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP32", shape=[1, 2])
        bad.contents.fp32_contents.extend([1.0, 2.0])
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(pb.ModelInferRequest(model_name="mlp", inputs=[bad]), timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details() == (
            "input 'input-0' has shape [1, 2]; expected [-1, 4] (-1 is any size)"
        )


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/v2/models/mlp/infer",
            v2_body([[1.0, 2.0, 3.0]], "input-0"),
            "input 'input-0' has shape [1, 3]; expected [-1, 4] (-1 is any size)",
        ),
        (
            "/v2/models/mlp/infer",
            v2_body([[1, 2, 3, 4]], "input-0", "INT64"),
            "input 'input-0' has datatype INT64; expected one of FP32, FP64, FP16",
        ),
        (
            "/v2/models/mlp/infer",
            {**v2_body(ROWS, "input-0"), "outputs": [{"name": "logits"}]},
            "unknown output(s) logits; model 'mlp' has output-0",
        ),
        (
            "/v1/models/mlp:predict",
            {"instances": [[1.0, 2.0]]},
            "input 'input-0' has shape [1, 2]; expected [-1, 4] (-1 is any size)",
        ),
        (
            "/v2/models/mlp/infer",
            v2_body([[1e300, 2.0, 3.0, 4.0]], "input-0", "FP64"),
            "input 'input-0': a value is out of range for the model, which computes in float32",
        ),
        (
            "/v1/models/mlp:predict",
            {"instances": [[1e39, 2.0, 3.0, 4.0]]},
            "input 'input-0': a value is out of range for FP32",
        ),
        (
            "/v2/models/mlp/infer",
            {"inputs": [{"name": "input-0", "shape": [0, 4], "datatype": "FP32", "data": []}]},
            "input 'input-0' has no rows; an empty batch is refused: send at least one row",
        ),
    ],
)
def test_client_mistakes_are_400(servers, path: str, body: object, message: str) -> None:
    reply = httpx.post(f"{servers['torchscript'].url}{path}", json=body, timeout=30)
    assert reply.status_code == 400
    assert reply.json() == {"error": message}


def test_concurrent_requests_are_batched_and_each_gets_its_rows(servers, built) -> None:
    """32 distinct batch-1 requests at once: every caller gets exactly its own row back."""
    url = servers["torchscript"].url
    rng = np.random.default_rng(11)
    samples = rng.normal(size=(32, 4)).round(3)

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post("/v2/models/mlp/infer", json=v2_body([row.tolist()], "input-0"))
                    for row in samples
                )
            )

    def batches() -> tuple[float, float]:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        found = {
            line.split("{")[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("kninfer_batch_size_") and 'model="mlp"' in line
        }
        return found["kninfer_batch_size_count"], found["kninfer_batch_size_sum"]

    count0, rows0 = batches()
    replies = asyncio.run(fire())
    expected = reference(built.model, samples)
    for reply, want in zip(replies, expected, strict=True):
        assert reply.status_code == 200, reply.text
        np.testing.assert_allclose(reply.json()["outputs"][0]["data"], want, rtol=1e-5, atol=1e-6)
    count1, rows1 = batches()
    assert rows1 - rows0 == 32
    assert count1 - count0 < 32


# ---- loading, in-process (a load error is the same code path `kninfer serve` takes) ----------


def load(model_dir: Path, **settings: object):
    from kninfer.predictors.pytorch import PytorchPredictor

    predictor = PytorchPredictor("mlp", model_dir, ServeSettings(**settings))
    predictor.load()
    return predictor


def test_torchscript_without_a_spec_is_refused(built) -> None:
    bare = save_torchscript(built.model, built.tmp / "bare", spec=None)
    with pytest.raises(ModelLoadError) as error:
        load(bare)
    assert str(error.value).startswith(
        "a torchscript model does not state its inputs; declare them with --input-spec"
    )


def test_state_dict_without_module_is_not_torchscript(built) -> None:
    import torch

    weights = built.tmp / "weights-only"
    weights.mkdir()
    torch.save(built.model.state_dict(), str(weights / "model.pt"))
    with pytest.raises(ModelLoadError) as error:
        load(weights, input_spec=EAGER_SPEC)
    assert str(error.value) == (
        "model.pt is not a TorchScript archive (torch.jit.save); if it is "
        "a state_dict, serve it with --torch-module module:Class"
    )


def test_pickled_objects_are_refused_weights_only(built) -> None:
    """weights_only=True: a file that needs the full unpickler is never executed."""
    import torch

    unsafe = built.tmp / "unsafe"
    save_eager(built.model, unsafe)
    torch.save(
        {"state_dict": built.model.state_dict(), "extra": SimpleNamespace(a=1)},
        str(unsafe / "model.pth"),
    )
    with pytest.raises(ModelLoadError) as error:
        load(unsafe, torch_module=f"{MODULE}:MLP", input_spec=EAGER_SPEC)
    assert str(error.value).startswith("model.pth is not a weights-only state_dict (")


def test_checkpoint_wrapping_a_state_dict_loads(built) -> None:
    import torch

    wrapped = built.tmp / "wrapped"
    save_eager(built.model, wrapped)
    torch.save({"state_dict": built.model.state_dict()}, str(wrapped / "model.pth"))
    predictor = load(wrapped, torch_module=f"{MODULE}:MLP", input_spec=EAGER_SPEC)
    out = predictor.run({"x": np.asarray(ROWS, dtype=np.float32)}, ["output-0"])
    np.testing.assert_allclose(out["output-0"], reference(built.model, ROWS), rtol=1e-5)
    assert predictor.warmup_ms > 0


def test_missing_cuda_is_a_load_error(built) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error path needs a machine without it")
    with pytest.raises(ModelLoadError) as error:
        load(built.export, device="cuda")
    assert str(error.value).startswith("--device cuda but torch.cuda.is_available() is False")


def test_bfloat16_compute_answers_fp32(built) -> None:
    """--dtype is a configuration of the same predictor; outputs keep their FP32 metadata."""
    predictor = load(built.export, dtype="bfloat16", device="cpu")
    assert predictor.get_output_types() == [
        {"name": "output-0", "datatype": "FP32", "shape": [-1, 3]}
    ]
    out = predictor.run({"x": np.asarray(ROWS, dtype=np.float64)}, ["output-0"])["output-0"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference(built.model, ROWS), rtol=5e-2, atol=5e-2)


def test_serve_exits_1_with_the_reason(built, start_server) -> None:
    bare = built.tmp / "bare-serve"
    save_torchscript(built.model, bare, spec=None)
    server = start_server("--predictor", "pytorch", "--model-dir", str(bare), wait=False)
    assert server.process.wait(180) == 1
    assert "model failed to load: a torchscript model does not state its inputs" in server.log()


# ---- the GPU variant: same predictor, configured ----------------------------------------------


cuda = pytest.mark.skipif(
    "not __import__('torch').cuda.is_available()",
    reason="needs a CUDA GPU: torch.cuda.is_available() is False here",
)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cuda_variant_matches_cpu(built, start_server, dtype: str) -> None:
    server = start_server(
        "--predictor",
        "pytorch",
        "--model-dir",
        str(built.export),
        "--model-name",
        "mlp",
        "--device",
        "cuda",
        "--dtype",
        dtype,
        "--max-batch-size",
        "128",
        timeout=180,
    )
    assert f"pytorch export model on cuda:0 ({dtype})" in server.log()
    reply = httpx.post(f"{server.url}/v2/models/mlp/infer", json=v2_body(ROWS, "x"), timeout=30)
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    assert output["datatype"] == "FP32"
    tolerance = 1e-5 if dtype == "float32" else 5e-2
    np.testing.assert_allclose(
        np.reshape(output["data"], (3, 3)),
        reference(built.model, ROWS),
        rtol=tolerance,
        atol=tolerance,
    )


@pytest.mark.cuda
@cuda
def test_auto_device_picks_cuda(built) -> None:
    predictor = load(built.export, device="auto")
    assert str(predictor.device) == "cuda:0"


def test_concurrent_cloudevents_through_the_batcher_keep_their_identity(servers, built) -> None:
    """Binary-mode events on POST / share model calls yet each reply carries its own rows and
    points back at its own request event (causationid/correlationid)."""
    url = servers["torchscript"].url
    rng = np.random.default_rng(5)
    samples = rng.normal(size=(16, 4)).round(3)

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/",
                        json=v2_body([row.tolist()], "input-0"),
                        headers={
                            "ce-specversion": "1.0",
                            "ce-id": f"evt-{i}",
                            "ce-source": "tests/pytorch",
                            "ce-type": "dev.kninfer.inference.request",
                            "ce-kninfermodel": "mlp",
                            "ce-correlationid": f"order-{i}",
                        },
                    )
                    for i, row in enumerate(samples)
                )
            )

    replies = asyncio.run(fire())
    expected = reference(built.model, samples)
    for i, (reply, want) in enumerate(zip(replies, expected, strict=True)):
        assert reply.status_code == 200, reply.text
        assert reply.headers["ce-type"] == "dev.kninfer.inference.response"
        assert reply.headers["ce-causationid"] == f"evt-{i}"
        assert reply.headers["ce-correlationid"] == f"order-{i}"
        np.testing.assert_allclose(reply.json()["outputs"][0]["data"], want, rtol=1e-5, atol=1e-6)


def test_a_shape_error_from_the_module_is_a_400(built, start_server) -> None:
    """A free inner dimension lets a request reach the module that it cannot take."""
    spec = (
        "{inputs: [{name: x, datatype: FP32, shape: [-1, -1]}], "
        "outputs: [{name: output-0, datatype: FP32, shape: [-1, 3]}]}"
    )
    server = start_server(
        "--predictor",
        "pytorch",
        "--model-name",
        "mlp",
        "--model-dir",
        str(built.eager),
        "--torch-module",
        f"{MODULE}:MLP",
        "--input-spec",
        spec,
        timeout=120,
    )
    reply = httpx.post(
        f"{server.url}/v2/models/mlp/infer", json=v2_body([[1.0, 2.0, 3.0]], "x"), timeout=30
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"].startswith(
        "model rejected the input: mat1 and mat2 shapes cannot be multiplied (1x3 and 4x"
    ), reply.text
    good = httpx.post(f"{server.url}/v2/models/mlp/infer", json=v2_body(ROWS, "x"), timeout=30)
    assert good.status_code == 200, good.text
    np.testing.assert_allclose(
        np.asarray(good.json()["outputs"][0]["data"]).reshape(3, 3),
        reference(built.model, ROWS),
        rtol=1e-5,
        atol=1e-6,
    )


def test_safetensors_weights_load_mmapped_without_random_init(built) -> None:
    """model.safetensors (what model hubs ship) is preferred over a pickle state_dict; the
    module is built without its random init, so every parameter is the file's."""
    import torch
    from safetensors.torch import save_file

    from kninfer.predictors.pytorch import _skip_init

    hub = built.tmp / "safetensors"
    save_eager(built.model, hub)
    (hub / "model.pth").unlink()
    save_file(
        {k: v.contiguous() for k, v in built.model.state_dict().items()},
        str(hub / "model.safetensors"),
    )
    predictor = load(hub, torch_module=f"{MODULE}:MLP", input_spec=EAGER_SPEC)
    out = predictor.run({"x": np.asarray(ROWS, dtype=np.float32)}, ["output-0"])
    np.testing.assert_allclose(out["output-0"], reference(built.model, ROWS), rtol=1e-5)
    for name, tensor in predictor.module.state_dict().items():
        assert torch.equal(tensor, built.model.state_dict()[name]), name
    # The no-init window restores torch.nn.init when it closes.
    before = torch.nn.init.kaiming_uniform_
    with _skip_init(torch):
        assert torch.nn.init.kaiming_uniform_ is not before
    assert torch.nn.init.kaiming_uniform_ is before


def test_float64_checkpoint_is_cast_to_the_module_dtype(built) -> None:
    import torch

    wide = built.tmp / "float64"
    save_eager(built.model, wide)
    torch.save(
        {k: v.double() for k, v in built.model.state_dict().items()}, str(wide / "model.pth")
    )
    predictor = load(wide, torch_module=f"{MODULE}:MLP", input_spec=EAGER_SPEC)
    assert {t.dtype for t in predictor.module.state_dict().values()} == {torch.float32}
    out = predictor.run({"x": np.asarray(ROWS, dtype=np.float32)}, ["output-0"])
    np.testing.assert_allclose(out["output-0"], reference(built.model, ROWS), rtol=1e-5)


def test_state_dict_that_does_not_fit_the_class_is_a_load_error(built) -> None:
    import torch

    other = built.tmp / "other-shape"
    save_eager(built.model, other)
    torch.save({"fc.weight": torch.zeros(2, 2)}, str(other / "model.pth"))
    with pytest.raises(ModelLoadError, match=f"model.pth does not fit {MODULE}:MLP: Error"):
        load(other, torch_module=f"{MODULE}:MLP", input_spec=EAGER_SPEC)
