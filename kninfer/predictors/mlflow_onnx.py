"""An MLflow model of the `onnx` flavor, served through ONNX Runtime without MLflow.

`mlflow.onnx.save_model` writes the graph beside an MLmodel file whose `flavors.onnx.data` names
it. `mlflow.pyfunc.load_model` would import MLflow's pyfunc layer (and with it scikit-learn and
scipy) and the `onnx` package only to hand the graph to ONNX Runtime; here the graph goes
straight into a session set up as the compiled scikit-learn models' are
(kninfer.predictors.onnx_runtime: threads from the container's CPU limit, no spinning, graph
optimized once), so the model's cold start is ONNX Runtime's. The served inputs and outputs are
the graph's own: names, datatypes, and shapes with -1 for a free dimension, as MLflow's onnx
pyfunc feeds and names them. `--runtime native` serves it through `mlflow.pyfunc` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kninfer.errors import InvalidInput, ModelLoadError, ModelNotReady
from kninfer.predictors.base import Arrays, Predictor, model_rejected, result_array
from kninfer.predictors.onnx_runtime import (
    ORT_TYPES,
    inference_session,
    quiet_run_options,
    run_error_text,
    run_errors,
)
from kninfer.protocol.tensor import V2_TO_NUMPY, TensorSpec
from kninfer.protocol.v1 import instances_by_input, v1_rows

logger = logging.getLogger("kninfer")

PLATFORM = "kninfer-mlflow-onnx"


def mlmodel(path: Path) -> dict[str, Any]:
    """The MLmodel file of an MLflow model directory, parsed."""
    import yaml

    doc = yaml.safe_load((path / "MLmodel").read_text())
    if not isinstance(doc, dict):
        raise ModelLoadError(f"{path / 'MLmodel'} is not an MLmodel file")
    return doc


def onnx_graph_file(path: Path) -> Path | None:
    """The graph of an MLflow model of the `onnx` flavor (MLmodel `flavors.onnx.data`), None
    for any other flavor."""
    flavor = (mlmodel(path).get("flavors") or {}).get("onnx")
    if not isinstance(flavor, dict) or not flavor.get("data"):
        return None
    return path / str(flavor["data"])


def _spec(arg: Any) -> TensorSpec:
    datatype = ORT_TYPES.get(arg.type)
    if datatype is None:
        raise ModelLoadError(
            f"the graph's tensor '{arg.name}' is {arg.type}, which V2 cannot carry"
        )
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    return TensorSpec(arg.name, datatype, shape)


class OnnxMlflowPredictor(Predictor):
    """An MLflow model of the `onnx` flavor through ONNX Runtime."""

    family = "mlflow"
    # A graph runs no user code: its time grows with the rows alone (Predictor._decide_inline).
    inline_capable = True
    session: Any = None
    run_id: str | None = None

    @property
    def platform(self) -> str:
        return PLATFORM

    def load_model(self) -> None:
        from kninfer.predictors.mlflow import find_mlmodel_dir

        path = find_mlmodel_dir(self.model_dir)
        graph = onnx_graph_file(path)
        if graph is None or not graph.is_file():
            raise ModelLoadError(
                f"the MLflow model in {path} has no ONNX graph (MLmodel flavors.onnx.data): "
                "--runtime onnx serves the onnx flavor only"
            )
        try:
            self.session = inference_session(graph.read_bytes())
        except ModuleNotFoundError as exc:
            raise ModelLoadError(
                f"the MLflow model in {path} is an ONNX graph and needs ONNX Runtime ({exc}): "
                "pip install 'kninfer[onnx]'; for an image, build with --build-arg "
                "EXTRA_PACKAGES='onnxruntime==VERSION' (--runtime native serves it through "
                "mlflow.pyfunc, which needs onnxruntime and onnx too)"
            ) from None
        self.inputs = [_spec(arg) for arg in self.session.get_inputs()]
        self.outputs = [_spec(arg) for arg in self.session.get_outputs()]
        self.run_id = mlmodel(path).get("run_id")
        self._run_options = quiet_run_options()
        self._client_errors = run_errors()
        logger.info("serving the MLflow onnx-flavor graph %s through ONNX Runtime", graph)

    def version_of_model(self) -> str:
        """The MLflow run that logged the model, as the pyfunc path reports it."""
        return str(self.run_id) if self.run_id else super().version_of_model()

    async def predict(  # type: ignore[override]
        self, payload: Any, headers: Mapping[str, str] | None = None
    ) -> Any:
        """As every predictor; a V1 or MLflow scoring request to a graph of several outputs is
        answered with all of them by name, `{"predictions": {name: [...], ...}}`, as MLflow's
        scoring server answers the dict its onnx pyfunc returns."""
        if not isinstance(payload, dict) or len(self.outputs) == 1:
            return await super().predict(payload, headers)
        if not self.ready:
            raise ModelNotReady(self.name)
        if payload.get("params") is not None:
            raise InvalidInput(f"model '{self.name}' takes no params")
        arrays = self.v1_arrays(payload)
        for spec in self.inputs:
            if spec.name in arrays:
                spec.check(arrays[spec.name], spec.datatype)
        self.check_arrays(arrays)
        names = [spec.name for spec in self.outputs]
        result = await self.execute(arrays, names)
        return {"predictions": {name: result[name].tolist() for name in names}}

    def v1_arrays(self, payload: dict[str, Any]) -> Arrays:
        """The tensor forms of MLflow's scoring protocol and KServe V1: `{"inputs": {name:
        tensor, ...}}` (MLflow's named tensors), `{"instances": [{name: value, ...}, ...]}`,
        and rows of a single-input graph. A graph takes tensors, so DataFrame forms are a 400."""
        rows = v1_rows(payload)
        if rows.form != "instances":
            raise InvalidInput(
                f"model '{self.name}' is an ONNX graph that takes tensors, not a DataFrame: send "
                '{"inputs": {"<input>": [...], ...}} or "instances"'
            )
        names = [spec.name for spec in self.inputs]
        if isinstance(rows.rows, dict):
            unknown = [key for key in rows.rows if key not in names]
            if unknown:
                raise InvalidInput(
                    f"unknown input '{unknown[0]}' for model '{self.name}'; it takes "
                    f"{', '.join(names)}"
                )
            columns = rows.rows
        elif len(names) > 1 and isinstance(rows.rows, list) and rows.rows:
            columns = instances_by_input(rows.rows, names)
        else:
            return super().v1_arrays(payload)
        arrays: Arrays = {}
        for spec in self.inputs:
            if spec.name in columns:
                try:
                    arrays[spec.name] = np.asarray(
                        columns[spec.name], dtype=V2_TO_NUMPY[spec.datatype]
                    )
                except (TypeError, ValueError) as exc:
                    raise InvalidInput(
                        f"input '{spec.name}': not {spec.datatype} values of one shape ({exc})"
                    ) from None
        missing = [name for name in names if name not in arrays]
        if missing:
            raise InvalidInput(f"missing input(s) {', '.join(missing)} for model '{self.name}'")
        return arrays

    def run(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        feed = {spec.name: inputs[spec.name] for spec in self.inputs if spec.name in inputs}
        try:
            values = self.session.run(list(outputs), feed, self._run_options)
        except self._client_errors as exc:
            raise model_rejected(self.name, ValueError(run_error_text(exc))) from None
        return {
            name: result_array(name, value) for name, value in zip(outputs, values, strict=True)
        }
