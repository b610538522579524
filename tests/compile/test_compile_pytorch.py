"""`kninfer compile` for PyTorch models (kninfer.compile.torch_export) and the pytorch family
serving the graph through ONNX Runtime (kninfer.predictors.pytorch_onnx).

Models built here, saved the three ways the pytorch family loads them (tests/support/torch_models),
and compiled by a real `kninfer compile` process:

- `eager`: a two-input module (features and an integer mask) returning a dict of two outputs,
  its state_dict beside its source file, the inputs declared in kninfer.yaml;
- `program`: the same module as a `torch.export` program whose inputs share a batch dimension
  of at most 64;
- `torchscript`: a one-input MLP scripted with torch.jit (the TorchScript-based exporter).

Each is served by real `kninfer serve --predictor pytorch` processes, as it is (`--runtime auto`
finds model.onnx) and with `--runtime native` (torch). The answers over V2, V1 and gRPC are
compared with the module's own in this process, and the metadata with the native server's. The
bad-input table of the program runs against the compiled program in
tests/reliability/test_reliability_inputs.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.compiled_models import kninfer_compile
from tests.support.processes import fresh_python
from tests.support.servers import ServerProcess, both_runtimes, grpc_stub, servers_started

pytest.importorskip("torch", reason="the pytorch extra is not installed")
pytest.importorskip("onnxscript", reason="the compile extra is not installed")

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
MASKED_YAML = (
    "module: tiny_masked:Masked\n"
    "inputs:\n"
    "  - {name: x, datatype: FP32, shape: [-1, 8]}\n"
    "  - {name: mask, datatype: INT64, shape: [-1, 8]}\n"
)


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tests.support.torch_models import masked_module, mlp_module

    src = tmp_path_factory.mktemp("torch-src")
    return {"masked": masked_module(src / "masked"), "mlp": mlp_module(src / "mlp")}


@pytest.fixture(scope="module")
def model_dirs(
    tmp_path_factory: pytest.TempPathFactory, modules: dict[str, Any]
) -> dict[str, Path]:
    from tests.support.torch_models import save_masked_eager, save_masked_export, save_torchscript

    root = tmp_path_factory.mktemp("torch-compiled")
    dirs = {
        "eager": save_masked_eager(modules["masked"], root / "eager"),
        "program": save_masked_export(modules["masked"], root / "program"),
        "torchscript": save_torchscript(modules["mlp"], root / "torchscript"),
    }
    (dirs["eager"] / "kninfer.yaml").write_text(MASKED_YAML)
    for path in dirs.values():
        done = kninfer_compile(path)
        assert done.returncode == 0, done.stderr
        assert "verified 1000 rows (1000 generated)" in done.stdout
    return dirs


@pytest.fixture(scope="module")
def servers(
    model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProcess]]:
    commands = both_runtimes("pytorch", model_dirs)
    with servers_started(commands, tmp_path_factory.mktemp("torch-compiled-servers")) as started:
        yield started


def record(model_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((model_dir / "compile.json").read_text())
    return doc


def rows(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((count, 8)).astype(np.float32),
        rng.integers(0, 2, (count, 8)).astype(np.int64),
    )


def test_the_record_says_what_was_compiled_and_how(model_dirs: dict[str, Path]) -> None:
    from kninfer.storage import sha256_of

    expected = {
        "eager": ("model.pth", "pytorch-state-dict", "torch.onnx.export(dynamo=True)"),
        "program": ("model.pt2", "pytorch-export", "torch.onnx.export(dynamo=True)"),
        "torchscript": ("model.pt", "torchscript", "torch.onnx.export(dynamo=False)"),
    }
    for name, (file, form, exporter) in expected.items():
        doc = record(model_dirs[name])
        assert doc["source"]["file"] == file
        assert doc["source"]["sha256"] == sha256_of(model_dirs[name] / file)
        assert doc["source"]["format"] == form
        assert doc["onnx"]["exporter"] == exporter
        assert set(doc["versions"]) >= {"torch", "onnxscript", "onnx", "onnxruntime"}
        verification = doc["verification"]
        assert verification["passed"] and verification["rows"] == 1000
        assert all(o["tolerance_used"] <= 1 for o in verification["outputs"].values())
    eager = record(model_dirs["eager"])["source"]
    assert eager["module"] == "tiny_masked:Masked"
    assert eager["module_file"] == "tiny_masked.py"
    assert record(model_dirs["program"])["pytorch"]["same_size"] == [
        {"dims": [[0, 0], [1, 0]], "low": None, "high": 64}
    ]


def test_the_graph_states_the_family_contract(servers: dict[str, ServerProcess]) -> None:
    for name in ("eager", "program", "torchscript"):
        compiled = httpx.get(f"{servers[name].url}/v2/models/{name}", timeout=30).json()
        native = httpx.get(f"{servers[name + '-native'].url}/v2/models/{name}", timeout=30).json()
        assert compiled["platform"] == "kninfer-pytorch-onnx"
        assert native["platform"] == "kninfer-pytorch"
        for key in ("inputs", "outputs", "versions"):
            assert compiled[key] == native[key], (name, key)


def test_answers_are_the_modules_over_v2_v1_and_grpc(
    servers: dict[str, ServerProcess], modules: dict[str, Any]
) -> None:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    from tests.support.torch_models import module_outputs

    x, mask = rows(20, seed=5)
    want = module_outputs(modules["masked"], x, mask)
    body = {
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [20, 8], "data": x.ravel().tolist()},
            {"name": "mask", "datatype": "INT64", "shape": [20, 8], "data": mask.ravel().tolist()},
        ]
    }
    for served in ("eager", "program", "program-native"):
        server, name = servers[served], served.removesuffix("-native")
        reply = httpx.post(f"{server.url}/v2/models/{name}/infer", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        got = {o["name"]: np.reshape(o["data"], o["shape"]) for o in reply.json()["outputs"]}
        assert set(got) == {"logits", "probs"}
        for key in got:
            np.testing.assert_allclose(got[key], want[key], **TOLERANCE)
        instances = [{"x": a.tolist(), "mask": m.tolist()} for a, m in zip(x, mask, strict=True)]
        v1 = httpx.post(
            f"{server.url}/v1/models/{name}:predict", json={"instances": instances}, timeout=30
        )
        assert v1.status_code == 200, v1.text
        np.testing.assert_allclose(v1.json()["predictions"], want["logits"], **TOLERANCE)
        # TensorFlow Serving's columnar form, which KServe's V1 takes: each input's whole batch.
        columnar = {"inputs": {"x": x.tolist(), "mask": mask.tolist()}}
        v1 = httpx.post(f"{server.url}/v1/models/{name}:predict", json=columnar, timeout=30)
        assert v1.status_code == 200, v1.text
        np.testing.assert_allclose(v1.json()["predictions"], want["logits"], **TOLERANCE)
    mlp_rows = x[:, :4].copy()
    request = pb.ModelInferRequest(model_name="torchscript")
    tensor = request.inputs.add(name="input-0", datatype="FP32", shape=[20, 4])
    tensor.contents.fp32_contents.extend(mlp_rows.ravel().tolist())
    with grpc_stub(servers["torchscript"].grpc_target) as stub:
        answer = stub.ModelInfer(request, timeout=30)
    got = np.frombuffer(answer.raw_output_contents[0], dtype=np.float32).reshape(20, 3)
    np.testing.assert_allclose(got, module_outputs(modules["mlp"], mlp_rows), **TOLERANCE)


NO_TORCH = """
import sys
from pathlib import Path
from kninfer.predictors import predictor_class
from kninfer.settings import ServeSettings

