"""The tabular transformer: named records in, labels and `{label: probability}` maps out.

Requests it takes:
- V2 (REST or gRPC): one BYTES input (any name; `records` in the metadata) whose elements are JSON
  objects, one record each (an element may also hold a JSON list of records);
- V1: `{"instances": [{"field": value, ...}, ...]}`.

The records are checked and encoded by the feature spec (kninfer.transformers.features) into the
FP64 matrix `input-0` [n, k] the predictor takes, with `predict` (and `predict_proba` when the
spec asks) as requested outputs. The answer is, for V2, `label` (BYTES [n]) and `probabilities`
(BYTES [n], each a JSON object `{label: p}`); for V1, `{"predictions": [{"label": ...,
"probabilities": {...}}, ...]}`.

`IrisTransformer` is the worked example: the spec of the default iris predictor, embedded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import orjson
from kserve import InferRequest, InferResponse

from kninfer.errors import InvalidInput, ModelLoadError, UpstreamError
from kninfer.iris import IRIS_FEATURES, IRIS_SPECIES
from kninfer.protocol.tensor import TensorSpec
from kninfer.protocol.v2 import input_array
from kninfer.transformers.base import Transformer, response_arrays
from kninfer.transformers.features import SPEC_FILE, FeatureSpec

IRIS_SPEC: dict[str, Any] = {
    "fields": [{"name": name, "type": "number"} for name in IRIS_FEATURES],
    "labels": list(IRIS_SPECIES),
    "probabilities": True,
    "predictor_input": "input-0",
}


def records_from_v1(payload: dict[str, Any]) -> list[Any]:
    instances = payload.get("instances", payload.get("inputs"))
    if not isinstance(instances, list):
        raise InvalidInput('V1 request has no "instances" list of records')
    return instances


def records_from_v2(request: InferRequest) -> list[Any]:
    """Records from the request's BYTES input: one JSON object per element."""
    byte_inputs = [i for i in request.inputs if i.datatype == "BYTES"]
    if len(byte_inputs) != 1 or len(request.inputs) != 1:
        raise InvalidInput(
            'expected one BYTES input of JSON records, e.g. {"inputs": [{"name": '
            '"records", "shape": [1], "datatype": "BYTES", "data": '
            '["{\\"field\\": 1.0}"]}]}'
        )
    records: list[Any] = []
    for position, element in enumerate(input_array(byte_inputs[0]).reshape(-1)):
        raw = element if isinstance(element, bytes | str) else bytes(element)
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(
                f"record {len(records)} (element {position} of input "
                f"'{byte_inputs[0].name}') is not valid JSON ({exc})"
            ) from None
        if isinstance(value, list):
            records.extend(value)
        else:
            records.append(value)
    return records


class TabularTransformer(Transformer):
    """Records -> feature matrix -> predictor -> labels and probabilities."""

    kind: ClassVar[str] = "tabular"
    spec: FeatureSpec

    def load(self) -> bool:
        self.spec = self.load_spec()
        self.inputs = [TensorSpec("records", "BYTES", (-1,))]
        self.outputs = [TensorSpec("label", "BYTES", (-1,))]
        if self.spec.probabilities:
            self.outputs.append(TensorSpec("probabilities", "BYTES", (-1,)))
        self.ready = True
        return self.ready

    def load_spec(self) -> FeatureSpec:
        """The feature spec: `features.json` in --model-dir (or the --storage-uri download)."""
        from kninfer.storage import local_model_dir

        local = local_model_dir(self.settings)
        if local is None:
            raise ModelLoadError(
                f"transformer '{self.kind}' needs --model-dir DIR holding {SPEC_FILE}"
            )
        return FeatureSpec.load(local)

    async def preprocess(  # type: ignore[override]
        self, payload: InferRequest | dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> InferRequest:
        if isinstance(payload, InferRequest):
            self.remember_v1(False)
            records = records_from_v2(payload)
            request_id = payload.id
        else:
            self.remember_v1(True)
            records = records_from_v1(payload)
            request_id = None
        matrix = self.spec.encode(records)
        outputs = ["predict", "predict_proba"] if self.spec.probabilities else ["predict"]
        return self.predictor_request({self.spec.predictor_input: matrix}, outputs, request_id)

    async def postprocess(  # type: ignore[override]
        self,
        result: InferResponse | dict[str, Any],
        headers: Mapping[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse | dict[str, Any]:
        assert isinstance(result, InferResponse)
        arrays = response_arrays(result)
        if "predict" not in arrays:
            raise UpstreamError(
                f"predictor answered without a 'predict' output (got {', '.join(arrays) or 'none'})"
            )
        labels = [self.spec.label_of(v) for v in arrays["predict"].reshape(-1)]
        maps: list[dict[str, float]] | None = None
        if self.spec.probabilities:
            proba = arrays.get("predict_proba")
            if proba is None or proba.ndim != 2 or proba.shape[0] != len(labels):
                raise UpstreamError("predictor answered without a [n, classes] 'predict_proba'")
            names = self.spec.probability_names(proba.shape[1])
            maps = [dict(zip(names, map(float, row), strict=True)) for row in proba]
        if self.client_is_v1():
            if maps is None:
                return {"predictions": labels}
            return {
                "predictions": [
                    {"label": label, "probabilities": probs}
                    for label, probs in zip(labels, maps, strict=True)
                ]
            }
        arrays = {"label": _strings([str(label) for label in labels])}
        if maps is not None:
            arrays["probabilities"] = _strings([orjson.dumps(m).decode() for m in maps])
        return self.respond(arrays, result.id or "")


def _strings(values: list[str]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


class IrisTransformer(TabularTransformer):
    """The worked example: `{"sepal_length": ..., ...}` records in, species names out."""

    kind: ClassVar[str] = "iris"

    def load_spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(IRIS_SPEC)
