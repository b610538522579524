"""An MLflow model signature, read once: one strategy object per kind of input schema.

MLflow "Model Signature" docs: a signature's inputs are column-based (a DataFrame schema),
tensor-based (numpy arrays with dtype and shape), or absent (a model saved without one). Which
one is decided once, in `read_inputs`; the predictor (kninfer.predictors.mlflow) then asks the
`Signature` it got, never the kind:

- `ColumnSignature`: one V2 input per column, shape [-1], datatype mapped from the MLflow type
  (`MLFLOW_TO_V2`); a column may also come as [-1, 1]; the inputs reach the model as a pandas
  DataFrame, whose schema MLflow enforces.
- `TensorSignature`: one V2 input per tensor spec with its dtype and shape; a single tensor
  reaches the model as a numpy array, several as a dict of arrays.
- `NoSignature`: inputs are not checked against anything; one input is passed as an array,
  several equally long 1-D inputs as a DataFrame.

Outputs come from the output schema (`read_outputs`), and the params a model takes from its
ParamSchema (`Params`). mlflow and pandas are imported only when a model's signature is read or
its inputs are converted, never when this module is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kninfer.errors import InvalidInput
from kninfer.predictors.base import Arrays, Predictor
from kninfer.protocol.tables import column_array, tabular_arrays
from kninfer.protocol.tensor import NUMERIC_DATATYPES, NUMPY_TO_V2, V2_TO_NUMPY, TensorSpec
from kninfer.protocol.v1 import v1_rows
from kninfer.protocol.v2 import input_array, parameter_value

if TYPE_CHECKING:
    from kserve import InferRequest

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
# A valid "zero" per text-carried column type for the warm-up row (b"" is not a date or JSON).
_ZERO_TEXT = {
    "datetime": b"1970-01-01T00:00:00",
    "array": b"[]",
    "object": b"{}",
    "map": b"{}",
    "any": b"null",
}


def type_name(mlflow_type: Any) -> str:
    """`double`, `string`, ... for an mlflow.types.DataType; `array`, `object`, `map`, `any` for
    the structured column types (which travel as JSON strings)."""
    from mlflow.types import DataType

    if isinstance(mlflow_type, DataType):
        return mlflow_type.name
    return type(mlflow_type).__name__.lower().removesuffix("type")


def input_name(position: int) -> str:
    """kninfer's usual name for an unnamed MLflow input column/tensor: input-0, input-1, ..."""
    return f"input-{position}"


def output_name(position: int) -> str:
    """kninfer's usual name for an unnamed MLflow output: predict, predict-1, ..."""
    return DEFAULT_OUTPUT if position == 0 else f"{DEFAULT_OUTPUT}-{position}"


def _column_spec(position: int, col: Any) -> TensorSpec:
    name = col.name if col.name is not None else input_name(position)
    datatype = MLFLOW_TO_V2.get(type_name(col.type), "BYTES")  # Array/Object/Map/Any: JSON strings
    if datatype in NUMERIC:
        # MLflow decides which numeric casts are safe (int32 -> double yes, double -> long no).
        accepts: tuple[str, ...] = (datatype, *[d for d in NUMERIC if d != datatype])
    else:
        accepts = (datatype,)
    return TensorSpec(name, datatype, (-1,), accepts=accepts, optional=not col.required)


def _tensor_spec(spec: Any, default_name: str) -> TensorSpec:
    name = spec.name if spec.name is not None else default_name
    dtype = np.dtype(spec.type)
    datatype = "BYTES" if dtype.kind in "OUS" else NUMPY_TO_V2.get(dtype, "BYTES")
    shape = tuple(int(d) for d in spec.shape) or (-1,)
    # Datatypes numpy casts to the declared one without loss (FP32 -> FP64, INT32 -> INT64) are
    # accepted and cast before MLflow's tensor check, which wants the exact dtype.
    accepts = (
        datatype,
        *[
            d
            for d in NUMERIC
            if d != datatype
            and datatype in NUMERIC
            and np.can_cast(V2_TO_NUMPY[d], V2_TO_NUMPY[datatype], "safe")
        ],
    )
    return TensorSpec(
        name, datatype, shape, accepts=accepts, optional=not getattr(spec, "required", True)
    )


