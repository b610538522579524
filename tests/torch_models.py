"""Small PyTorch models saved the three ways PytorchPredictor loads them (torch is imported lazily,
so collecting tests never pays for it)."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

# The eager class lives in a file beside the weights, as `--torch-module tiny_mlp:MLP` expects.
MLP_SOURCE = '''
import torch


class MLP(torch.nn.Module):
    def __init__(self, features: int = 4, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
'''
MODULE = "tiny_mlp"
SPEC_YAML = "inputs:\n  - {name: input-0, datatype: FP32, shape: [-1, 4]}\n"


def mlp_module(src_dir: Path) -> Any:
    """A seeded MLP instance, its class imported from `src_dir/tiny_mlp.py`."""
    import torch

    src_dir.mkdir(parents=True, exist_ok=True)
    (src_dir / f"{MODULE}.py").write_text(MLP_SOURCE)
    sys.path.insert(0, str(src_dir))
    try:
        module = importlib.import_module(MODULE)
    finally:
        sys.path.remove(str(src_dir))
    torch.manual_seed(7)
    return module.MLP().eval()


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