settings = ServeSettings(model_dir=Path(sys.argv[1]), predictor="pytorch", device="cpu")
cls = predictor_class("pytorch", settings.model_dir, settings)
predictor = cls("m", settings.model_dir, settings)
predictor.load()
print(cls.__name__, predictor.inline_max_rows > 0, [g.high for g in predictor.same_size])
print(sorted(m for m in ("torch", "onnx", "onnxscript", "sklearn") if m in sys.modules))
"""


def test_the_graph_serves_without_torch(model_dirs: dict[str, Path]) -> None:
    done = fresh_python(NO_TORCH, str(model_dirs["program"]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["OnnxPytorchPredictor True [64]", "[]"]


def test_runtime_choice(model_dirs: dict[str, Path]) -> None:
    """`auto` takes the graph only where the model would run as the graph runs: on the CPU, in
    float32; `onnx` refuses anything else, saying so."""
    from kninfer.errors import ModelLoadError
    from kninfer.predictors import predictor_class
    from kninfer.settings import ServeSettings

    model_dir = model_dirs["program"]

    def chosen(**given: Any) -> str:
        settings = ServeSettings(model_dir=model_dir, predictor="pytorch", **given)
        return predictor_class("pytorch", model_dir, settings).__name__

    assert chosen(device="cpu") == "OnnxPytorchPredictor"
    assert chosen(device="cuda") == "PytorchPredictor"
    assert chosen(device="cpu", dtype="bfloat16") == "PytorchPredictor"
    assert chosen(device="cpu", runtime="native") == "PytorchPredictor"
    forced = ServeSettings(
        model_dir=model_dir, predictor="pytorch", runtime="onnx", dtype="float16"
    )
    cls = predictor_class("pytorch", model_dir, forced)
    with pytest.raises(ModelLoadError, match="computes in float32, not --dtype float16"):
        cls("m", model_dir, forced).load()


def test_changed_module_code_stops_the_start(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    """The eager module's source beside its weights is pinned with them: editing it after the
    compile refuses the old graph."""
    from kninfer.errors import ModelLoadError
    from kninfer.predictors import predictor_class
    from kninfer.settings import ServeSettings

    model_dir = tmp_path / "eager"
    shutil.copytree(model_dirs["eager"], model_dir)
    source = model_dir / "tiny_masked.py"
    source.write_text(source.read_text().replace("softmax", "log_softmax"))
    settings = ServeSettings(model_dir=model_dir, predictor="pytorch", device="cpu")
    cls = predictor_class("pytorch", model_dir, settings)
    with pytest.raises(ModelLoadError, match="compiled from tiny_masked.py with sha256"):
        cls("m", model_dir, settings).load()


BRANCHING = """
import torch


