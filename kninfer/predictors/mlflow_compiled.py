"""The mlflow family's ONNX Runtime for an MLflow model of the `sklearn` flavor that `kninfer
compile` compiled: `model.onnx` and `compile.json` beside its `MLmodel`, served without
importing MLflow, scikit-learn or scipy.

The mlflow family picks it (kninfer.predictors.mlflow_predictor, `--runtime`): `auto` when the
MLflow model's directory holds a model.onnx, `onnx` always. The graph is the one
kninfer.predictors.sklearn_onnx serves for the sklearn family, with the same checks of
compile.json against the graph and against the pickled model it was compiled from; what this
class adds is the MLflow model's own contract, so a client sees what `kninfer serve --predictor
mlflow` answered before the compile:

- the inputs are the columns of the model's signature (MLmodel `signature.inputs`, MLflow
  "Model Signature"), with its datatypes (`long` is INT64, `double` FP64, `string` BYTES), unless
  kninfer.yaml or --input-spec declares others;
- the output is `predict`, the name kninfer gives the unnamed output of a scikit-learn model's
  `predict`, which is what an MLflow sklearn model's pyfunc calls (`predict_proba` may also be
  asked for by name);
- the version is the MLflow run that logged the model (MLmodel `run_id`), when it names one.

A model whose pyfunc answers anything else (MLmodel `predict_fn` other than `predict`, or an
output signature naming its output or stating several) is not served from the graph: `auto`
keeps serving it through `mlflow.pyfunc`, and `--runtime onnx` refuses it, saying why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kninfer.errors import ModelLoadError
from kninfer.predictors.mlflow_signature import DEFAULT_OUTPUT, MLFLOW_TO_V2
from kninfer.predictors.sklearn_columns import column_spec
from kninfer.predictors.sklearn_onnx import OnnxSklearnPredictor
from kninfer.protocol.tensor import TensorSpec

PLATFORM = "kninfer-mlflow-onnx"
SIGNATURE_SOURCE = "mlflow signature"


def compiled_sklearn_refusal(meta: dict[str, Any]) -> str | None:
    """Why the graph `kninfer compile` wrote for this MLflow model (its MLmodel, parsed) would
    not answer as the model's pyfunc does; None when it would."""
    flavors = meta.get("flavors") or {}
    if "sklearn" not in flavors:
        return f"it is not of the sklearn flavor (flavors: {', '.join(flavors) or 'none'})"
    pyfunc = flavors.get("python_function") or {}
    predict_fn = pyfunc.get("predict_fn") or "predict"
    if predict_fn != "predict":
        return f"its pyfunc answers with {predict_fn}, not predict"
    outputs = _signature_part(meta, "outputs")
    if outputs and (len(outputs) != 1 or outputs[0].get("name") not in (None, DEFAULT_OUTPUT)):
        names = ", ".join(str(o.get("name") or "(unnamed)") for o in outputs)
        return f"its output signature names {names}, not one unnamed output"
    return None


def _signature_part(meta: dict[str, Any], part: str) -> list[dict[str, Any]] | None:
    """MLmodel's `signature.inputs` or `signature.outputs` (a JSON string in the YAML file)."""
    text = (meta.get("signature") or {}).get(part)
    if not text:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        raise ModelLoadError(f"MLmodel's signature {part} is not JSON: {text[:200]}") from None
    return parsed if isinstance(parsed, list) else None


def signature_columns(meta: dict[str, Any]) -> list[TensorSpec] | None:
    """The inputs a column-based signature states, as the sklearn family's columns; None for a
    tensor-based signature or none (the graph's inputs are the model's then)."""
    columns = _signature_part(meta, "inputs")
    if not columns or any(c.get("type") == "tensor" or not c.get("name") for c in columns):
        return None
    return [column_spec(str(c["name"]), MLFLOW_TO_V2.get(c["type"], "BYTES")) for c in columns]


class CompiledMlflowPredictor(OnnxSklearnPredictor):
    """An MLflow sklearn-flavor model compiled by `kninfer compile`, through ONNX Runtime."""

    family = "mlflow"
    run_id: str | None = None
    _signature: list[TensorSpec] | None = None
    # Whether the served columns are the signature's (nothing else declares inputs).
    _from_signature = False

    @property
    def platform(self) -> str:
        return PLATFORM

    def load_model(self) -> None:
        from kninfer.predictors.mlflow import find_mlmodel_dir
        from kninfer.predictors.mlflow_onnx import mlmodel

        path = find_mlmodel_dir(self.model_dir)
        meta = mlmodel(path)
        refusal = compiled_sklearn_refusal(meta)
        if refusal is not None:
            raise ModelLoadError(
                f"the MLflow model in {path} cannot be served through ONNX Runtime: {refusal}. "
                "--runtime onnx serves an MLflow model of the onnx flavor, or one of the "
                "sklearn flavor compiled by `kninfer compile`; --runtime native serves this "
                "one through mlflow.pyfunc"
            )
        self.model_dir = Path(path)  # model.onnx, compile.json and the example lie beside MLmodel
        self.run_id = meta.get("run_id") or None
        self._signature = signature_columns(meta)
        super().load_model()
        if self._from_signature and self.columns is not None:
            sources = self.columns.sources
            for name, source in sources.items():
                if source == "declared":
                    sources[name] = SIGNATURE_SOURCE

    def declared_inputs(self, matrix: bool) -> list[TensorSpec] | None:
        """kninfer.yaml or --input-spec when they declare inputs, else the signature's columns
        (for a graph that takes a column each)."""
        declared = super().declared_inputs(matrix)
        if declared is not None or matrix or self._signature is None:
            return declared
        self._from_signature = True
        return self._signature

    def version_of_model(self) -> str:
        return self.run_id or super().version_of_model()

    def metadata(self) -> dict[str, Any]:
        doc = super().metadata()
        parameters = doc.setdefault("parameters", {})
        parameters["signature"] = "column" if self._signature is not None else "tensor or none"
        return doc
