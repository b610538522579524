"""The transformer contract: a `kserve.Model` whose `predict` is a call to the predictor.

KServe runs `preprocess -> predict -> postprocess` for every request (`kserve.Model.__call__`);
in an InferenceService's `spec.transformer` the `predict` step is the network call to
`spec.predictor`. A kninfer transformer overrides two methods:

- `preprocess(payload, headers)`: the client's request (a `kserve.InferRequest` for V2 REST and
  gRPC, a dict for V1) -> the `InferRequest` the predictor gets (`self.predictor_request`
  builds one from numpy arrays);
- `postprocess(response, headers)`: the predictor's `InferResponse` -> what the client gets
  (an `InferResponse`, or a dict for a V1 client).

Errors are `kninfer.errors` types (a bad record is `InvalidInput`, 400); the predictor call's
failures are mapped in kninfer.transformers.client. Readiness does not depend on the predictor:
under Knative the predictor may be scaled to zero and only wakes on the request the transformer
forwards, so waiting for it before reporting ready would never end.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from kserve import InferInput, InferOutput, InferRequest, InferResponse, Model
from kserve.protocol.infer_type import RequestedOutput

from kninfer.errors import InvalidInput, ModelNotReady
from kninfer.protocol.tensor import Arrays, DeclaresTensors, TensorSpec, v2_datatype_of
from kninfer.protocol.v2 import input_array
from kninfer.transformers.client import PredictorClient

if TYPE_CHECKING:
    from kninfer.settings import ServeSettings


# Whether the request being served came in as V1 (a dict). Set by `preprocess` implementations
# through `Transformer.remember_v1`; a ContextVar is per asyncio task, and KServe runs a request's
# preprocess and postprocess in one task.
_CLIENT_V1: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "kninfer_client_v1", default=False
)


class Transformer(DeclaresTensors, Model):
    """Base of kninfer's transformers. As it stands it forwards V2 requests unchanged."""

    kind: ClassVar[str] = "passthrough"

    def __init__(self, name: str, settings: ServeSettings) -> None:
        super().__init__(name)
        self.settings = settings
        self.predictor = PredictorClient(settings)
        # The model name requested from the predictor: KServe's transformer reuses its own name
        # (an InferenceService's transformer and predictor serve one model name).
        self.predictor_model = name
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        # A transformer has no model file: it states a version only when told (--model-version).
        self.version = settings.model_version or ""
        self.load_ms = 0.0
        self.warmup_ms = 0.0

    # ---- what a subclass overrides ---------------------------------------------------------

    def load(self) -> bool:
        """Read whatever the transformer needs (feature specs, vocabularies), then be ready."""
        self.ready = True
        return self.ready

    async def preprocess(  # type: ignore[override]
        self, payload: InferRequest | dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> InferRequest:
        if not isinstance(payload, InferRequest):
            raise InvalidInput(
                f"transformer '{self.name}' forwards V2 inference requests only; send them to "
                f"/v2/models/{self.name}/infer"
            )
        payload.model_name = self.predictor_model
        return payload

    async def postprocess(  # type: ignore[override]
        self,
        result: InferResponse | dict[str, Any],
        headers: Mapping[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse | dict[str, Any]:
        if isinstance(result, InferResponse):
            result.model_name = self.name
        return result

    # ---- the predictor call ----------------------------------------------------------------

    async def predict(  # type: ignore[override]
        self,
        payload: InferRequest | dict[str, Any],
        headers: Mapping[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        if not self.ready:
            raise ModelNotReady(self.name)
        if not isinstance(payload, InferRequest):
            raise TypeError(f"{type(self).__name__}.preprocess must return a kserve.InferRequest")
        return await self.predictor.infer(payload, headers)

    # ---- helpers for subclasses ------------------------------------------------------------

    def predictor_request(
        self, arrays: Arrays, outputs: list[str] | None = None, request_id: str | None = None
    ) -> InferRequest:
        """A V2 request for the predictor carrying `arrays` (name -> numpy array)."""
        inputs = [
            InferInput(name, list(array.shape), v2_datatype_of(array), array)
            for name, array in arrays.items()
        ]
        requested = [RequestedOutput(name=n) for n in outputs] if outputs else None
        return InferRequest(
            self.predictor_model, inputs, request_id=request_id, request_outputs=requested
        )

    def respond(self, arrays: Arrays, response_id: str = "") -> InferResponse:
        """A V2 response to the client carrying `arrays`; strings travel as BYTES."""
        outputs = []
        for name, array in arrays.items():
            array = np.asarray(array)
            if array.dtype.kind in "OU":
                encoded = np.empty(array.shape, dtype=object)
                encoded.flat[:] = [v.encode() if isinstance(v, str) else v for v in array.flat]
                array = encoded
            outputs.append(
                InferOutput(
                    name=name, shape=list(array.shape), datatype=v2_datatype_of(array), data=array
                )
            )
        return InferResponse(response_id=response_id, model_name=self.name, infer_outputs=outputs)

    @staticmethod
    def remember_v1(is_v1: bool) -> None:
        """Note whether this request is V1, for `postprocess` (see `client_is_v1`)."""
        _CLIENT_V1.set(is_v1)

    @staticmethod
    def client_is_v1() -> bool:
        return _CLIENT_V1.get()

    # ---- metadata --------------------------------------------------------------------------

    @property
    def platform(self) -> str:
        return f"kninfer-transformer-{self.kind}"


__all__ = ["Transformer", "input_array", "request_arrays", "response_arrays"]


def request_arrays(request: InferRequest) -> Arrays:
    """The client's V2 inputs (REST JSON, binary or gRPC) as numpy arrays, by name; an input the
    client did not send is simply absent (`arrays.get(name)` for an optional one). A tensor that
    does not match its shape and datatype is an InvalidInput (400)."""
    return {infer_input.name: input_array(infer_input) for infer_input in request.inputs}


def response_arrays(response: InferResponse) -> Arrays:
    """The predictor's outputs as numpy arrays (from REST JSON, binary or gRPC raw contents)."""
    from kninfer.errors import UpstreamError

    arrays: Arrays = {}
    for output in response.outputs:
        try:
            arrays[output.name] = output.as_numpy()
        except Exception as exc:
            raise UpstreamError(
                f"predictor output '{output.name}' does not match its shape {output.shape} "
                f"and datatype {output.datatype} ({exc})"
            ) from None
    return arrays