def _instances(payload: dict[str, Any]) -> list[Any]:
    """The V1 `instances` (or `inputs`) list, refused when missing or empty."""
    return v1_rows(payload).instance_list(
        'request needs "instances" (a list of rows or records), "dataframe_split" or '
        '"dataframe_records"'
    )


# ---- one strategy per kind of input signature --------------------------------------------------


class Signature:
    """What the MLflow predictor needs of a model's input signature. One subclass per kind;
    the defaults here are what the kinds share."""

    kind: ClassVar[str]  # V2 metadata `parameters.signature`: "column", "tensor" or "none"

    def __init__(self, inputs: list[TensorSpec]) -> None:
        self.inputs = inputs  # the V2 inputs the signature declares

    @classmethod
    def outputs_of(cls, schema: Any) -> list[TensorSpec] | None:
        """The V2 outputs an output schema of this kind declares; None: not declared."""
        raise NotImplementedError

    def parameters(self) -> dict[str, Any]:
        """What V2 metadata `parameters` says of the signature."""
        return {"signature": self.kind}

    def describe_inputs(self, names: str) -> str:
        """How an error message names the declared inputs."""
        return names

    def shape_input(self, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
        return array

    def validate_arrays(self, arrays: Arrays) -> None:
        """Checks across the inputs of one request (raise InvalidInput)."""

    def warmup_arrays(self, arrays: Arrays) -> Arrays:
        """The zeros row of the declared inputs, made valid for the model."""
        return arrays

    def example_arrays(self, example: Any) -> Arrays | None:
        """The arrays of the model's saved input example; None: none usable."""
        if isinstance(example, np.ndarray) and len(self.inputs) <= 1:
            return {self.inputs[0].name if self.inputs else input_name(0): example}
        if isinstance(example, dict):
            return {str(k): np.asarray(v) for k, v in example.items()}
        return None

    def decode(self, predictor: Predictor, request: InferRequest) -> Arrays:
        """The V2 request's arrays, each checked against its declared input (Predictor.decode)."""
        return Predictor.decode(predictor, request)

    def v1_arrays(self, predictor: Predictor, payload: dict[str, Any]) -> Arrays:
        """The arrays of a V1 body."""
        raise NotImplementedError

    def model_input(self, inputs: Arrays) -> Any:
        """What `pyfunc.predict` is given for checked inputs."""
        raise NotImplementedError


class _TabularSignature(Signature):
    """Column-based or none: a V1 body may be a table, and an input example a DataFrame."""

    def example_arrays(self, example: Any) -> Arrays | None:
        import pandas as pd

        if isinstance(example, pd.DataFrame):
            return {str(c): example[c].to_numpy() for c in example.columns}
        return super().example_arrays(example)

    def v1_arrays(self, predictor: Predictor, payload: dict[str, Any]) -> Arrays:
        arrays = tabular_arrays(payload, self.inputs, predictor.name)
        if arrays is not None:
            return arrays
        instances = _instances(payload)
        try:
            return {input_name(0): column_array(input_name(0), instances)}
        except InvalidInput:
            raise InvalidInput("'instances' must be a list of rows of equal length") from None


class ColumnSignature(_TabularSignature):
    """A column-based signature: the inputs are the columns of a DataFrame."""

    kind = "column"

    def __init__(
        self, inputs: list[TensorSpec], types: dict[str, str], keys: dict[str, str | int]
    ) -> None:
        super().__init__(inputs)
        # Per column: its MLflow type name (how to convert the V2 values) and its DataFrame key
        # (the column name, or its position for an unnamed column).
        self.types = types
        self.keys = keys

    @classmethod
    def read(cls, schema: Any) -> ColumnSignature:
        inputs: list[TensorSpec] = []
        types: dict[str, str] = {}
        keys: dict[str, str | int] = {}
        for i, col in enumerate(schema.inputs):
            spec = _column_spec(i, col)
            inputs.append(spec)
            types[spec.name] = type_name(col.type)
            keys[spec.name] = col.name if col.name is not None else i
        return cls(inputs, types, keys)

    @classmethod
    def outputs_of(cls, schema: Any) -> list[TensorSpec] | None:
        return [
            TensorSpec(
                col.name if col.name is not None else output_name(i),
                MLFLOW_TO_V2.get(type_name(col.type), "BYTES"),
                (-1,),
            )
            for i, col in enumerate(schema.inputs)
        ]

    def describe_inputs(self, names: str) -> str:
        return "the columns " + names

    def shape_input(self, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
        # A column may come as [-1] or [-1, 1].
        if array.ndim == 2 and array.shape[1] == 1:
            array = array.reshape(-1)
        if array.ndim != 1:
            raise InvalidInput(
                f"input '{spec.name}' is a column: shape must be [-1] or [-1, 1]; "
                f"got {list(array.shape)}"
            )
        return array

    def validate_arrays(self, arrays: Arrays) -> None:
        lengths = {name: len(a) for name, a in arrays.items() if a.ndim == 1}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"'{n}' has {k}" for n, k in lengths.items())
            raise InvalidInput(f"columns must have the same number of rows: {detail}")

    def warmup_arrays(self, arrays: Arrays) -> Arrays:
        for name, column_type in self.types.items():
            if name in arrays and column_type in _ZERO_TEXT:
                arrays[name] = np.full(arrays[name].shape, _ZERO_TEXT[column_type], dtype=object)
        return arrays

    def model_input(self, inputs: Arrays) -> Any:
        import pandas as pd

        columns = {}
        for name, array in inputs.items():
            columns[self.keys.get(name, name)] = self._column_values(name, array)
        return pd.DataFrame(columns)

    def _column_values(self, name: str, array: np.ndarray) -> Any:
        column_type = self.types.get(name)
        if column_type == "binary":
            return list(array)
        values = _strings(array)
        if column_type == "datetime":
            import pandas as pd

            try:
                return pd.to_datetime(values, format="ISO8601")
            except (ValueError, TypeError) as exc:
                reason = str(exc).splitlines()[0].split(". You might")[0]
                raise InvalidInput(
                    f"column '{name}' must hold ISO-8601 datetimes ({reason})"
                ) from None
        if column_type not in MLFLOW_TO_V2 and values.dtype == object:
            parsed = []
            for value in values:
                try:
                    parsed.append(json.loads(value) if isinstance(value, str) else value)
                except json.JSONDecodeError:
                    raise InvalidInput(
                        f"column '{name}' holds {column_type} values: send each as a JSON string"
                    ) from None
            return parsed
        return values


class TensorSignature(Signature):
    """A tensor-based signature: the inputs are numpy arrays of a declared dtype and shape."""

    kind = "tensor"

    @classmethod
    def read(cls, schema: Any) -> TensorSignature:
        return cls([_tensor_spec(t, input_name(i)) for i, t in enumerate(schema.inputs)])

    @classmethod
    def outputs_of(cls, schema: Any) -> list[TensorSpec] | None:
        return [_tensor_spec(t, output_name(i)) for i, t in enumerate(schema.inputs)]

    def v1_arrays(self, predictor: Predictor, payload: dict[str, Any]) -> Arrays:
        arrays = predictor.v1_inputs(_instances(payload))
        spec = self.inputs[0]
        spec.check(arrays[spec.name], spec.datatype)  # rows of the wrong width are a 400
        return arrays

    def model_input(self, inputs: Arrays) -> Any:
        # MLflow takes one tensor as an array and several (always named) as a dict.
        specs = {s.name: s for s in self.inputs}
        cast = {name: _strings(_cast(a, specs[name])) for name, a in inputs.items()}
        if len(self.inputs) == 1:
            (array,) = cast.values()
            return array
        return cast


class NoSignature(_TabularSignature):
    """No signature: the model still serves; inputs are not checked against anything."""

    kind = "none"

    @classmethod
    def read(cls, schema: Any) -> NoSignature:
        return cls([])

    @classmethod
    def outputs_of(cls, schema: Any) -> list[TensorSpec] | None:
        return None  # read off the warm-up prediction, else off each response

    def parameters(self) -> dict[str, Any]:
        # So a client can tell "no inputs" from "inputs not declared".
        return {
            **super().parameters(),
            "note": (
                "the MLflow model has no signature: inputs are not checked; send one tensor "
                "(passed as an array) or named 1-D columns (passed as a DataFrame)"
            ),
        }

    def decode(self, predictor: Predictor, request: InferRequest) -> Arrays:
        unchecked = {i.name: input_array(i) for i in request.inputs}
        predictor.check_arrays(unchecked)
        return unchecked

    def model_input(self, inputs: Arrays) -> Any:
        # One input is an array; several equally long columns a DataFrame.
        if len(inputs) == 1:
            (array,) = inputs.values()
            return _strings(array)
        if (
            all(a.ndim == 1 for a in inputs.values())
            and len({len(a) for a in inputs.values()}) == 1
        ):
            import pandas as pd

            return pd.DataFrame({n: _strings(a) for n, a in inputs.items()})
        return {name: _strings(a) for name, a in inputs.items()}


def _kind_of(schema: Any) -> type[ColumnSignature | TensorSignature | NoSignature]:
    """The one place a schema's kind is decided (mlflow.types.Schema, or None)."""
    if schema is None:
        return NoSignature
    return TensorSignature if schema.is_tensor_spec() else ColumnSignature


def read_inputs(schema: Any) -> Signature:
    """The strategy for a model's input schema (`metadata.get_input_schema()`)."""
    return _kind_of(schema).read(schema)


def read_outputs(schema: Any) -> list[TensorSpec] | None:
    """The V2 outputs of a model's output schema; None without one (known once it runs)."""
    return _kind_of(schema).outputs_of(schema)


# ---- params --------------------------------------------------------------------------------


class Params:
    """The params a model takes: its signature's ParamSchema (MLflow "Model Signature")."""

    def __init__(self, schema: Any) -> None:
        params = schema.params if schema is not None else []
        self.names: list[str] = [p.name for p in params]
        # What V2 metadata states of them.
        self.metadata: list[dict[str, Any]] = [
            {
                "name": p.name,
                "type": type_name(p.dtype),
                "default": _jsonable_default(p.default),
                **({"shape": list(p.shape)} if p.shape else {}),
            }
            for p in params
        ]

    def from_v2(self, given: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The params named in the V2 request `parameters`; other keys there (V2's
        `binary_data_output`, `content_type`, ...) are not params. MLflow checks the values'
        types and fills the defaults of the rest."""
        given = given or {}
        params = {name: parameter_value(given[name]) for name in self.names if name in given}
        empty = [name for name, value in params.items() if value is None]
        if empty:
            raise InvalidInput(f"parameter(s) {', '.join(empty)} hold no value")
        return params or None

    def from_v1(self, payload: dict[str, Any], model: str) -> dict[str, Any] | None:
        """`params` of a V1 body, as MLflow's own scoring server takes them."""
        params = payload.get("params")
        if params is None:
            return None
        if not isinstance(params, dict):
            raise InvalidInput("'params' must be a JSON object")
        unknown = [name for name in params if name not in self.names]
        if unknown:
            takes = ", ".join(self.names) or "no params"
            raise InvalidInput(
                f"unknown param(s) {', '.join(unknown)}; model '{model}' takes {takes}"
            )
        return params or None


# ---- value conversion ----------------------------------------------------------------------


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
