"""`kninfer compile` for a PyTorch model: the model the pytorch family serves from MODEL_DIR,
exported to model.onnx, verified against PyTorch on the same rows, then written with compile.json.

The model is loaded by the pytorch family itself (kninfer.predictors.pytorch, on the CPU in
float32), so the graph takes and gives the tensors that family serves: its input names,
datatypes and shapes (a `.pt2`'s own, or those declared in kninfer.yaml / --input-spec), and its
output names in order. PyTorch's answers are the family's `run()` on the verification rows.

Exporters (PyTorch's "torch.onnx" docs): a `torch.export` program (`model.pt2`) and an eager
module (a state_dict with its class) go through `torch.onnx.export(..., dynamo=True)`, which
needs onnxscript (the compile extra); the program keeps its own dynamic dimensions, and every
-1 of an eager module's declared shapes is left for torch.export to keep dynamic
(`Dim.AUTO`: a dimension the module fixes, such as a Linear layer's width, becomes fixed). A
TorchScript archive cannot be traced by torch.export, so it goes through the TorchScript-based
exporter (`dynamo=False`), which PyTorch deprecates but still ships. compile.json says which
exporter wrote the graph.

Verification rows: --sample (.npz, or .json with a list of rows per input name), else rows
generated from the declared shapes (floats from a standard normal distribution, integers 0 and
1, booleans), which needs every dimension past the first to be fixed. Every output must be
within the tolerance on every row; integer and boolean outputs must be equal.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kninfer.compile.errors import STILL_SERVED_BY_TORCH, NotConvertible, VerificationFailed
from kninfer.compile.record import ONNX_FILE, RECORD_FORMAT, Compiled, write_compiled
from kninfer.compile.rows import RowSet
from kninfer.compile.verify import compare, onnx_outputs, refusal
from kninfer.errors import InvalidInput, ModelLoadError
from kninfer.protocol.tensor import V2_TO_NUMPY, TensorSpec
from kninfer.storage import sha256_of

if TYPE_CHECKING:
    from kninfer.predictors.pytorch import PytorchPredictor

# The pytorch family's files (kninfer.predictors.pytorch): a directory holding one of these, or
# a module to build (--torch-module, kninfer.yaml's `module`), holds a PyTorch model.
TORCH_SUFFIXES = (".pt2", ".pt", ".ts", ".pth", ".safetensors")
# The sklearn family's (kninfer.predictors.sklearn.SUFFIXES, not imported: it imports kserve).
SKLEARN_SUFFIXES = (".skops", ".joblib", ".pkl", ".pickle")
FORMATS = {"eager": "pytorch-state-dict", "export": "pytorch-export", "torchscript": "torchscript"}
EXPORTERS = {
    "eager": "torch.onnx.export(dynamo=True)",
    "export": "torch.onnx.export(dynamo=True)",
    "torchscript": "torch.onnx.export(dynamo=False)",
}
# The TorchScript-based exporter's opset: the newest it supports well in torch 2.x.
TORCHSCRIPT_OPSET = 17
# Rows in the example a graph is exported with: 2, as torch.export specializes 0 and 1.
EXAMPLE_ROWS = 2
REFERENCE = "PyTorch"
# Rows per call of the module when computing the reference answers.
BATCH_ROWS = 256
logger = logging.getLogger("kninfer")


def holds_torch_model(model_dir: Path, torch_module: str | None) -> bool:
    """Whether `model_dir` is a PyTorch model directory: --torch-module says so, else it holds
    no scikit-learn or MLflow model (kninfer.compile.source) and a PyTorch file or a declared
    module."""
    if torch_module:
        return True
    if not model_dir.is_dir() or (model_dir / "MLmodel").is_file():
        return False
    if any(p.suffix in SKLEARN_SUFFIXES for p in model_dir.iterdir()):
        return False
    from kninfer.predictors.spec import declared_spec

    try:
        if declared_spec(None, model_dir).module:
            return True
    except ModelLoadError:
        pass
    return any(p.suffix in TORCH_SUFFIXES and p.is_file() for p in model_dir.iterdir())


def compile_pytorch(
    model_dir: Path,
    out: Path | None,
    sample: Path | None,
    rtol: float,
    atol: float,
    rows: int,
    torch_module: str | None = None,
    input_spec: str | None = None,
) -> Compiled:
    """Export, verify and write, as kninfer.compile.build.compile_model does for scikit-learn."""
    from kninfer.compile.graph import opsets, session, versions

    predictor = _load(model_dir, torch_module, input_spec)
    inputs, outputs = predictor.inputs, predictor.outputs
    rowset = _sample_rows(sample, inputs, rows) if sample else _generated_rows(inputs, rows)
    names = [spec.name for spec in outputs]
    try:
        expected = _in_batches(predictor, rowset.rows, names)
    except (InvalidInput, ValueError, RuntimeError, IndexError) as exc:
        raise InvalidInput(
            f"PyTorch refused the verification rows ({type(exc).__name__}: {_first_line(exc)}); "
            "give real rows with --sample FILE (.npz, or .json with a list of rows per input)"
        ) from None
    model, exporter = _export(predictor, rowset.rows)
    graph = model.SerializeToString()
    ort_session = session(graph)
    feed = _feed(ort_session, rowset.rows)
    actual = onnx_outputs(ort_session, feed, outputs, STILL_SERVED_BY_TORCH)
    report = compare(expected, actual, outputs, rowset.labels, rtol, atol, False, REFERENCE)
    if not report.passed:
        raise VerificationFailed(refusal(report, STILL_SERVED_BY_TORCH))

    target = out if out is not None else model_dir / ONNX_FILE
    assert predictor.model_path is not None  # set by every load
    source: dict[str, Any] = {
        "file": os.path.relpath(predictor.model_path, target.parent.resolve()),
        "sha256": sha256_of(predictor.model_path),
        "format": FORMATS[predictor.kind],
        "model": type(predictor.module).__name__,
    }
    if predictor.kind == "eager":
        source["module"] = torch_module or _declared_module(model_dir)
        code = _module_file(predictor.module, model_dir, target.parent)
        if code is not None:  # the class beside the weights (model.py): pinned as they are
            source["module_file"] = code[0]
            source["module_sha256"] = code[1]
    record = {
        "format": RECORD_FORMAT,
        "source": source,
        "onnx": {
            "file": target.name,
            "sha256": hashlib.sha256(graph).hexdigest(),
            "opsets": opsets(model),
            "exporter": exporter,
            "numeric_inputs_converted_as": "FP32",
        },
        "versions": {
            "kninfer": versions(["kninfer"])["kninfer"],
            **versions(["torch", "onnxscript", "onnx", "onnxruntime"]),
        },
        "inputs": [spec.metadata() for spec in inputs],
        "outputs": [spec.metadata() for spec in outputs],
        # What a .pt2 asserts of its inputs and the graph does not: served as the program is.
        "pytorch": {"same_size": [group.record() for group in predictor.same_size]},
        "verification": {"row_sources": rowset.sources, "rows_skipped": 0, **report.record()},
    }
    return write_compiled(target, graph, record, report, rowset)


def _in_batches(
    predictor: PytorchPredictor, arrays: dict[str, np.ndarray], names: list[str]
) -> dict[str, np.ndarray]:
    """The family's `run` over the rows, in batches it takes (a .pt2 exported for at most N
    rows refuses more), joined."""
    total = len(next(iter(arrays.values())))
    size = min(
        [g.high for g in predictor.same_size if g.high and any(d == 0 for _, d in g.dims)],
        default=BATCH_ROWS,
    )
    parts = [
        predictor.run({k: v[start : start + size] for k, v in arrays.items()}, names)
        for start in range(0, total, size)
    ]
    return {name: np.concatenate([part[name] for part in parts]) for name in names}


def _load(model_dir: Path, torch_module: str | None, input_spec: str | None) -> PytorchPredictor:
    """The model as the pytorch family loads it, on the CPU in float32, without warm-up."""
    from kninfer.predictors.pytorch import PytorchPredictor
    from kninfer.settings import ServeSettings

    options: dict[str, Any] = {
        "model_dir": model_dir,
        "predictor": "pytorch",
        "device": "cpu",
        "dtype": "float32",
        "torch_module": torch_module,
        "input_spec": input_spec,
        "warmup": False,
        "batching": False,
    }
    settings = ServeSettings(**options)
    predictor = PytorchPredictor("compile", model_dir, settings)
    predictor.load_model()
    return predictor


def _module_file(module: Any, model_dir: Path, record_dir: Path) -> tuple[str, str] | None:
    """The file defining `module`'s class, relative to `record_dir` (where compile.json goes, as
    `source.file` is), and its sha256, when the file lies in `model_dir` (a model.py shipped
    beside the weights); None for an installed class."""
    import inspect

    try:
        path = Path(inspect.getfile(type(module))).resolve()
    except (TypeError, OSError):
        return None
    if not path.is_relative_to(model_dir.resolve()):
        return None
    return os.path.relpath(path, record_dir.resolve()), sha256_of(path)


def _declared_module(model_dir: Path) -> str | None:
    from kninfer.predictors.spec import declared_spec

    return declared_spec(None, model_dir).module


def _example(predictor: PytorchPredictor, arrays: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """The first EXAMPLE_ROWS rows as the tensors the family hands the module."""
    return tuple(
        predictor._tensor(np.ascontiguousarray(arrays[spec.name][:EXAMPLE_ROWS]), spec)
        for spec in predictor.inputs
    )


def _export(predictor: PytorchPredictor, arrays: dict[str, np.ndarray]) -> tuple[Any, str]:
    """The ONNX model (onnx.ModelProto) and the exporter that wrote it."""
    import torch

    input_names = [spec.name for spec in predictor.inputs]
    output_names = [spec.name for spec in predictor.outputs]
    example = _example(predictor, arrays)
    kind = predictor.kind
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # per-op registration notes
    try:
        # The exporters print the graphs they traced when they fail: the reason is raised.
        quiet = io.StringIO()
        with (
            warnings.catch_warnings(),
            torch.no_grad(),
            contextlib.redirect_stderr(quiet),
            contextlib.redirect_stdout(quiet),
        ):
            warnings.simplefilter("ignore")
            if kind == "export":
                assert predictor.model_path is not None
                program: Any = torch.onnx.export(
                    torch.export.load(str(predictor.model_path)),
                    dynamo=True,
                    input_names=input_names,
                    output_names=output_names,
                    verbose=False,
                )
                return program.model_proto, EXPORTERS[kind]
            ordered = ordered_module(predictor.module, output_names)
            if kind == "eager":
                dynamic = tuple(
                    {dim: torch.export.Dim.AUTO for dim, size in enumerate(s.shape) if size == -1}
                    or None
                    for s in predictor.inputs
                )
                program = torch.onnx.export(
                    ordered,
                    example,
                    dynamo=True,
                    dynamic_shapes=(dynamic,),  # one entry: Ordered.forward's *args
                    input_names=input_names,
                    output_names=output_names,
                    verbose=False,
                )
                return program.model_proto, EXPORTERS[kind]
            import onnx

            buffer = io.BytesIO()
            axes = {
                spec.name: {
                    dim: f"{spec.name}_{dim}" for dim, size in enumerate(spec.shape) if size == -1
                }
                for spec in predictor.inputs
            }
            for spec in predictor.outputs:
                axes[spec.name] = {0: "batch"} if spec.shape and spec.shape[0] == -1 else {}
            exporter: Any = torch.onnx.export  # takes a file object, whatever its hints say
            exporter(
                predictor.module,  # a ScriptModule is exported as it is: tracing cannot wrap it
                example,
                buffer,
                dynamo=False,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes={name: dims for name, dims in axes.items() if dims},
                opset_version=TORCHSCRIPT_OPSET,
            )
            return onnx.load_from_string(buffer.getvalue()), EXPORTERS[kind]
    except ModuleNotFoundError as exc:
        raise NotConvertible(
            f"exporting a PyTorch model needs {exc.name} (pip install 'kninfer[compile]'); "
            f"{STILL_SERVED_BY_TORCH}"
        ) from None
    except Exception as exc:
        raise NotConvertible(
            f"torch.onnx.export could not export the {kind} model "
            f"{type(predictor.module).__name__} ({_export_failure(exc)}); {STILL_SERVED_BY_TORCH}"
        ) from None


def _ordered_class() -> type[Any]:
    import torch

    class Ordered(torch.nn.Module):
        """The module with its outputs as a tuple in the served order: the exporters name a
        graph's outputs by position, and a dict's order need not be the declared one."""

        def __init__(self, inner: Any, names: list[str]) -> None:
            super().__init__()
            self.inner = inner
            self.names = names

        def forward(self, *args: Any) -> tuple[Any, ...]:
            result = self.inner(*args)
            if isinstance(result, dict):
                return tuple(result[name] for name in self.names)
            if isinstance(result, (tuple, list)):
                return tuple(result)
            return (result,)

    return Ordered


def ordered_module(inner: Any, names: list[str]) -> Any:
    """`inner` answering a tuple of its outputs in the order `names` gives (`Ordered`)."""
    return _ordered_class()(inner, names).eval()


def _feed(ort_session: Any, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rows as the graph takes them: floats as float32 (the family computes in it)."""
    from kninfer.predictors.onnx_runtime import ORT_TYPES

    feed = {}
    for arg in ort_session.get_inputs():
        dtype = V2_TO_NUMPY[ORT_TYPES[arg.type]]
        feed[arg.name] = np.ascontiguousarray(arrays[arg.name], dtype=dtype)
    return feed


