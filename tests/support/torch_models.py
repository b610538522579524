"""Small PyTorch models saved the three ways PytorchPredictor loads them (torch is imported lazily,
so collecting tests never pays for it)."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

# The eager class lives in a file beside the weights, as `--torch-module tiny_mlp:MLP` expects.
MLP_SOURCE = """
import torch


class MLP(torch.nn.Module):
    def __init__(self, features: int = 4, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
"""
MODULE = "tiny_mlp"
SPEC_YAML = "inputs:\n  - {name: input-0, datatype: FP32, shape: [-1, 4]}\n"


# Two inputs (features and an integer mask over them, sharing the batch dimension) and two named
# outputs: the shape of a text or tabular model with an attention mask. `MaskedPair` returns the
# same two tensors as a tuple, `MaskedNested` a structure kninfer does not serve.
MASKED_SOURCE = """
import torch


class Masked(torch.nn.Module):
    def __init__(self, features: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(features, classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.linear(x * mask.to(x.dtype))
        return {"logits": logits, "probs": torch.softmax(logits, dim=-1)}


class MaskedPair(Masked):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = super().forward(x, mask)
        return out["logits"], out["probs"]


class MaskedNested(Masked):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, object]:
        out = super().forward(x, mask)
        return {"scores": (out["logits"], out["probs"])}
"""
MASKED_MODULE = "tiny_masked"
MASKED_SPEC = (
    "[{name: x, datatype: FP32, shape: [-1, 8]}, {name: mask, datatype: INT64, shape: [-1, 8]}]"
)
# The batch range the masked program is exported for (its Dim's max).
MASKED_MAX_BATCH = 64


def _import_source(src_dir: Path, module_name: str, source: str) -> Any:
    src_dir.mkdir(parents=True, exist_ok=True)
    (src_dir / f"{module_name}.py").write_text(source)
    sys.path.insert(0, str(src_dir))
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path.remove(str(src_dir))


def mlp_module(src_dir: Path) -> Any:
    """A seeded MLP instance, its class imported from `src_dir/tiny_mlp.py`."""
    import torch

    module = _import_source(src_dir, MODULE, MLP_SOURCE)
    torch.manual_seed(7)
    return module.MLP().eval()


def masked_module(src_dir: Path, cls: str = "Masked") -> Any:
    """A seeded two-input module (`cls` of MASKED_SOURCE), imported from
    `src_dir/tiny_masked.py`."""
    import torch

    module = _import_source(src_dir, MASKED_MODULE, MASKED_SOURCE)
    torch.manual_seed(11)
    return getattr(module, cls)().eval()


def save_masked_export(model: Any, model_dir: Path) -> Path:
    """`model` exported with x and mask sharing one batch dimension of 1..MASKED_MAX_BATCH."""
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", max=MASKED_MAX_BATCH)
    program = torch.export.export(
        model,
        (torch.zeros(2, 8), torch.ones(2, 8, dtype=torch.int64)),
        dynamic_shapes={"x": {0: batch}, "mask": {0: batch}},
    )
    torch.export.save(program, str(model_dir / "model.pt2"))
    return model_dir


def onnx_export(model: Any, example: tuple[Any, ...], inputs: list[str], outputs: list[str]) -> Any:
    """`model` as an onnx.ModelProto, exported by torch.onnx.export's TorchScript-based exporter
    (`dynamo=False`: the dynamo exporter needs onnxscript, which is not installed), every input
    and output of one dynamic first dimension named "batch"."""
    import io

    import onnx
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch 2.13 deprecates the TorchScript-based exporter
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            example,
            buffer,
            dynamo=False,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in [*inputs, *outputs]},
            opset_version=17,
        )
    return onnx.load_from_string(buffer.getvalue())


def save_masked_mlflow_onnx(model: Any, model_dir: Path) -> Path:
    """The masked module exported to ONNX and saved by mlflow.onnx.save_model: what
    `--predictor mlflow` serves through ONNX Runtime."""
    import mlflow.onnx
    import torch

    graph = onnx_export(
        model,
        (torch.zeros(2, 8), torch.ones(2, 8, dtype=torch.int64)),
        ["x", "mask"],
        ["logits", "probs"],
    )
    mlflow.onnx.save_model(graph, str(model_dir))
    return model_dir


def save_masked_eager(model: Any, model_dir: Path) -> Path:
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / f"{MASKED_MODULE}.py").write_text(MASKED_SOURCE)
    torch.save(model.state_dict(), str(model_dir / "model.pth"))
    return model_dir


def program_outputs(model_dir: Path, *arrays: Any) -> Any:
    """What the saved .pt2 program itself answers (its own `module()`, loaded in this process)
    for numpy `arrays`, as numpy: a dict, a tuple or one array, as the program returns."""
    import torch

    program = torch.export.load(str(model_dir / "model.pt2")).module()
    return _numpy(_call(program, arrays))


def module_outputs(model: Any, *arrays: Any) -> Any:
    """What an eager module answers for numpy `arrays`, as numpy."""
    return _numpy(_call(model, arrays))


def _call(module: Any, arrays: tuple[Any, ...]) -> Any:
    import torch

    with torch.inference_mode():
        return module(*(torch.as_tensor(a) for a in arrays))


def _numpy(result: Any) -> Any:
    if isinstance(result, dict):
        return {key: value.numpy() for key, value in result.items()}
    if isinstance(result, (tuple, list)):
        return tuple(value.numpy() for value in result)
    return result.numpy()


def save_torchscript(model: Any, model_dir: Path, spec: str | None = SPEC_YAML) -> Path:
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; we still serve it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(model_dir / "model.pt"))
    if spec is not None:
        (model_dir / "kninfer.yaml").write_text(spec)
    return model_dir


def save_export(model: Any, model_dir: Path) -> Path:
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (torch.zeros(2, 4),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(model_dir / "model.pt2"))
    return model_dir


def save_eager(model: Any, model_dir: Path) -> Path:
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / f"{MODULE}.py").write_text(MLP_SOURCE)
    torch.save(model.state_dict(), str(model_dir / "model.pth"))
    return model_dir


def reference(model: Any, rows: Any) -> Any:
    """What the module itself answers for `rows` (numpy in, numpy out)."""
    import numpy as np
    import torch

    with torch.inference_mode():
        return model(torch.as_tensor(np.asarray(rows, dtype=np.float32))).numpy()
