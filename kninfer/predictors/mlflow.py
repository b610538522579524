"""MLflow predictor: any MLflow model directory (an `MLmodel` file), loaded as a pyfunc.

Model directory: the directory `mlflow.<flavor>.save_model(..., path=DIR)` writes (or a run's
`artifacts/<name>` folder), i.e. `DIR/MLmodel` plus the flavor's files; a directory holding exactly
one such folder also works (what `--storage-uri` of a tarball often unpacks to).

V2 metadata comes from the model signature (MLflow "Model Signature" docs), read once into one
strategy per kind (kninfer.predictors.mlflow_signature), which this predictor delegates to:
- column-based signature: one V2 input per column, shape [-1], datatype mapped from the MLflow type
  (`mlflow_signature.MLFLOW_TO_V2`); a request may also send a column as [-1, 1]. Named inputs
  become a pandas DataFrame with those columns and MLflow enforces the schema; its errors become
  400s naming the column.
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
from kninfer.predictors.base import Arrays, Predictor, model_rejected, result_array
from kninfer.predictors.mlflow_signature import (
    NoSignature,
    Params,
    Signature,
    output_name,
    read_inputs,
    read_outputs,
)
from kninfer.protocol.tensor import NUMERIC_DATATYPES, V2_TO_NUMPY, TensorSpec, v2_datatype_of

if TYPE_CHECKING:
    from kserve import InferRequest, InferResponse

logger = logging.getLogger("kninfer")

# MLflow's schema-enforcement message is "Failed to enforce schema of data '<the whole
# DataFrame>' with schema '<schema>'. Error: <reason>"; only the reason goes back to the client.
_REASON = re.compile(r"Error:\s*(?P<reason>.*)\Z", re.DOTALL)
_CLIENT_ERROR_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"}


def find_mlmodel_dir(model_dir: Path) -> Path:
    if (model_dir / "MLmodel").is_file():
        return model_dir
    nested = (
        sorted(p for p in model_dir.iterdir() if (p / "MLmodel").is_file())
        if model_dir.is_dir()
        else []
    )
    if len(nested) == 1:
        return nested[0]
    if nested:
        names = ", ".join(p.name for p in nested)
        raise ModelLoadError(f"several MLflow models in {model_dir} ({names}); point at one")
    raise ModelLoadError(
        f"no MLflow model in {model_dir}: expected an MLmodel file (the directory "
        "mlflow.<flavor>.save_model writes)"
    )


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
    # The input signature the model was saved with, as a strategy of its kind (column, tensor
    # or none), and the params it takes.
    signature: Signature = NoSignature([])
    params: Params = Params(None)
    # Whether the outputs are known before a prediction (from the output schema or warm-up).
    outputs_known = False

    def load_model(self) -> None:
        path = find_mlmodel_dir(self.model_dir)
        import mlflow.pyfunc

        try:
            self.pyfunc = mlflow.pyfunc.load_model(str(path))
        except ModuleNotFoundError as exc:
            raise ModelLoadError(missing_package(path, exc.name or str(exc))) from exc
        except Exception as exc:
            raise ModelLoadError(
                f"could not load the MLflow model in {path}: {type(exc).__name__}: {exc}"
            ) from exc
        self.mlmodel_dir = path
        metadata = self.pyfunc.metadata
        self.signature = read_inputs(metadata.get_input_schema())
        self.inputs = self.signature.inputs
        outputs = read_outputs(metadata.get_output_schema())
        self.outputs_known = outputs is not None
        self.outputs = outputs if outputs is not None else []
        self.params = Params(metadata.get_params_schema())

    def version_of_model(self) -> str:
        """The MLflow run that logged the model (MLmodel's `run_id`), when it names one: what a
        model registry's version points at. Else the digest of the files."""
        run_id = getattr(self.pyfunc.metadata, "run_id", None)
        return str(run_id) if run_id else super().version_of_model()

    # ---- metadata --------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        doc = super().metadata()
        parameters = self.signature.parameters()
        if not self.outputs_known:
            parameters["outputs"] = "unknown until the model runs: the response names them"
        if self.params.metadata:
            parameters["params"] = self.params.metadata
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
            arrays = self.signature.warmup_arrays(super().warmup_inputs())
        try:
            result = self.run(arrays, [])
        except Exception as exc:
            logger.warning(
                "MLflow model '%s': warm-up prediction failed, serving anyway: %s",
                self.name,
                _mlflow_reason(exc),
            )
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
        return self.signature.example_arrays(example)

    # ---- V2 --------------------------------------------------------------------------------

    def decode(self, request: InferRequest) -> Arrays:
        return self.signature.decode(self, request)

    def inputs_description(self) -> str:
        return self.signature.describe_inputs(super().inputs_description())

    def shape_input(self, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
        return self.signature.shape_input(spec, array)

    def validate_arrays(self, arrays: Arrays) -> None:
        self.signature.validate_arrays(arrays)

    def requested_outputs(self, request: InferRequest) -> list[str]:
        if self.outputs_known:
            return super().requested_outputs(request)
        # Outputs unknown until the model runs: every output it returns (or those asked for).
        return [o.name for o in request.request_outputs or ()]

    def request_params(self, request: InferRequest) -> dict[str, Any] | None:
        """The model's params (its signature's ParamSchema) named in the V2 request
        `parameters` (see Params.from_v2)."""
        return self.params.from_v2(request.parameters)

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
        arrays = self.signature.v1_arrays(self, payload)
        self.check_arrays(arrays)
        names = [s.name for s in self.outputs if not s.optional] if self.outputs_known else []
        result = await self.execute(arrays, names, self.params.from_v1(payload, self.name))
        if len(result) == 1:
            (only,) = result.values()
            return {"predictions": _jsonable(only)}
        # Several outputs: one record per row, as MLflow's scoring server answers a DataFrame.
        columns = {name: _jsonable(array) for name, array in result.items()}
        rows = len(next(iter(columns.values())))
        return {"predictions": [{n: v[i] for n, v in columns.items()} for i in range(rows)]}

    # ---- run -------------------------------------------------------------------------------

    def run(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        return self.run_with_params(inputs, outputs, None)

    def run_with_params(
        self, inputs: Arrays, outputs: Sequence[str], params: Mapping[str, Any] | None
    ) -> Arrays:
        data = self.signature.model_input(inputs)
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
        if (
            declared
            and not all(n in declared for n, _ in named if n is not None)
            or any(n is None for n, _ in named)
        ):
            # Unnamed (or differently named) results map onto the declared outputs by position.
            if declared and len(declared) == len(named):
                named = [(d, v) for d, (_, v) in zip(declared, named, strict=True)]
            else:
                named = [
                    (n if n is not None else output_name(i), v) for i, (n, v) in enumerate(named)
                ]
        specs = {s.name: s for s in self.outputs}
        result: Arrays = {}
        for name, value in named:
            assert name is not None
            array = _output_array(name, value)
            spec = specs.get(name)
            if (
                spec is not None
                and spec.datatype in NUMERIC_DATATYPES
                and array.dtype.kind in "biuf"
            ):
                array = array.astype(V2_TO_NUMPY[spec.datatype], copy=False)
            result[name] = array
        return result


def _output_array(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object and array.size and isinstance(array.flat[0], (list, np.ndarray)):
        try:
            array = np.asarray(array.tolist())
        except ValueError:
            pass
    if (
        array.dtype == object
        and array.size
        and not all(isinstance(v, (str, bytes)) for v in array.flat)
    ):
        # Mixed or structured values (dicts, None): JSON strings, never a 500 for the client.
        array = np.asarray(
            [v if isinstance(v, (str, bytes)) else json.dumps(v, default=str) for v in array.flat],
            dtype=object,
        ).reshape(array.shape)
    if array.dtype.kind == "M":
        array = np.datetime_as_string(array).astype(object)
    return result_array(name, array)


def _jsonable(array: np.ndarray) -> list[Any]:
    if array.dtype == object:
        return [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]
    values: list[Any] = array.tolist()
    return values


# The package a flavor's loader imports, and the kninfer extra that installs it (pyproject.toml).
FLAVOR_EXTRAS = {"lightgbm": "lightgbm", "xgboost": "xgboost"}


def missing_package(path: Path, module: str) -> str:
    """What to say when loading the model at PATH imported MODULE, which is not installed: the
    flavor that needs it and how to install it, here and in an image."""
    top = module.split(".")[0]
    flavor = _loader_module(path)
    install = (
        f"pip install 'kninfer[{FLAVOR_EXTRAS[top]}]'"
        if top in FLAVOR_EXTRAS
        else f"pip install {top}"
    )
    return (
        f"the MLflow model in {path} needs the Python package '{top}'"
        f"{f' (its flavor {flavor} imports it)' if flavor else ''}, which is not installed "
        f"beside kninfer: {install}; for an image, build with --build-arg "
        f"EXTRA_PACKAGES='{top}==VERSION' (docs/mlflow.md#flavors)"
    )


def _loader_module(path: Path) -> str | None:
    """The python_function flavor's `loader_module` in PATH's MLmodel file, if it names one."""
    import yaml

    try:
        doc = yaml.safe_load((path / "MLmodel").read_text())
        loader = doc["flavors"]["python_function"]["loader_module"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None
    return str(loader) if loader else None
