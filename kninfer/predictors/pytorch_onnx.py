"""The pytorch family's ONNX Runtime: a PyTorch model compiled by `kninfer compile`
(kninfer.compile.torch_export), served from its `model.onnx` without importing torch.

The pytorch family picks it (kninfer.predictors.pytorch_runtime, `--runtime`): `auto` when the
model directory holds a model.onnx and the model is to run on the CPU in float32 (`--device cpu`,
or `auto` on a machine with no NVIDIA device; `--dtype float32`), `onnx` always. It serves the
tensors the compile recorded in compile.json, which are the family's (the `.pt2`'s own, or those
declared in kninfer.yaml / --input-spec), through the request handling of
kninfer.predictors.pytorch, which this class extends: the same accepted datatypes, the same V1
forms (rows, or instances keyed by input name) and the same refusals, floating inputs computed
in float32. Only the platform in V2 metadata says which runtime answers
("kninfer-pytorch-onnx").

compile.json is checked as for every compiled graph (kninfer.predictors.compiled_graph): it must
describe this graph, and the model file it was compiled from (the .pt2, the TorchScript archive,
or the state_dict and the module file beside it) must be unchanged where it is still present.
A `.pt2`'s input constraints (inputs sharing a batch dimension, a `Dim("batch", max=N)`) are
not in the graph: compile.json carries them, and a request that breaks them is refused with the
program's own words.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from kninfer.errors import ModelLoadError
from kninfer.predictors.base import Arrays, Predictor, model_rejected
from kninfer.predictors.compiled_graph import read_compiled
from kninfer.predictors.onnx_runtime import (
    ORT_TYPES,
    container_cpus,
    inference_session,
    quiet_run_options,
    run_error_text,
    run_errors,
)
from kninfer.predictors.pytorch import PytorchPredictor, SameSize, input_spec
from kninfer.protocol.tensor import V2_TO_NUMPY, TensorSpec

logger = logging.getLogger("kninfer")

PLATFORM = "kninfer-pytorch-onnx"
NATIVE = "the PyTorch model"


def _spec(entry: Any, where: str) -> TensorSpec:
    try:
        return TensorSpec(str(entry["name"]), str(entry["datatype"]), tuple(entry["shape"]))
    except (KeyError, TypeError, ValueError):
        raise ModelLoadError(f"compile.json: {where} entry {entry!r} is not a tensor") from None


class OnnxPytorchPredictor(PytorchPredictor):
    """A PyTorch model compiled to model.onnx, through ONNX Runtime."""

    # A graph of tensor operators runs no user code: its time grows with the rows alone.
    inline_capable = True
    # The family batches by default for torch (a GPU, or a CPU module, gains from a batch); a
    # graph on the CPU answers a row in microseconds, and waiting to fill a batch cost more than
    # it saved (docs/compile.md#pytorch). --batching turns it on.
    batching_by_default = False
    kind = "onnx"
    session: Any = None
    _graph_dtypes: dict[str, Any]

    @property
    def platform(self) -> str:
        return PLATFORM

    def load_model(self) -> None:
        if self.settings.dtype != "float32":
            raise ModelLoadError(
                f"--runtime onnx computes in float32, not --dtype {self.settings.dtype}; serve "
                "the PyTorch model with --runtime native"
            )
        if self.settings.device not in ("auto", "cpu"):
            raise ModelLoadError(
                f"--runtime onnx runs on the CPU, not --device {self.settings.device}; serve the "
                "PyTorch model with --runtime native"
            )
        compiled = read_compiled(self.model_dir, self.settings.model_sha256, NATIVE)
        record = compiled.record
        threads = container_cpus()
        try:
            self.session = inference_session(compiled.graph, threads)
        except ModuleNotFoundError as exc:
            raise ModelLoadError(
                f"serving model.onnx needs ONNX Runtime ({exc}): pip install 'kninfer[onnx]'"
            ) from None
        except Exception as exc:  # onnxruntime's own error types: a graph it cannot load
            raise ModelLoadError(
                f"ONNX Runtime could not load model.onnx: {type(exc).__name__}: "
                f"{run_error_text(exc)}"
            ) from exc
        inputs = [_spec(e, "inputs") for e in record.get("inputs") or ()]
        self.outputs = [_spec(e, "outputs") for e in record.get("outputs") or ()]
        graph_inputs = {arg.name: arg.type for arg in self.session.get_inputs()}
        graph_outputs = [arg.name for arg in self.session.get_outputs()]
        if [s.name for s in inputs] != list(graph_inputs) or [
            s.name for s in self.outputs
        ] != graph_outputs:
            raise ModelLoadError(
                f"compile.json's inputs and outputs are not model.onnx's ({', '.join(graph_inputs)}"
                f" -> {', '.join(graph_outputs)}); run `kninfer compile {self.model_dir}` again"
            )
        self.inputs = [input_spec(s) for s in inputs]
        unserved = [
            f"{name} ({kind})" for name, kind in graph_inputs.items() if kind not in ORT_TYPES
        ]
        if unserved:
            raise ModelLoadError(
                f"model.onnx takes {', '.join(unserved)}; kninfer serves {', '.join(ORT_TYPES)}"
            )
        self._graph_dtypes = {
            name: V2_TO_NUMPY[ORT_TYPES[kind]] for name, kind in graph_inputs.items()
        }
        groups = compiled.section("pytorch").get("same_size") or ()
        self.same_size = tuple(SameSize.from_record(group) for group in groups)
        self._fit_batches_to_program()
        self.model_path = self.model_dir / "model.onnx"
        self._run_options = quiet_run_options()
        self._client_errors = run_errors()
        source = compiled.section("source")
        logger.info(
            "model '%s': serving model.onnx through ONNX Runtime (%d intra-op thread(s)), "
            "compiled from %s %s",
            self.name,
            threads,
            source.get("file", "?"),
            source.get("model", ""),
        )

    def load(self) -> bool:
        # The family's extra warm-up settles TorchScript and CUDA: neither is here.
        return Predictor.load(self)

    def run(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        feed = {
            name: np.ascontiguousarray(inputs[name], dtype=dtype)
            for name, dtype in self._graph_dtypes.items()
        }
        try:
            values = self.session.run(list(outputs), feed, self._run_options)
        except self._client_errors as exc:
            # A shape the graph cannot take (inputs of different batch sizes, a free dimension
            # the network needs fixed): the request's fault, as torch's shape errors are.
            raise model_rejected(self.name, ValueError(run_error_text(exc))) from None
        by_name = {spec.name: spec for spec in self.outputs}
        return {
            name: np.asarray(value).astype(V2_TO_NUMPY[by_name[name].datatype], copy=False)
            for name, value in zip(outputs, values, strict=True)
        }