def _generated_rows(inputs: list[TensorSpec], count: int) -> RowSet:
    free = [s.name for s in inputs if any(d == -1 for d in s.shape[1:])]
    if free:
        raise InvalidInput(
            f"cannot make up verification rows for {', '.join(free)}: a dimension past the "
            "first is free (-1); give real rows with --sample FILE (.npz, or .json with a list "
            "of rows per input)"
        )
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for spec in inputs:
        shape = (count, *spec.shape[1:]) if spec.shape else ()
        dtype = np.dtype(V2_TO_NUMPY[spec.datatype])
        if dtype.kind == "f":
            arrays[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            arrays[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            arrays[spec.name] = rng.integers(0, 2, shape).astype(dtype)
    return RowSet(arrays, _labels(count), [{"source": "generated", "rows": count}])


def _sample_rows(sample: Path, inputs: list[TensorSpec], count: int) -> RowSet:
    try:
        if sample.suffix == ".npz":
            with np.load(sample, allow_pickle=False) as data:
                given = {name: data[name] for name in data.files}
        elif sample.suffix == ".json":
            doc = json.loads(sample.read_text())
            if not isinstance(doc, dict):
                raise ValueError("expected an object with a list of rows per input name")
            given = {name: np.asarray(values) for name, values in doc.items()}
        else:
            raise ValueError("a PyTorch model's sample is .npz or .json")
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInput(f"cannot read the sample {sample}: {exc}") from None
    missing = [s.name for s in inputs if s.name not in given]
    if missing:
        raise InvalidInput(
            f"the sample {sample} has no {', '.join(missing)}; it holds {', '.join(given)}"
        )
    arrays = {s.name: given[s.name][:count] for s in inputs}
    rows = {len(a) for a in arrays.values()}
    if len(rows) != 1 or 0 in rows:
        raise InvalidInput("the sample's inputs must have the same number of rows, at least 1")
    (found,) = rows
    return RowSet(
        arrays, _labels(found), [{"source": "sample", "rows": found, "file": str(sample)}]
    )


def _labels(count: int) -> list[str]:
    return [f"row {i}" for i in range(count)]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SUMMARY = re.compile(r"## Exception summary\s*<class '(?:[\w.]*\.)?(\w+)'>: *([^\n]*)")


def _export_failure(exc: BaseException) -> str:
    """What stopped the export, in a line: the exporter wraps torch.export's error in advice
    about what to do next, and names the cause under "## Exception summary"."""
    text = _ANSI.sub("", str(exc))
    summary = _SUMMARY.search(text)
    if summary is not None:
        return f"{summary.group(1)}: {summary.group(2).strip()[:300]}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