class Branching(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum().item() > 0:  # a branch on the data: torch.export cannot trace it
            return x * 2
        return x
"""


def test_a_module_that_does_not_export_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    import torch

    model_dir = tmp_path / "branching"
    model_dir.mkdir()
    (model_dir / "branching.py").write_text(BRANCHING)
    torch.save({}, str(model_dir / "model.pth"))
    (model_dir / "kninfer.yaml").write_text(
        "module: branching:Branching\ninputs:\n  - {name: x, datatype: FP32, shape: [-1, 3]}\n"
    )
    done = kninfer_compile(model_dir)
    assert done.returncode == 1, done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(
        "kninfer compile: torch.onnx.export could not export the eager model Branching ("
    )
    assert line.endswith("model.onnx not written; the model keeps being served by PyTorch")
    assert not (model_dir / "model.onnx").exists() and not (model_dir / "compile.json").exists()


def test_sample_rows_and_a_free_dimension(tmp_path: Path, modules: dict[str, Any]) -> None:
    """A free dimension past the first cannot be generated: the compile asks for a sample, and
    takes one as .npz."""
    from tests.support.torch_models import save_masked_eager

    model_dir = save_masked_eager(modules["masked"], tmp_path / "free")
    outputs = (
        "outputs:\n"
        "  - {name: logits, datatype: FP32, shape: [-1, 3]}\n"
        "  - {name: probs, datatype: FP32, shape: [-1, 3]}\n"
    )
    (model_dir / "kninfer.yaml").write_text(MASKED_YAML.replace("[-1, 8]", "[-1, -1]") + outputs)
    done = kninfer_compile(model_dir)
    assert done.returncode == 2
    assert "cannot make up verification rows for x, mask: a dimension past the first" in (
        done.stderr
    )
    x, mask = rows(50, seed=9)
    np.savez(tmp_path / "rows.npz", x=x, mask=mask)
    done = kninfer_compile(model_dir, "--sample", str(tmp_path / "rows.npz"))
    assert done.returncode == 0, done.stderr
    assert "verified 50 rows (50 sample)" in done.stdout


def test_input_spec_declares_a_torchscript_models_inputs(
    tmp_path: Path, modules: dict[str, Any]
) -> None:
    """A TorchScript archive does not state its inputs: `--input-spec`, as `kninfer serve`
    takes it, declares them for the compile."""
    from tests.support.torch_models import save_torchscript

    model_dir = save_torchscript(modules["mlp"], tmp_path / "ts", spec=None)
    done = kninfer_compile(model_dir)
    assert done.returncode == 1
    assert "does not state its inputs" in done.stderr
    spec = "[{name: input-0, datatype: FP32, shape: [-1, 4]}]"
    done = kninfer_compile(model_dir, "--input-spec", spec)
    assert done.returncode == 0, done.stderr
    assert record(model_dir)["inputs"] == [
        {"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}
    ]
