"""An MLflow model of the `onnx` flavor, served through ONNX Runtime without MLflow.

`mlflow.onnx.save_model` writes the graph beside an MLmodel file whose `flavors.onnx.data` names
it (and, by default, the weights of every initializer over 1 KB in files of their own beside
it: the session is built from the graph's path so that ONNX Runtime finds them).
`mlflow.pyfunc.load_model` would import MLflow's pyfunc layer (and with it scipy) only to hand
the graph to ONNX Runtime; here the graph goes
straight into a session set up as the compiled scikit-learn models' are
(kninfer.predictors.onnx_runtime: threads from the container's CPU limit, no spinning, graph
optimized once), so the model's cold start is ONNX Runtime's. The served inputs and outputs are
the graph's own: names, datatypes, and shapes with -1 for a free dimension, as MLflow's onnx
pyfunc feeds and names them. `--runtime native` serves it through `mlflow.pyfunc` instead.

V1 and MLflow scoring (`/invocations`) bodies are answered as `mlflow models serve` answers
them (its onnx pyfunc, mlflow.onnx._OnnxModelWrapper.predict):

- tensors (`inputs` or `instances`: rows of a one-input graph, `{name: tensor}`, or records
  keyed by input name) -> `{"predictions": {output: tensor, ...}}`, every output by name;
- a table (`dataframe_split`, `dataframe_records`, CSV): a one-input graph takes the table's
  values as one tensor (rows x columns), a graph of several inputs takes each from the column of
  its name -> `{"predictions": [{output: value, ...}, ...]}`, one record per row, an output of
  one value per row as that value (MLflow flattens each output).

Beyond it: a table's column of scalars feeds an input of shape [-1, 1] (what skl2onnx makes of
a DataFrame's column; MLflow passes it as [-1] and ONNX Runtime refuses the rank), an output of
several values per row answers each row's list (MLflow flattens it into a table of the wrong
length, or fails), and integers feed a float input (MLflow passes JSON integers to ONNX Runtime
as int64, which it refuses).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kninfer.errors import EMPTY_BATCH, InvalidInput, ModelLoadError, ModelNotReady
from kninfer.execution import rows_of
from kninfer.predictors.base import Arrays, Predictor, model_rejected, result_array
from kninfer.predictors.onnx_runtime import (
    ORT_TYPES,
    inference_session,
    quiet_run_options,
    run_error_text,
    run_errors,
)
from kninfer.protocol.tables import strings_array
from kninfer.protocol.tensor import V2_TO_NUMPY, TensorSpec
from kninfer.protocol.v1 import V1Rows, tensors_by_input, v1_rows
from kninfer.protocol.v2 import has_bool

logger = logging.getLogger("kninfer")

PLATFORM = "kninfer-mlflow-onnx"
# ONNX Runtime's tensor types a graph of any origin may declare (a PyTorch export in float16,
# an image model's uint8), beyond those of the compiled scikit-learn graphs (ORT_TYPES).
GRAPH_TYPES = {
    **ORT_TYPES,
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
}
# skl2onnx's ZipMap, a classifier's default probabilities output: one {class: probability} map
# per row. Served as BYTES, one JSON object per row (V2), and as the objects themselves on V1.
MAP_TYPES = frozenset({"seq(map(int64,tensor(float)))", "seq(map(string,tensor(float)))"})
# What a request may send for a graph input of these types: MLflow's onnx pyfunc casts FP64 to
# FP32 (its _cast_float64_to_float32), as JSON clients and tritonclient's numpy default send.
WIDER_ACCEPTED = {"FP32": ("FP32", "FP64", "FP16")}


def mlmodel(path: Path) -> dict[str, Any]:
    """The MLmodel file of an MLflow model directory, parsed."""
    import yaml

    try:
        doc = yaml.safe_load((path / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"cannot read {path / 'MLmodel'}: {exc}") from None
    if not isinstance(doc, dict):
        raise ModelLoadError(f"{path / 'MLmodel'} is not an MLmodel file")
    return doc


def onnx_graph_file(path: Path, meta: dict[str, Any] | None = None) -> Path | None:
    """The graph of an MLflow model of the `onnx` flavor (MLmodel `flavors.onnx.data`), None
    for any other flavor. `meta`: the MLmodel file already parsed (`mlmodel`), else it is read."""
    meta = mlmodel(path) if meta is None else meta
    flavor = (meta.get("flavors") or {}).get("onnx")
    if not isinstance(flavor, dict) or not flavor.get("data"):
        return None
    return path / str(flavor["data"])


def _shape(arg: Any) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)


def _input_spec(arg: Any) -> TensorSpec:
    datatype = GRAPH_TYPES.get(arg.type)
    if datatype is None:
        raise ModelLoadError(
            f"the graph's input '{arg.name}' is {arg.type}, which V2 cannot carry "
            "(--runtime native serves the model through mlflow.pyfunc)"
        )
    return TensorSpec(arg.name, datatype, _shape(arg), WIDER_ACCEPTED.get(datatype, ()))


def _output_spec(arg: Any) -> TensorSpec:
    if arg.type in MAP_TYPES:
        return TensorSpec(arg.name, "BYTES", (-1,))
    datatype = GRAPH_TYPES.get(arg.type)
    if datatype is None:
        raise ModelLoadError(
            f"the graph's output '{arg.name}' is {arg.type}, which V2 cannot carry "
            "(--runtime native serves the model through mlflow.pyfunc; a scikit-learn "
            "classifier converted with skl2onnx's zipmap=False gives a probabilities tensor)"
        )
    return TensorSpec(arg.name, datatype, _shape(arg))


class OnnxMlflowPredictor(Predictor):
    """An MLflow model of the `onnx` flavor through ONNX Runtime."""

    family = "mlflow"
    # A graph runs no user code: its time grows with the rows alone (Execution.decide_inline).
    inline_capable = True
    session: Any = None
    run_id: str | None = None

    @property
    def platform(self) -> str:
        return PLATFORM

    def load_model(self) -> None:
        from kninfer.predictors.mlflow import find_mlmodel_dir

        path = find_mlmodel_dir(self.model_dir)
        meta = mlmodel(path)
        graph = onnx_graph_file(path, meta)
        if graph is None or not graph.is_file():
            raise ModelLoadError(
                f"the MLflow model in {path} has no ONNX graph (MLmodel flavors.onnx.data): "
                "--runtime onnx serves the onnx flavor only"
            )
        try:
            # By path, not bytes: MLflow saves large initializers as external data files,
            # which ONNX Runtime resolves beside the graph (and only there).
            self.session = inference_session(str(graph))
        except ModuleNotFoundError as exc:
            raise ModelLoadError(
                f"the MLflow model in {path} is an ONNX graph and needs ONNX Runtime ({exc}): "
                "pip install 'kninfer[onnx]'; for an image, build with --build-arg "
                "EXTRA_PACKAGES='onnxruntime==VERSION' (--runtime native serves it through "
                "mlflow.pyfunc, which needs ONNX Runtime too)"
            ) from None
        except Exception as exc:
            if type(exc).__module__.startswith("onnxruntime"):
                raise ModelLoadError(
                    f"ONNX Runtime cannot load {graph}: {run_error_text(exc)}"
                ) from None
            raise
        self.inputs = [_input_spec(arg) for arg in self.session.get_inputs()]
        self.outputs = [_output_spec(arg) for arg in self.session.get_outputs()]
        self._maps = frozenset(a.name for a in self.session.get_outputs() if a.type in MAP_TYPES)
        # Dimensions the graph names alike (a "batch" symbol) must have one size in a request.
        self._symbols: dict[str, list[tuple[str, int]]] = {}
        for arg in self.session.get_inputs():
            for dim, size in enumerate(arg.shape):
                if isinstance(size, str) and size:
                    self._symbols.setdefault(size, []).append((arg.name, dim))
        # A graph exported for a fixed batch (no dynamic first axis) takes that many rows: the
        # batcher builds no larger batch (the specs refuse a larger request).
        fixed = [spec.shape[0] for spec in self.inputs if spec.shape and spec.shape[0] > 0]
        self.max_batch_rows = min(fixed) if fixed else None
        self.run_id = meta.get("run_id")
        self._example = _serving_example(path, meta)
        self._run_options = quiet_run_options()
        self._client_errors = run_errors()
        logger.info("serving the MLflow onnx-flavor graph %s through ONNX Runtime", graph)

    def version_of_model(self) -> str:
        """The MLflow run that logged the model, as the pyfunc path reports it."""
        return str(self.run_id) if self.run_id else super().version_of_model()

    def warmup_inputs(self) -> Arrays:
        """The model's saved serving example (`serving_input_example.json`, the /invocations
        body MLflow writes with an input_example), else zeros: a guess where an input is text
        (a category the graph may not know) or has a free dimension past the first."""
        if self._example is not None:
            try:
                return self.v1_arrays(self._example)
            except InvalidInput as exc:
                logger.warning(
                    "model '%s': the saved serving example does not fit the graph (%s); "
                    "warming up on zeros",
                    self.name,
                    exc,
                )
        self.warmup_guessed = any(
            spec.datatype == "BYTES" or -1 in spec.shape[1:] for spec in self.inputs
        )
        return super().warmup_inputs()

    # ---- requests ----------------------------------------------------------------------------

    def shape_input(self, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
        """A V2 tensor as the graph takes it: a column sent as [N] for an input of [-1, 1]
        (skl2onnx's per-column inputs) as [N, 1]; strings as str (V2 sends bytes, which ONNX
        Runtime would not match against a graph's categories); FP64 or FP16 for an FP32 input
        cast, as MLflow's onnx pyfunc casts FP64, refusing a value the cast would turn into
        infinity. Any other datatype is left for the spec's check to refuse."""
        if array.ndim == 1 and len(spec.shape) == 2 and spec.shape[1] == 1:
            array = array.reshape(-1, 1)  # a column as [N], as the other families take it
        if spec.datatype == "BYTES" and array.dtype.kind in "OSU":
            return strings_array(spec.name, array)  # ONNX Runtime takes str, V2 sends bytes
        if spec.datatype in WIDER_ACCEPTED and array.dtype.kind == "f":
            return _as_graph_type(spec, array)
        return array

    def validate_arrays(self, arrays: Arrays) -> None:
        for dims in self._symbols.values():
            present = [(n, d) for n, d in dims if n in arrays and arrays[n].ndim > d]
            for (name, dim), (other, other_dim) in zip(present, present[1:], strict=False):
                if arrays[name].shape[dim] != arrays[other].shape[other_dim]:
                    rule = (
                        f"the same size in dimension {dim}"
                        if dim == other_dim
                        else f"dimension {other_dim} of '{other}' equal to dimension {dim} "
                        f"of '{name}'"
                    )
                    raise InvalidInput(
                        f"input '{name}' has shape {list(arrays[name].shape)} but input "
                        f"'{other}' has shape {list(arrays[other].shape)}; the model takes "
                        f"{rule}"
                    )

    async def predict(  # type: ignore[override]
        self, payload: Any, headers: Mapping[str, str] | None = None
    ) -> Any:
        """As every predictor for V2; a V1 or MLflow scoring body is answered as `mlflow
        models serve` answers it (the module's docstring)."""
        if not isinstance(payload, dict):
            return await super().predict(payload, headers)
        if not self.ready:
            raise ModelNotReady(self.name)
        params = payload.get("params")
        if params is not None:  # as the mlflow family answers a model without a ParamSchema
            if not isinstance(params, dict):
                raise InvalidInput("'params' must be a JSON object")
            if params:
                raise InvalidInput(
                    f"unknown param(s) {', '.join(params)}; model '{self.name}' takes no params"
                )
        rows = v1_rows(payload)
        arrays = self._v1_arrays(rows)
        self.check_arrays(arrays)
        names = [spec.name for spec in self.outputs]
        result = await self.execute(arrays, names)
        answers = {name: self._jsonable(name, result[name]) for name in names}
        if rows.form == "instances":
            return {"predictions": answers}
        return {"predictions": _records(answers, rows_of(arrays))}

    def v1_arrays(self, payload: dict[str, Any]) -> Arrays:
        return self._v1_arrays(v1_rows(payload))

    def _v1_arrays(self, rows: V1Rows) -> Arrays:
        arrays = self._table(rows) if rows.form != "instances" else self._tensors(rows.rows)
        for spec in self.inputs:
            spec.check(arrays[spec.name], spec.datatype)
        return arrays

    def _tensors(self, data: Any) -> Arrays:
        """`inputs`/`instances`: `{name: tensor}`, records keyed by input name, or the rows of
        a one-input graph."""
        names = [spec.name for spec in self.inputs]
        columns = tensors_by_input(data, names, self.name)
        if columns is None and isinstance(data, list):
            columns = {names[0]: data}
        elif columns is None:
            raise InvalidInput('request needs "inputs" or "instances"')
        return {spec.name: _tensor(spec, columns[spec.name]) for spec in self.inputs}

    def _table(self, rows: V1Rows) -> Arrays:
        """`dataframe_split`, `dataframe_records` or CSV, as MLflow's onnx pyfunc reads a
        DataFrame: one input takes the whole table, several take a column each."""
        header, table = _table_rows(rows)
        if not table:
            raise InvalidInput(f"the table has no rows; {EMPTY_BATCH}")
        if len(self.inputs) == 1:
            spec = self.inputs[0]
            values: Any = table
            if len(spec.shape) == 1 and all(len(row) == 1 for row in table):
                values = [row[0] for row in table]
            return {spec.name: _tensor(spec, values, csv=rows.csv)}
        names = [spec.name for spec in self.inputs]
        if header is None:
            raise InvalidInput(
                f"model '{self.name}' takes {len(names)} inputs ({', '.join(names)}): name "
                "the table's columns after them"
            )
        unknown = [column for column in header if column not in names]
        if unknown:
            raise InvalidInput(
                f"unknown input '{unknown[0]}' for model '{self.name}'; it takes {', '.join(names)}"
            )
        missing = [name for name in names if name not in header]
        if missing:
            raise InvalidInput(f"missing input(s) {', '.join(missing)} for model '{self.name}'")
        arrays: Arrays = {}
        for spec in self.inputs:
            at = header.index(spec.name)
            array = _tensor(spec, [row[at] for row in table], csv=rows.csv)
            if array.ndim == 1 and len(spec.shape) == 2 and spec.shape[1] == 1:
                array = array.reshape(-1, 1)  # a column of scalars into skl2onnx's [-1, 1]
            arrays[spec.name] = array
        return arrays

    def _jsonable(self, name: str, array: np.ndarray) -> Any:
        if name in self._maps:
            return [json.loads(value) for value in array.tolist()]
        if array.dtype == object:
            return [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]
        return array.tolist()

    def run(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        feed = {spec.name: inputs[spec.name] for spec in self.inputs if spec.name in inputs}
        try:
            values = self.session.run(list(outputs), feed, self._run_options)
        except self._client_errors as exc:
            raise model_rejected(self.name, ValueError(run_error_text(exc))) from None
        return {
            name: _map_rows(value) if name in self._maps else result_array(name, value)
            for name, value in zip(outputs, values, strict=True)
        }


# ---- values ------------------------------------------------------------------------------------


def _serving_example(path: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The /invocations body MLflow saved with the model's input_example, if any."""
    info = meta.get("saved_input_example_info") or {}
    name = info.get("serving_input_path") if isinstance(info, dict) else None
    if not name or not (path / str(name)).is_file():
        return None
    try:
        doc = json.loads((path / str(name)).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _table_rows(rows: V1Rows) -> tuple[list[str] | None, list[list[Any]]]:
    """The column names (None when the table gives none) and the rows of a table form."""
    if rows.form == "dataframe_records":
        records = rows.rows
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InvalidInput("'dataframe_records' must be a list of objects")
        header: list[str] = []
        for record in records:
            header.extend(key for key in record if key not in header)
        for i, record in enumerate(records):
            absent = [key for key in header if key not in record]
            if absent:
                raise InvalidInput(f"dataframe_records[{i}] has no column '{absent[0]}'")
        return header, [[record[key] for key in header] for record in records]
    table = rows.rows
    if not all(isinstance(row, list) for row in table):
        raise InvalidInput("'dataframe_split.data' must be a list of rows")
    widths = {len(row) for row in table}
    if len(widths) > 1 or (rows.columns is not None and widths and widths != {len(rows.columns)}):
        raise InvalidInput("the table's rows and columns differ in length")
    return rows.columns, table


def _tensor(spec: TensorSpec, values: Any, *, csv: bool = False) -> np.ndarray:
    """`values` (JSON) as the graph input `spec` takes them, converting only what converts
    without loss: integers into a float input, never fractions into an integer one nor true/false
    into numbers (the PyTorch family's V1 rules and messages)."""
    if csv and spec.datatype != "BYTES":
        values = _csv_numbers(values)
    try:
        array = np.asarray(values)
    except ValueError:
        raise InvalidInput(
            f"'instances': the values of input '{spec.name}' are ragged; each must have "
            f"shape {list(spec.shape[1:])}"
        ) from None
    if spec.datatype == "BYTES":
        return strings_array(spec.name, array.astype(object))
    if spec.datatype == "BOOL":
        if array.dtype.kind != "b":
            raise InvalidInput(f"'instances': input '{spec.name}' takes true/false values")
        return array
    if array.dtype.kind not in "iuf" or has_bool(values):
        raise InvalidInput(f"'instances': input '{spec.name}' takes numbers ({spec.datatype})")
    if array.dtype.kind == "f" and np.dtype(V2_TO_NUMPY[spec.datatype]).kind in "iu":
        raise InvalidInput(
            f"'instances': input '{spec.name}' takes integers ({spec.datatype}); found "
            "fractional numbers"
        )
    return _as_graph_type(spec, array)


def _as_graph_type(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    """A numeric `array` in the element type of the graph input `spec`; a value out of its
    range is a 400 (a cast would make it infinity, or wrap it)."""
    target = np.dtype(V2_TO_NUMPY[spec.datatype])
    if array.dtype == target:
        return array
    if target.kind == "f" and array.size:
        finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
        if finite.size and float(np.abs(finite).max()) > float(np.finfo(target).max):
            raise InvalidInput(
                f"input '{spec.name}': a value is out of range for the model, which computes "
                f"in {target.name}"
            )
    elif target.kind in "iu" and array.size:
        info = np.iinfo(target)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise InvalidInput(f"input '{spec.name}': a value is out of range for {spec.datatype}")
    return array.astype(target)


def _csv_numbers(values: Any) -> Any:
    if isinstance(values, list):
        return [_csv_numbers(v) for v in values]
    text = str(values).strip()
    if not text:
        return float("nan")
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            continue
    return values


def _map_rows(value: Any) -> np.ndarray:
    """A ZipMap output (a list of {class: probability} per row) as one JSON object per row,
    keys as text as JSON has them."""
    rows = [json.dumps({str(k): float(p) for k, p in row.items()}) for row in value]
    return np.asarray(rows, dtype=object).reshape(len(rows))


def _records(answers: dict[str, Any], rows: int) -> list[dict[str, Any]]:
    """One record per table row: each output's value for that row (a one-value row as that
    value, as MLflow's onnx pyfunc flattens an output into a column)."""
    columns: dict[str, list[Any]] = {}
    for name, values in answers.items():
        if not isinstance(values, list) or len(values) != rows:
            raise InvalidInput(
                f"output '{name}' does not hold one value per row of the table; send the "
                'inputs as tensors ({"inputs": {...}}) to have the outputs as they are'
            )
        columns[name] = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in values]
    return [{name: column[i] for name, column in columns.items()} for i in range(rows)]
