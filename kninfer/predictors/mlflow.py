"""MLflow predictor: any MLflow model directory (an `MLmodel` file), loaded as a pyfunc.

Model directory: the directory `mlflow.<flavor>.save_model(..., path=DIR)` writes (or a run's
`artifacts/<name>` folder), i.e. `DIR/MLmodel` plus the flavor's files; a directory holding exactly
one such folder also works (what `--storage-uri` of a tarball often unpacks to).

V2 metadata comes from the model signature (MLflow "Model Signature" docs):
- column-based signature: one V2 input per column, shape [-1], datatype mapped from the MLflow type
  (`MLFLOW_TO_V2`); a request may also send a column as [-1, 1]. Named inputs become a pandas
  DataFrame with those columns and MLflow enforces the schema; its errors become 400s naming the
  column.
- tensor-based signature: one V2 input per tensor spec with its dtype and shape; a single tensor
  reaches the model as a numpy array, several as a dict of arrays.
- outputs likewise from the output schema; without one they are read off the warm-up prediction;
  without that they are whatever the model returns (and the metadata says so).
- no signature at all: the model still serves. Inputs are not checked against anything; one input
  is passed as an array, several equally long 1-D inputs as a DataFrame. The metadata carries
  `parameters.signature = "none"` so a client can tell "no inputs" from "inputs not declared".

V1 (`/v1/models/NAME:predict`) takes `instances` as rows (lists, in column order) or records (dicts
keyed by column), and also MLflow's own scoring-server forms `dataframe_split`
(`{"columns": [...], "data": [[...]]}`) and `dataframe_records`, so a client of `mlflow models
serve` can switch to kninfer without changing its payload.

Trust model: an MLflow model is code (cloudpickle for python_function models and most flavors);
only serve model directories from a source you trust.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kninfer.errors import InvalidInput, KninferError, ModelLoadError
from kninfer.predictors.base import EMPTY_BATCH, Arrays, Predictor, model_rejected, result_array
from kninfer.predictors.columns import column_array, tabular_arrays
from kninfer.protocol.tensor import (
    NUMERIC_DATATYPES,
    NUMPY_TO_V2,
    V2_TO_NUMPY,
    TensorSpec,
    v2_datatype_of,
)
from kninfer.protocol.v2 import input_array, parameter_value

if TYPE_CHECKING:
    from kserve import InferRequest, InferResponse

logger = logging.getLogger("kninfer")

# mlflow.types.DataType -> V2 datatype (Open Inference Protocol, "Tensor Data Types").
# datetime travels as an ISO-8601 string; MLflow's Array/Object/Map column types as JSON strings.
MLFLOW_TO_V2: dict[str, str] = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
NUMERIC = tuple(sorted(NUMERIC_DATATYPES - {"BOOL"}))
DEFAULT_OUTPUT = "predict"
# MLflow's schema-enforcement message is "Failed to enforce schema of data '<the whole
# DataFrame>' with schema '<schema>'. Error: <reason>"; only the reason goes back to the client.
_REASON = re.compile(r"Error:\s*(?P<reason>.*)\Z", re.DOTALL)
# A valid "zero" per text-carried column type for the warm-up row (b"" is not a date or JSON).
_ZERO_TEXT = {"datetime": b"1970-01-01T00:00:00", "array": b"[]", "object": b"{}", "map": b"{}",
              "any": b"null"}
_CLIENT_ERROR_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"}


def find_mlmodel_dir(model_dir: Path) -> Path:
    if (model_dir / "MLmodel").is_file():
        return model_dir
    nested = sorted(p for p in model_dir.iterdir() if (p / "MLmodel").is_file()) \
        if model_dir.is_dir() else []
    if len(nested) == 1:
        return nested[0]
    if nested:
        names = ", ".join(p.name for p in nested)
        raise ModelLoadError(f"several MLflow models in {model_dir} ({names}); point at one")
    raise ModelLoadError(
        f"no MLflow model in {model_dir}: expected an MLmodel file (the directory "
        "mlflow.<flavor>.save_model writes)"
    )


def _type_name(mlflow_type: Any) -> str:
    """`double`, `string`, ... for an mlflow.types.DataType; `array`, `object`, `map`, `any` for
    the structured column types (which travel as JSON strings)."""
    from mlflow.types import DataType

    if isinstance(mlflow_type, DataType):
        return mlflow_type.name
    return type(mlflow_type).__name__.lower().removesuffix("type")


def _column_spec(position: int, col: Any) -> TensorSpec:
    name = col.name if col.name is not None else _default_name("input", position)
    datatype = MLFLOW_TO_V2.get(_type_name(col.type), "BYTES")  # Array/Object/Map/Any: JSON strings
    if datatype in NUMERIC:
        # MLflow decides which numeric casts are safe (int32 -> double yes, double -> long no).
        accepts: tuple[str, ...] = (datatype, *[d for d in NUMERIC if d != datatype])
    else:
        accepts = (datatype,)
    return TensorSpec(name, datatype, (-1,), accepts=accepts, optional=not col.required)


def _default_name(kind: str, position: int) -> str:
    """kninfer's usual names for unnamed MLflow columns/tensors: input-0, input-1 / predict."""
    if kind == "input":
        return f"input-{position}"
    return DEFAULT_OUTPUT if position == 0 else f"{DEFAULT_OUTPUT}-{position}"


