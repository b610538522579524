"""PyTorch predictor: a `torch.export` program, a TorchScript module, or an eager `nn.Module`,
on CPU or CUDA. The GPU variant is this same class configured with `--device cuda --dtype
float16|bfloat16` (and a larger `--max-batch-size`); nothing else forks.

Model directory, first match wins:
  module given (--torch-module or `module:` in kninfer.yaml)  eager: Class(**module_kwargs) plus
      weights in model.safetensors (or exactly one *.safetensors), else a state_dict in
      state_dict.pt, state_dict.pth, model.pth, model.pt, or exactly one *.pt/*.pth
  model.pt2, or exactly one *.pt2                             torch.export program
  model.pt, or exactly one *.pt / *.ts                        TorchScript
  kninfer.yaml (optional)                                     declared inputs/outputs (spec.py)

Trust model. `torch.load` defaults to full pickle, which runs arbitrary code while loading; the
state_dict is loaded with `weights_only=True` (PyTorch's restricted unpickler: tensors, primitive
containers, no code), so a tampered weights file cannot execute anything. The eager class itself is
Python you install and import, a separate trust decision. TorchScript (`torch.jit.load`) and
`torch.export.load` read their own serialized graph formats and never unpickle arbitrary objects.

Metadata. A `.pt2` states its inputs and outputs: names, dtypes and shapes come from the
program's placeholders (a dynamic dimension is -1), output names from the structure it returns
(`call_spec.out_spec`, the pytree its `module()` rebuilds: the keys of a dict, else `output-0`,
...). TorchScript and eager models need declared inputs (`--input-spec` or kninfer.yaml); when
outputs are not declared they are found by a probe run on zeros (names `output-0`, ... or the keys
of a returned dict, batch dimension -1). Floating outputs are returned as FP32 whatever the compute
dtype (numpy, and so the V2 wire, has no bfloat16), so clients see the same metadata from the CPU
and the GPU variant.

Input constraints. A `.pt2` was exported with some dimensions declared one size (one symbol: x and
mask share their batch dimension) and within a range (`Dim("batch", max=64)`); its `module()`
asserts them before it runs. A request that breaks them is the client's mistake: it is refused
before the call with the inputs and their shapes named (a 400), and torch's own guard failure, for
a constraint checked only there (a derived dimension), is a 400 too. Only errors raised by those
input checks are; anything else the program raises stays a server error.

V1. `instances` are rows of the single input, or objects keyed by input name (KServe V1's named
tensors), which feed a model of several inputs: each key's values, stacked, are that input's batch.

Execution. `run()` holds `torch.inference_mode()`, casts floating inputs to `--dtype`, and on CUDA
copies them from pinned host memory with `non_blocking=True` (the copy overlaps the launch queue
instead of a pageable synchronous copy). Warm-up runs one batch-1 prediction before the server
reports ready; TorchScript models and CUDA devices then run batch sizes 1 and N twice each (N is
`--max-batch-size` on CUDA, 2 for TorchScript on the CPU), so TorchScript's profiling executor,
cuBLAS handles and the CUDA caching allocator are settled before the first request (an eager or
exported module on the CPU settles nothing more).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kninfer.errors import InvalidInput, ModelLoadError
from kninfer.predictors.base import Arrays, Predictor, model_rejected
from kninfer.predictors.spec import DeclaredSpec, declared_spec
from kninfer.protocol.tensor import V2_TO_NUMPY, TensorSpec, shape_matches
from kninfer.protocol.v1 import tensors_by_input, v1_rows
from kninfer.protocol.v2 import has_bool
from kninfer.references import import_class
from kninfer.storage import model_file

logger = logging.getLogger("kninfer")

STATE_DICT_FILES = ("state_dict.pt", "state_dict.pth", "model.pth", "model.pt")
# The format model hubs ship (Hugging Face): tensors only, memory-mapped, no pickle at all.
SAFETENSORS_FILES = ("model.safetensors",)
FLOAT_DATATYPES = ("FP32", "FP64", "FP16")
INT_DATATYPES = ("INT64", "INT32", "INT16", "INT8", "UINT8")

# torch dtype name -> V2 datatype. bfloat16 has no numpy dtype, so it is stated as FP32.
_TORCH_TO_V2 = {
    "float32": "FP32",
    "float64": "FP64",
    "float16": "FP16",
    "bfloat16": "FP32",
    "int64": "INT64",
    "int32": "INT32",
    "int16": "INT16",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
}


def _single(model_dir: Path, suffixes: tuple[str, ...]) -> Path | None:
    found = sorted(p.name for p in model_dir.iterdir() if p.suffix in suffixes and p.is_file())
    if len(found) > 1:
        raise ModelLoadError(
            f"several model files in {model_dir} ({', '.join(found)}); "
            f"name the one to serve model{suffixes[0]}"
        )
    return model_file(model_dir, found[0]) if found else None


def _named(model_dir: Path, names: Sequence[str], suffixes: tuple[str, ...]) -> Path | None:
    for name in names:
        if (model_dir / name).is_file():
            return model_file(model_dir, name)
    return _single(model_dir, suffixes)


def resolve_device(requested: str) -> str:
    """`auto` is CUDA when available, else CPU; an explicit CUDA device must exist."""
    import torch

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "cuda" or requested.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"--device {requested} but torch.cuda.is_available() is False (torch "
                f"{torch.__version__}, a CPU build or no GPU visible); use --device auto or cpu"
            )
        index = 0 if requested == "cuda" else requested.partition(":")[2]
        if not str(index).isdigit() or int(index) >= torch.cuda.device_count():
            raise ModelLoadError(
                f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return f"cuda:{int(index)}"
    raise ModelLoadError(f"--device must be auto, cpu, cuda or cuda:N; got '{requested}'")


def input_spec(spec: TensorSpec) -> TensorSpec:
    """Let a floating input take any floating V2 type (JSON clients often send FP64) and an
    integer input any integer type; run() casts to what the model wants."""
    family = (
        FLOAT_DATATYPES
        if spec.datatype in FLOAT_DATATYPES
        else INT_DATATYPES
        if spec.datatype in INT_DATATYPES
        else ()
    )
    accepts = (spec.datatype, *(d for d in family if d != spec.datatype))
    return TensorSpec(spec.name, spec.datatype, spec.shape, accepts=accepts)


class PytorchPredictor(Predictor):
    family = "pytorch"
    batching_by_default = True

    kind: str = ""
    module: Any = None
    # The file the model was read from: the .pt2, the TorchScript archive or the weights.
    model_path: Path | None = None
    # A .pt2's dimensions that must agree (and their range), by input position; see SameSize.
    same_size: tuple[SameSize, ...] = ()

    # ---- loading -------------------------------------------------------------------------------

    def load_model(self) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(resolve_device(self.settings.device))
        self.compute_dtype = getattr(torch, self.settings.dtype)
        declared = declared_spec(self.settings.input_spec, self.model_dir)
        text = [
            t.name
            for t in (declared.inputs or []) + (declared.outputs or [])
            if t.datatype == "BYTES"
        ]
        if text:
            raise ModelLoadError(
                f"tensor(s) {', '.join(text)} are declared BYTES; a PyTorch "
                "model takes and returns numeric tensors"
            )
        module_path = self.settings.torch_module or declared.module
        inferred: tuple[list[TensorSpec], list[TensorSpec]] | None = None
        try:
            if module_path:
                self.kind, self.module = "eager", self._load_eager(module_path, declared)
            elif (path := _named(self.model_dir, ("model.pt2",), (".pt2",))) is not None:
                self.kind, self.model_path = "export", path
                self.module, inferred, self.same_size = self._load_export(path)
            elif (path := _named(self.model_dir, ("model.pt",), (".pt", ".ts"))) is not None:
                self.kind, self.model_path = "torchscript", path
                self.module = self._load_torchscript(path)
            else:
                raise ModelLoadError(
                    f"no PyTorch model in {self.model_dir}: expected model.pt2 (torch.export), "
                    "model.pt (TorchScript), or a state_dict with --torch-module module:Class"
                )
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(
                f"could not load the {self.kind or 'PyTorch'} model from "
                f"{self.model_dir}: {type(exc).__name__}: {exc}"
            ) from exc
        inputs = declared.inputs or (inferred[0] if inferred else None)
        if not inputs:
            raise ModelLoadError(
                f"a {self.kind} model does not state its inputs; declare them with --input-spec "
                "'[{name: input-0, datatype: FP32, shape: [-1, 4]}]' or in kninfer.yaml beside "
                "the model"
            )
        self.inputs = [input_spec(s) for s in inputs]
        self._fit_batches_to_program()
        self.outputs = (
            declared.outputs or (inferred[1] if inferred else None) or self._probe_outputs()
        )
        logger.info(
            "pytorch %s model on %s (%s), inputs %s",
            self.kind,
            self.device,
            self.settings.dtype,
            [s.metadata() for s in self.inputs],
        )

    def _fit_batches_to_program(self) -> None:
        """A .pt2 exported for at most N rows (`Dim("batch", max=N)`) refuses a larger batch,
        so the batcher (and the CUDA warm-up) must not build one out of requests that each
        fit."""
        limit = min(
            (
                group.high
                for group in self.same_size
                if group.high is not None and any(dim == 0 for _, dim in group.dims)
            ),
            default=None,
        )
        if limit is not None and limit < self.settings.max_batch_size:
            logger.warning(
                "the exported program takes at most %d rows; batches are capped at "
                "%d, not --max-batch-size %d",
                limit,
                limit,
                self.settings.max_batch_size,
            )
            self.max_batch_rows = limit

    def _to_target(self, module: Any) -> Any:
        module = module.to(self.device)
        if self.compute_dtype != self._torch.float32:
            module = module.to(self.compute_dtype)
        return module

    def _load_torchscript(self, path: Path) -> Any:
        torch = self._torch
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript: logged below
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location=self.device)
        except RuntimeError as exc:
            if "constants.pkl" in str(exc) or "archive" in str(exc).lower():
                raise ModelLoadError(
                    f"{path.name} is not a TorchScript archive (torch.jit.save); if it is a "
                    "state_dict, serve it with --torch-module module:Class"
                ) from exc
            raise
        logger.info(
            "%s is TorchScript, which PyTorch deprecates; torch.export (.pt2) is the "
            "supported path",
            path.name,
        )
        return self._to_target(module).eval()

    def _load_export(
        self, path: Path
    ) -> tuple[Any, tuple[list[TensorSpec], list[TensorSpec]], tuple[SameSize, ...]]:
        torch = self._torch
        program = torch.export.load(str(path))
        inferred = _program_specs(program)
        same_size = _program_same_sizes(program)
        if self.device.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, self.device)
        module = program.module()
        if self.compute_dtype != torch.float32:
            module = module.to(self.compute_dtype)
        # An exported module refuses .eval(); it was traced in whatever mode export saw.
        return module, inferred, same_size

    def _load_eager(self, module_path: str, declared: DeclaredSpec) -> Any:
        torch = self._torch
        weights = _named(self.model_dir, SAFETENSORS_FILES, (".safetensors",)) or _named(
            self.model_dir, STATE_DICT_FILES, (".pt", ".pth")
        )
        if weights is None:
            raise ModelLoadError(
                f"no state_dict in {self.model_dir}: expected one of "
                f"{', '.join(SAFETENSORS_FILES + STATE_DICT_FILES)}"
            )
        self.model_path = weights
        # The class may live beside the weights (model.py), as TorchServe's model files do.
        cls = import_class(module_path, "--torch-module", search_path=self.model_dir)
        state = _read_state_dict(torch, weights)
        # The module's own random initialisation would be thrown away by the load: build it
        # without (where a 1 GB network spent most of its load), then let the loaded tensors
        # become its parameters (assign=True) instead of copying them in. The tensors are
        # memory-mapped, so weights are read from the page cache as the warm-up touches them.
        with _skip_init(torch):
            module = cls(**declared.module_kwargs)
        # assign=True keeps the loaded tensors' dtype; load_state_dict's copy would cast them to
        # the module's, so cast those that differ first (a float64 checkpoint, say).
        expected = {k: v.dtype for k, v in module.state_dict().items()}
        state = {
            k: v.to(expected[k])
            if k in expected and hasattr(v, "dtype") and v.dtype != expected[k]
            else v
            for k, v in state.items()
        }
        try:
            module.load_state_dict(state, assign=True)
        except RuntimeError as exc:
            raise ModelLoadError(
                f"{weights.name} does not fit {module_path}: {str(exc).splitlines()[0]}"
            ) from None
        return self._to_target(module).eval()

    def _probe_outputs(self) -> list[TensorSpec]:
        if any(d == -1 for spec in self.inputs for d in spec.shape[1:]):
            raise ModelLoadError(
                "outputs are not declared and an input has a free (-1) "
                "non-batch dimension, so a probe run cannot be built; declare "
                "'outputs' in --input-spec or kninfer.yaml"
            )
        probe = {k: np.concatenate([v, v]) for k, v in super().warmup_inputs().items()}
        result = self._forward(probe)
        return [
            TensorSpec(
                name,
                _TORCH_TO_V2.get(str(t.dtype).removeprefix("torch."), "FP32"),
                (-1, *t.shape[1:]),
            )
            for name, t in result.items()
        ]

    # ---- warm-up -------------------------------------------------------------------------------

    def warmup_inputs(self) -> Arrays:
        if any(d == -1 for spec in self.inputs for d in spec.shape[1:]):
            return {}  # free non-batch dimensions: no shape to warm up with
        return super().warmup_inputs()

    def load(self) -> bool:
        ready = super().load()  # load_model + one batch-1 warm-up
        # More warm-up only where something settles with it: TorchScript's profiling executor
        # specialises a graph after its first runs per shape, and CUDA sets up cuBLAS handles
        # and its caching allocator per batch size. An eager or exported module on the CPU has
        # neither, and a batch of max_batch_size through a 1 GB network cost most of its cold
        # start for nothing (docs/performance.md#figures-behind-the-code).
        if self.settings.warmup and (self.kind == "torchscript" or self.device.type == "cuda"):
            started = time.perf_counter()
            one = self.warmup_inputs()
            outputs = [spec.name for spec in self.outputs]
            if one and all(spec.shape[0] == -1 for spec in self.inputs):
                # TorchScript on the CPU needs only a second batch size to profile a dynamic
                # batch dimension; CUDA needs the largest batch the batcher will send.
                rows = self.batch_cap() if self.device.type == "cuda" else 2
                full = {k: np.repeat(v, rows, axis=0) for k, v in one.items()}
                for arrays in (one, full, one, full):
                    self.run(arrays, outputs)
            self.warmup_ms += (time.perf_counter() - started) * 1000
        return ready

    # ---- requests ------------------------------------------------------------------------------

    def v1_arrays(self, payload: dict[str, Any]) -> Arrays:
        """KServe V1's named tensors (`{"inputs": {name: batch}}`, or instances keyed by input
        name: what a model of several inputs needs), else rows of the single input."""
        rows = v1_rows(payload)
        if rows.form == "instances":
            names = [spec.name for spec in self.inputs]
            columns = tensors_by_input(rows.rows, names, self.name)
            if columns is not None:
                return {spec.name: _v1_input(spec, columns[spec.name]) for spec in self.inputs}
        return super().v1_arrays(payload)

    def validate_arrays(self, arrays: Arrays) -> None:
        # V2 requests were checked by TensorSpec.check in decode(); V1 rows arrive here unchecked.
        for spec in self.inputs:
            array = arrays.get(spec.name)
            if array is not None and not shape_matches(array.shape, spec.shape):
                raise InvalidInput(
                    f"input '{spec.name}' has shape {list(array.shape)}; expected "
                    f"{list(spec.shape)} (-1 is any size)"
                )
            if (
                array is not None
                and array.dtype.kind == "f"
                and array.size
                and array.dtype.itemsize > 4
            ):
                # An FP64 request for an FP32 (or narrower) model: a finite value past the
                # model's range would become infinity in the cast, silently.
                limit = float(
                    np.finfo(np.float16 if self.settings.dtype == "float16" else np.float32).max
                )
                finite = np.isfinite(array)
                if bool((np.abs(array[finite]) > limit).any()):
                    raise InvalidInput(
                        f"input '{spec.name}': a value is out of range for the model, which "
                        f"computes in {self.settings.dtype}"
                    )
            if (
                array is not None
                and array.dtype.kind in "iu"
                and array.size
                and spec.datatype in INT_DATATYPES
            ):
                info = np.iinfo(V2_TO_NUMPY[spec.datatype])
                if array.min() < info.min or array.max() > info.max:
                    raise InvalidInput(
                        f"input '{spec.name}': a value is out of range for {spec.datatype}"
                    )
        names = [spec.name for spec in self.inputs]
        for group in self.same_size:
            group.check(names, arrays)

    def _tensor(self, array: np.ndarray, spec: TensorSpec) -> Any:
        torch = self._torch
        if not array.flags.writeable or not array.flags.c_contiguous:
            array = np.ascontiguousarray(array).copy()  # binary tensors arrive read-only
        tensor = torch.from_numpy(array)
        if tensor.is_floating_point():
            tensor = tensor.to(self.compute_dtype)  # cast on the host: fewer bytes to copy
        elif spec.datatype in INT_DATATYPES:
            tensor = tensor.to(getattr(torch, np.dtype(V2_TO_NUMPY[spec.datatype]).name))
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def _forward(self, inputs: Arrays) -> dict[str, Any]:
        """Named output tensors (still on the model's device) for `inputs`."""
        torch = self._torch
        with torch.inference_mode():
            args = [self._tensor(inputs[spec.name], spec) for spec in self.inputs]
            try:
                result = self.module(*args)
            except (AssertionError, RuntimeError) as exc:
                # An exported program asserts the shape constraints it was exported with before
                # it runs; validate_arrays checks those it can read, and this catches the rest
                # (a derived dimension): the request broke them, so it is the client's fault.
                # Only errors raised by those input checks, never the program's own.
                if self.kind == "export" and _raised_by_input_checks(exc):
                    shapes = ", ".join(
                        f"{spec.name} {list(inputs[spec.name].shape)}" for spec in self.inputs
                    )
                    raise model_rejected(
                        self.name,
                        ValueError(
                            f"the exported program's input constraints refuse it "
                            f"({str(exc).strip()}); inputs {shapes}"
                        ),
                    ) from None
                # A free (-1) dimension lets a request through that the module cannot take:
                # torch says so with a shape error, the client's fault. Anything else (out of
                # memory, a device fault) stays a server error.
                if (
                    isinstance(exc, RuntimeError)
                    and not isinstance(exc, torch.OutOfMemoryError)
                    and _SHAPE_ERROR.search(str(exc))
                ):
                    raise model_rejected(self.name, exc) from None
                raise
        if isinstance(result, torch.Tensor):
            result = (result,)
        if isinstance(result, dict):
            # A .pt2's output names are str(key) (_output_names); an eager module's probe too.
            return {str(key): value for key, value in result.items()}
        if isinstance(result, (tuple, list)):
            names = (
                [s.name for s in self.outputs]
                if self.outputs
                else [f"output-{i}" for i in range(len(result))]
            )
            if len(names) != len(result):
                raise ModelLoadError(
                    f"the model returned {len(result)} outputs but "
                    f"{len(names)} are declared ({', '.join(names)})"
                )
            return dict(zip(names, result, strict=True))
        raise ModelLoadError(
            f"the model returned a {type(result).__name__}; expected a tensor, "
            "a tuple/list of tensors or a dict of tensors"
        )

    def run(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        result = self._forward(inputs)
        by_name = {spec.name: spec for spec in self.outputs}
        arrays: Arrays = {}
        for name in outputs:
            tensor = result[name].detach()
            want = V2_TO_NUMPY[by_name[name].datatype]
            if tensor.is_floating_point() and tensor.dtype != getattr(
                self._torch, np.dtype(want).name
            ):
                tensor = tensor.float()  # bf16/fp16 compute comes back as the declared type
            arrays[name] = tensor.cpu().numpy().astype(want, copy=False)
        return arrays


# torch's wording for a tensor of the wrong shape (aten shape checks: matmul, cat, view, conv).
_SHAPE_ERROR = re.compile(
    r"shapes cannot be multiplied|size mismatch|must match the size|"
    r"shape '\[.*\]' is invalid|expected input\[|Expected .*dim|"
    r"size of tensor a|Sizes of tensors must match"
)

# Where torch.export checks a call's inputs against the program's constraints: the guards
# function `module()` puts before the graph (class GuardsFn, failing with torch._assert's
# AssertionError "Guard failed: ..."), or, in a module built without one, the pre-hook's checker
# (RuntimeError "Expected input at ...").
_GUARD_CLASSES = ("GuardsFn",)
_INPUT_CHECK_FUNCTIONS = (
    "_check_input_constraints_for_graph",
    "_check_symint",
    "_check_inputs_match",
)


def _raised_by_input_checks(exc: BaseException) -> bool:
    """Whether torch.export's input checks raised `exc`, rather than the program's own code: one
    of the frames it passed through is theirs."""
    trace = exc.__traceback__
    while trace is not None:
        frame = trace.tb_frame
        module = str(frame.f_globals.get("__name__", ""))
        if frame.f_code.co_name in _INPUT_CHECK_FUNCTIONS and module.startswith("torch."):
            return True
        owner = type(frame.f_locals.get("self"))
        if owner.__name__ in _GUARD_CLASSES and owner.__module__.startswith("torch.export"):
            return True
        trace = trace.tb_next
    return False


def _v1_input(spec: TensorSpec, values: list[Any]) -> np.ndarray:
    """One input's values from V1 instances keyed by name, stacked as its batch, checked as
    strictly as a V2 tensor (numbers, not true/false; integers for an integer input)."""
    try:
        array = np.asarray(values)
    except ValueError:
        raise InvalidInput(
            f"'instances': the values of input '{spec.name}' are ragged; each "
            f"must have shape {list(spec.shape[1:])}"
        ) from None
    if spec.datatype == "BOOL":
        if array.dtype.kind != "b":
            raise InvalidInput(f"'instances': input '{spec.name}' takes true/false values")
    elif array.dtype.kind not in "iuf" or has_bool(values):
        raise InvalidInput(f"'instances': input '{spec.name}' takes numbers ({spec.datatype})")
    elif spec.datatype in INT_DATATYPES and array.dtype.kind == "f":
        raise InvalidInput(
            f"'instances': input '{spec.name}' takes integers ({spec.datatype}); "
            "found fractional numbers"
        )
    elif spec.datatype in FLOAT_DATATYPES:
        # Read as float64: validate_arrays then refuses a value past the compute dtype's range
        # instead of letting a cast turn it into infinity.
        array = array.astype(np.float64)
    spec.check(array, spec.datatype)
    return array


def _read_state_dict(torch: Any, weights: Path) -> Any:
    """The state_dict in `weights`, memory-mapped: safetensors, or `torch.load` with
    weights_only=True (the restricted unpickler: no code runs, see the module docstring) and
    mmap=True (torch >= 2.1; a legacy, non-zip file is read whole instead)."""
    if weights.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ModelLoadError(
                f"{weights.name} needs the safetensors package (the pytorch extra installs it)"
            ) from None
        try:
            return load_file(str(weights), device="cpu")
        except Exception as exc:
            raise ModelLoadError(f"{weights.name} is not a safetensors file ({exc})") from None
    try:
        try:
            state = torch.load(str(weights), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(
            f"{weights.name} is not a weights-only state_dict ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}); save it with torch.save(model.state_dict(), ...)"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint wrapping the state_dict
    return state


@contextlib.contextmanager
def _skip_init(torch: Any) -> Iterator[None]:
    """`torch.nn.init`'s in-place initialisers as no-ops while a module is built, as Hugging
    Face's `no_init_weights` does: built-in layers initialise through them (Linear's
    reset_parameters calls kaiming_uniform_ and uniform_), and the state_dict replaces every
    parameter right after. Cheaper than the meta device, whose first use of some layers
    (EmbeddingBag) costs seconds. Loading is single-threaded start-up code."""
    init = torch.nn.init
    names = [
        n
        for n in dir(init)
        if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))
    ]
    saved = {n: getattr(init, n) for n in names}

    def keep(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        return tensor

    try:
        for name in names:
            setattr(init, name, keep)
        yield
    finally:
        for name, function in saved.items():
            setattr(init, name, function)


def _program_specs(program: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of a torch.export program from its graph's example metadata, outputs
    named by the structure the program returns (_output_names)."""
    signature = program.graph_signature
    user_inputs = set(signature.user_inputs)
    nodes = {node.name: node for node in program.graph.nodes}
    inputs = [
        _fake_spec(node.name, node.meta.get("val"))
        for node in program.graph.nodes
        if node.op == "placeholder" and node.name in user_inputs
    ]
    # The user outputs only, in the order the returned structure flattens to: the graph's output
    # node also carries buffer mutations, which the module keeps to itself.
    values = [
        nodes[name].meta.get("val") if isinstance(name, str) and name in nodes else None
        for name in signature.user_outputs
    ]
    names = _output_names(program.call_spec.out_spec, len(values))
    return inputs, [_fake_spec(name, value) for name, value in zip(names, values, strict=True)]


def _output_names(out_spec: Any, count: int) -> list[str]:
    """Names for a program's `count` outputs from `out_spec`, the pytree spec its `module()`
    rebuilds the return value with: a dict's keys (what the module returns, and what the eager
    probe names), else `output-0`, ... for a tuple, a list or a single tensor."""
    positional = [f"output-{i}" for i in range(count)]
    if out_spec is None:  # no call signature recorded: the module returns the flat outputs
        return positional
    # Each leaf replaced by its position: {"logits": 0, "probs": 1}, (0, 1) or 0.
    shape = out_spec.unflatten(list(range(out_spec.num_leaves)))
    if out_spec.num_leaves == count:
        if isinstance(shape, int):
            return positional
        if isinstance(shape, dict) and all(isinstance(i, int) for i in shape.values()):
            names = [""] * count
            for key, i in shape.items():
                names[i] = str(key)
            if len(set(names)) == count:
                return names
        elif isinstance(shape, (tuple, list)) and all(isinstance(i, int) for i in shape):
            return positional
    raise ModelLoadError(
        f"the exported program returns {out_spec.type.__name__} {shape}; "
        "kninfer serves a tensor, a tuple/list of tensors or a dict of tensors "
        "(re-export the module returning one of them)"
    )


@dataclass(frozen=True)
class SameSize:
    """Input dimensions a torch.export program declares one size (they share one symbol:
    `dynamic_shapes={"x": {0: batch}, "mask": {0: batch}}`), and the range it was exported for.
    `dims` are (input position, dimension); `low`/`high` mirror the guards torch itself builds
    (torch.export._unlift: a minimum is checked only above 2, a maximum when finite)."""

    dims: tuple[tuple[int, int], ...]
    low: int | None
    high: int | None

    def record(self) -> dict[str, Any]:
        """As compile.json keeps it (kninfer.compile.torch_export): the graph does not."""
        return {"dims": [list(d) for d in self.dims], "low": self.low, "high": self.high}

    @classmethod
    def from_record(cls, doc: Any) -> SameSize:
        try:
            dims = tuple((int(p), int(d)) for p, d in doc["dims"])
            low, high = doc.get("low"), doc.get("high")
            return cls(dims, None if low is None else int(low), None if high is None else int(high))
        except (KeyError, TypeError, ValueError):
            raise ModelLoadError(f"compile.json: {doc!r} is not a same-size constraint") from None

    def check(self, names: Sequence[str], arrays: Arrays) -> None:
        """Raise InvalidInput when the request's arrays break this constraint."""
        present = [
            (names[position], dim, arrays[names[position]])
            for position, dim in self.dims
            if position < len(names)
            and names[position] in arrays
            and arrays[names[position]].ndim > dim
        ]
        if not present:
            return
        name, dim, array = present[0]
        size = array.shape[dim]
        for other, other_dim, other_array in present[1:]:
            if other_array.shape[other_dim] != size:
                rule = (
                    f"the same size in dimension {dim}"
                    if dim == other_dim
                    else f"dimension {other_dim} of '{other}' equal to dimension {dim} of '{name}'"
                )
                raise InvalidInput(
                    f"input '{name}' has shape {list(array.shape)} but input '{other}' has shape "
                    f"{list(other_array.shape)}; the model takes {rule}"
                )
        if self.high is not None and size > self.high:
            raise InvalidInput(
                f"input '{name}' has shape {list(array.shape)}; the model takes "
                f"at most {self.high} in dimension {dim}"
            )
        if self.low is not None and size < self.low:
            raise InvalidInput(
                f"input '{name}' has shape {list(array.shape)}; the model takes "
                f"at least {self.low} in dimension {dim}"
            )


def _program_same_sizes(program: Any) -> tuple[SameSize, ...]:
    """The dimensions of a program's user inputs that are one plain symbol each, grouped by
    symbol, with the symbol's range. Derived dimensions (`2 * batch`) are left to torch's own
    guards (and _raised_by_input_checks)."""
    user_inputs = list(program.graph_signature.user_inputs)
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    dims: dict[Any, list[tuple[int, int]]] = {}
    for position, name in enumerate(user_inputs):
        value = placeholders[name].meta.get("val") if name in placeholders else None
        for dim, size in enumerate(getattr(value, "shape", ())):
            expr = getattr(getattr(size, "node", None), "expr", None)
            if expr is not None and getattr(expr, "is_Symbol", False):
                dims.setdefault(expr, []).append((position, dim))
    groups = []
    for expr, where in dims.items():
        low = high = None
        limits = program.range_constraints.get(expr)
        if limits is not None:
            lower, upper = float(limits.lower), float(limits.upper)
            low = int(lower) if math.isfinite(lower) and lower > 2 else None
            high = int(upper) if math.isfinite(upper) else None
        if len(where) > 1 or low is not None or high is not None:
            groups.append(SameSize(tuple(where), low, high))
    return tuple(groups)


def _fake_spec(name: str, value: Any) -> TensorSpec:
    if value is None or not hasattr(value, "shape"):
        raise ModelLoadError(
            f"exported program: '{name}' is not a tensor; declare the model's "
            "inputs and outputs in kninfer.yaml"
        )
    shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
    dtype = str(value.dtype).removeprefix("torch.")
    if shape and shape[0] != -1:
        logger.warning(
            "exported program: '%s' has a static batch dimension %d; export with "
            "dynamic_shapes={...: {0: Dim('batch')}} to serve any batch size",
            name,
            shape[0],
        )
    return TensorSpec(name, _TORCH_TO_V2.get(dtype, "FP32"), shape)