def _tensor_spec(position: int, spec: Any, kind: str) -> TensorSpec:
    name = spec.name if spec.name is not None else _default_name(kind, position)
    dtype = np.dtype(spec.type)
    datatype = "BYTES" if dtype.kind in "OUS" else NUMPY_TO_V2.get(dtype, "BYTES")
    shape = tuple(int(d) for d in spec.shape) or (-1,)
    # Datatypes numpy casts to the declared one without loss (FP32 -> FP64, INT32 -> INT64) are
    # accepted and cast before MLflow's tensor check, which wants the exact dtype.
    accepts = (datatype, *[d for d in NUMERIC if d != datatype and datatype in NUMERIC
                           and np.can_cast(V2_TO_NUMPY[d], V2_TO_NUMPY[datatype], "safe")])
    return TensorSpec(name, datatype, shape, accepts=accepts,
                      optional=not getattr(spec, "required", True))


def _mlflow_reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    match = _REASON.search(message)
    reason = (match.group("reason") if match else message).strip()
    return reason if len(reason) <= 1000 else reason[:1000] + "..."


def _is_client_error(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in _CLIENT_ERROR_CODES


class MlflowPredictor(Predictor):
    family = "mlflow"
    batching_by_default = False

    pyfunc: Any = None
    mlmodel_dir: Path
    # "column", "tensor" or "none": the kind of input signature the model was saved with.
    signature_kind = "none"
    # Whether the outputs are known before a prediction (from the output schema or warm-up).
    outputs_known = False

    def load_model(self) -> None:
        path = find_mlmodel_dir(self.model_dir)
        import mlflow.pyfunc

        try:
            self.pyfunc = mlflow.pyfunc.load_model(str(path))
        except Exception as exc:
            raise ModelLoadError(
                f"could not load the MLflow model in {path}: {type(exc).__name__}: {exc}"
            ) from exc
        self.mlmodel_dir = path
        self._read_inputs(self.pyfunc.metadata.get_input_schema())
        self._read_outputs(self.pyfunc.metadata.get_output_schema())
        params = self.pyfunc.metadata.get_params_schema()
        self.param_names = [p.name for p in params.params] if params is not None else []
        # What V2 metadata states of them (MLflow "Model Signature", ParamSchema).
        self.params_schema = [
            {"name": p.name, "type": _type_name(p.dtype), "default": _jsonable_default(p.default),
             **({"shape": list(p.shape)} if p.shape else {})}
            for p in (params.params if params is not None else [])
        ]

    def _read_inputs(self, schema: Any) -> None:
        # Per column: its MLflow type name (how to convert the V2 values) and its DataFrame key
        # (the column name, or its position for an unnamed column).
        self._column_types: dict[str, str] = {}
        self._column_keys: dict[str, str | int] = {}
        self.inputs = []
        if schema is None:
            self.signature_kind = "none"
        elif schema.is_tensor_spec():
            self.signature_kind = "tensor"
            self.inputs = [_tensor_spec(i, t, "input") for i, t in enumerate(schema.inputs)]
        else:
            self.signature_kind = "column"
            for i, col in enumerate(schema.inputs):
                spec = _column_spec(i, col)
                self.inputs.append(spec)
                self._column_types[spec.name] = _type_name(col.type)
                self._column_keys[spec.name] = col.name if col.name is not None else i

    def _read_outputs(self, schema: Any) -> None:
        self.outputs = []
        self.outputs_known = schema is not None
        if schema is None:
            return
        if schema.is_tensor_spec():
            self.outputs = [_tensor_spec(i, t, "output") for i, t in enumerate(schema.inputs)]
            return
        self.outputs = [
            TensorSpec(col.name if col.name is not None else _default_name("output", i),
                       MLFLOW_TO_V2.get(_type_name(col.type), "BYTES"), (-1,))
            for i, col in enumerate(schema.inputs)
        ]

    # ---- metadata --------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        doc = super().metadata()
        parameters: dict[str, Any] = {"signature": self.signature_kind}
        if self.signature_kind == "none":
            parameters["note"] = (
                "the MLflow model has no signature: inputs are not checked; send one tensor "
                "(passed as an array) or named 1-D columns (passed as a DataFrame)"
            )
        if not self.outputs_known:
            parameters["outputs"] = "unknown until the model runs: the response names them"
        if self.params_schema:
            parameters["params"] = self.params_schema
        doc["parameters"] = parameters
        return doc

    # ---- warm-up ---------------------------------------------------------------------------

    def warmup_inputs(self) -> Arrays:
        """Warm up with the model's saved input example, else zeros; read the outputs off it.

        The warm run happens here (and {} is returned) so that a model that cannot predict on
        zeros still serves: a failed warm-up is logged, not fatal. The base class times this call
        as the warm-up.
        """
        arrays = self._example_arrays()
        if arrays is None:
            if not self.inputs:
                return {}
            arrays = super().warmup_inputs()
            for name, kind in self._column_types.items():
                if name in arrays and kind in _ZERO_TEXT:
                    arrays[name] = np.full(arrays[name].shape, _ZERO_TEXT[kind], dtype=object)
        try:
            result = self.run(arrays, [])
        except Exception as exc:
            logger.warning("MLflow model '%s': warm-up prediction failed, serving anyway: %s",
                           self.name, _mlflow_reason(exc))
            return {}
        if not self.outputs_known:
            self.outputs = [
                TensorSpec(name, v2_datatype_of(array), (-1, *array.shape[1:]))
                for name, array in result.items()
            ]
            self.outputs_known = True
        return {}

    def _example_arrays(self) -> Arrays | None:
        try:
            example = self.pyfunc.metadata.load_input_example(str(self.mlmodel_dir))
        except Exception:  # no example, or one that does not load: fall back to zeros
            return None
        if example is None:
            return None
        import pandas as pd

        if isinstance(example, pd.DataFrame) and self.signature_kind != "tensor":
            return {str(c): example[c].to_numpy() for c in example.columns}
        if isinstance(example, np.ndarray) and len(self.inputs) <= 1:
            return {self.inputs[0].name if self.inputs else "input-0": example}
        if isinstance(example, dict):
            return {str(k): np.asarray(v) for k, v in example.items()}
        return None

    # ---- V2 --------------------------------------------------------------------------------

    def decode(self, request: InferRequest) -> Arrays:
        if self.signature_kind == "none":
            unchecked = {i.name: input_array(i) for i in request.inputs}
            self.check_arrays(unchecked)
            return unchecked
        return super().decode(request)

    def inputs_description(self) -> str:
        if self.signature_kind == "column":
            return "the columns " + super().inputs_description()
        return super().inputs_description()

    def shape_input(self, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
        if self.signature_kind != "column":
            return array
        # Column signature: a column may come as [-1] or [-1, 1].
        if array.ndim == 2 and array.shape[1] == 1:
            array = array.reshape(-1)
        if array.ndim != 1:
            raise InvalidInput(
                f"input '{spec.name}' is a column: shape must be [-1] or [-1, 1]; "
                f"got {list(array.shape)}"
            )
        return array

    def validate_arrays(self, arrays: Arrays) -> None:
        if self.signature_kind == "tensor":
            return
        lengths = {name: len(a) for name, a in arrays.items() if a.ndim == 1}
        if self.signature_kind == "column" and len(set(lengths.values())) > 1:
            detail = ", ".join(f"'{n}' has {k}" for n, k in lengths.items())
            raise InvalidInput(f"columns must have the same number of rows: {detail}")

    def requested_outputs(self, request: InferRequest) -> list[str]:
        if self.outputs_known:
            return super().requested_outputs(request)
        # Outputs unknown until the model runs: every output it returns (or those asked for).
        return [o.name for o in request.request_outputs or ()]

    def request_params(self, request: InferRequest) -> dict[str, Any] | None:
        """The model's params (its signature's ParamSchema) named in the V2 request
        `parameters`; other keys there (V2's `binary_data_output`, `content_type`, ...) are not
        params. MLflow checks the values' types and fills the defaults of the rest."""
        given = request.parameters or {}
        params = {name: parameter_value(given[name]) for name in self.param_names
                  if name in given}
        empty = [name for name, value in params.items() if value is None]
        if empty:
            raise InvalidInput(f"parameter(s) {', '.join(empty)} hold no value")
        return params or None

    def _v1_params(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """`params` of a V1 body, as MLflow's own scoring server takes them."""
        params = payload.get("params")
        if params is None:
            return None
        if not isinstance(params, dict):
            raise InvalidInput("'params' must be a JSON object")
        unknown = [name for name in params if name not in self.param_names]
        if unknown:
            takes = ", ".join(self.param_names) or "no params"
            raise InvalidInput(
                f"unknown param(s) {', '.join(unknown)}; model '{self.name}' takes {takes}"
            )
        return params or None

    async def predict(  # type: ignore[override]
        self, payload: InferRequest | dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> InferResponse | dict[str, Any]:
        if isinstance(payload, dict):
            return await self._predict_v1(payload)
        return await super().predict(payload, headers)

    # ---- V1 --------------------------------------------------------------------------------

    async def _predict_v1(self, payload: dict[str, Any]) -> dict[str, Any]:
        from kninfer.errors import ModelNotReady

        if not self.ready:
            raise ModelNotReady(self.name)
        arrays = self._v1_arrays(payload)
        self.check_arrays(arrays)
        names = [s.name for s in self.outputs if not s.optional] if self.outputs_known else []
        result = await self.execute(arrays, names, self._v1_params(payload))
        if len(result) == 1:
            (only,) = result.values()
            return {"predictions": _jsonable(only)}
        # Several outputs: one record per row, as MLflow's scoring server answers a DataFrame.
        columns = {name: _jsonable(array) for name, array in result.items()}
        rows = len(next(iter(columns.values())))
        return {"predictions": [{n: v[i] for n, v in columns.items()} for i in range(rows)]}

    def _v1_arrays(self, payload: dict[str, Any]) -> Arrays:
        if self.signature_kind != "tensor":
            arrays = tabular_arrays(payload, self.inputs, self.name)
            if arrays is not None:
                return arrays
        instances = payload.get("instances", payload.get("inputs"))
        if not isinstance(instances, list):
            raise InvalidInput(
                'request needs "instances" (a list of rows or records), "dataframe_split" or '
                '"dataframe_records"'
            )
        if not instances:
            raise InvalidInput(f"'instances' is empty; {EMPTY_BATCH}")
        if self.signature_kind == "tensor":
            arrays = self.v1_inputs(instances)
            spec = self.inputs[0]
            spec.check(arrays[spec.name], spec.datatype)  # rows of the wrong width are a 400
            return arrays
        try:
            return {"input-0": column_array("input-0", instances)}
        except InvalidInput:
            raise InvalidInput("'instances' must be a list of rows of equal length") from None

    # ---- run -------------------------------------------------------------------------------

    def run(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        return self.run_with_params(inputs, outputs, None)

    def run_with_params(self, inputs: Arrays, outputs: Sequence[str],
                        params: Mapping[str, Any] | None) -> Arrays:
        data = self._model_input(inputs)
        try:
            prediction = self.pyfunc.predict(data, params=dict(params) if params else None)
        except KninferError:
            raise
        except Exception as exc:
            if _is_client_error(exc):
                raise InvalidInput(
                    f"input does not match the model's MLflow signature: {_mlflow_reason(exc)}"
                ) from None
            if isinstance(exc, ValueError):
                # Python's "right type, wrong value": the model refused these values (sklearn's
                # "X has 3 features, but ... is expecting 4", an unknown category). Without a
                # signature this is the only check there is; a 500 would invite useless retries.
                raise model_rejected(self.name, exc) from None
            raise
        result = self._result_arrays(prediction)
        if not outputs:
            return result
        missing = [n for n in outputs if n not in result]
        if missing:
            raise KninferError(
                f"model '{self.name}' returned {', '.join(result)} but its signature names "
                f"{', '.join(missing)}"
            )
        return {name: result[name] for name in outputs}

    def _model_input(self, inputs: Arrays) -> Any:
        import pandas as pd

        if self.signature_kind == "column":
            columns = {}
            for name, array in inputs.items():
                columns[self._column_keys.get(name, name)] = self._column_values(name, array)
            return pd.DataFrame(columns)
        if self.signature_kind == "tensor":
            # MLflow takes one tensor as an array and several (always named) as a dict.
            specs = {s.name: s for s in self.inputs}
            cast = {name: _strings(_cast(a, specs[name])) for name, a in inputs.items()}
            if len(self.inputs) == 1:
                (array,) = cast.values()
                return array
            return cast
        # No signature: one input is an array; several equally long columns a DataFrame.
        if len(inputs) == 1:
            (array,) = inputs.values()
            return _strings(array)
        if all(a.ndim == 1 for a in inputs.values()) and \
                len({len(a) for a in inputs.values()}) == 1:
            return pd.DataFrame({n: _strings(a) for n, a in inputs.items()})
        return {name: _strings(a) for name, a in inputs.items()}

    def _column_values(self, name: str, array: np.ndarray) -> Any:
        kind = self._column_types.get(name)
        if kind == "binary":
            return list(array)
        values = _strings(array)
        if kind == "datetime":
            import pandas as pd

            try:
                return pd.to_datetime(values, format="ISO8601")
            except (ValueError, TypeError) as exc:
                reason = str(exc).splitlines()[0].split(". You might")[0]
                raise InvalidInput(
                    f"column '{name}' must hold ISO-8601 datetimes ({reason})") from None
        if kind not in MLFLOW_TO_V2 and values.dtype == object:
            parsed = []
            for value in values:
                try:
                    parsed.append(json.loads(value) if isinstance(value, str) else value)
                except json.JSONDecodeError:
                    raise InvalidInput(
                        f"column '{name}' holds {kind} values: send each as a JSON string"
                    ) from None
            return parsed
        return values

    def _result_arrays(self, prediction: Any) -> Arrays:
        import pandas as pd

        named: list[tuple[str | None, Any]]
        if isinstance(prediction, pd.DataFrame):
            named = [(str(c), prediction[c].to_numpy()) for c in prediction.columns]
        elif isinstance(prediction, pd.Series):
            named = [(None, prediction.to_numpy())]
        elif isinstance(prediction, dict):
            named = [(str(k), v) for k, v in prediction.items()]
        else:
            named = [(None, prediction)]
        declared = [s.name for s in self.outputs]
        if declared and not all(n in declared for n, _ in named if n is not None) or \
                any(n is None for n, _ in named):
            # Unnamed (or differently named) results map onto the declared outputs by position.
            if declared and len(declared) == len(named):
                named = [(d, v) for d, (_, v) in zip(declared, named, strict=True)]
            else:
                named = [(n if n is not None else _default_name("output", i), v)
                         for i, (n, v) in enumerate(named)]
        specs = {s.name: s for s in self.outputs}
        result: Arrays = {}
        for name, value in named:
            assert name is not None
            array = _output_array(name, value)
            spec = specs.get(name)
            if spec is not None and spec.datatype in NUMERIC_DATATYPES and \
                    array.dtype.kind in "biuf":
                array = array.astype(V2_TO_NUMPY[spec.datatype], copy=False)
            result[name] = array
        return result


def _cast(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.datatype in NUMERIC_DATATYPES and array.dtype != V2_TO_NUMPY[spec.datatype]:
        return array.astype(V2_TO_NUMPY[spec.datatype])
    return array


def _jsonable_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return value
    return str(value)  # datetime defaults: ISO text


def _strings(array: np.ndarray) -> np.ndarray:
    """V2 BYTES arrive as Python bytes; MLflow string columns and models want str."""
    if array.dtype == object and array.size and isinstance(array.flat[0], bytes):
        out = np.empty(array.shape, dtype=object)
        try:
            out.flat[:] = [v.decode() if isinstance(v, bytes) else v for v in array.flat]
        except UnicodeDecodeError:
            raise InvalidInput("a BYTES value is not UTF-8 text") from None
        return out
    return array


def _output_array(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object and array.size and isinstance(array.flat[0], (list, np.ndarray)):
        try:
            array = np.asarray(array.tolist())
        except ValueError:
            pass
    if array.dtype == object and array.size and not all(
            isinstance(v, (str, bytes)) for v in array.flat):
        # Mixed or structured values (dicts, None): JSON strings, never a 500 for the client.
        array = np.asarray([v if isinstance(v, (str, bytes)) else json.dumps(v, default=str)
                            for v in array.flat], dtype=object).reshape(array.shape)
    if array.dtype.kind == "M":
        array = np.datetime_as_string(array).astype(object)
    return result_array(name, array)


def _jsonable(array: np.ndarray) -> list[Any]:
    if array.dtype == object:
        return [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]
    values: list[Any] = array.tolist()
    return values
