"""The dataplane: the one protocol-agnostic path from a decoded request to a model and back.

REST V2, V1, MLflow scoring, CloudEvents and gRPC V2 all reach the model through
`DataPlane.infer(model, request, headers)`, and every transport asks this module, not KServe's,
for health, readiness and metadata (Open Inference Protocol, required_api.md "Health",
"Server Metadata", "Model Metadata"). So model lookup, readiness and draining are decided once;
the input checks live in the codecs (kninfer.protocol) and the models (kninfer.predictors,
kninfer.transformers), the statuses in kninfer.errors; a transport only decodes, calls and
encodes. Models are `kserve.Model` objects (`ServedModel`) in KServe's registry
(`ModelRegistry`): nothing here knows a model family.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kninfer import __version__
from kninfer.errors import ModelNotFound, ModelNotReady, VersionNotFound
from kninfer.protocol.tensor import DeclaresTensors, model_metadata, served_version

if TYPE_CHECKING:  # imported only when payload logging is on (kninfer.server.lifecycle)
    from kninfer.observability.payload_log import PayloadLogger

SERVER_EXTENSIONS = ("binary_tensor_data", "cloudevents")


class ServedModel(Protocol):
    """What the dataplane and the transports use of a served model: `kserve.Model`'s contract.

    kninfer's predictors and transformers are `kserve.Model`s that also state their tensors and
    version (kninfer.protocol.tensor.DeclaresTensors); a bare `kserve.Model` is served too, with
    KServe's defaults for those.
    """

    name: str
    ready: bool

    async def __call__(
        self, body: Any, headers: Mapping[str, str] | None = None
    ) -> tuple[Any, dict[str, str] | None]:
        """preprocess, predict, postprocess (`kserve.Model.__call__`): the answer and the
        headers the model adds."""
        ...

    def get_input_types(self) -> list[dict[str, Any]]: ...

    def get_output_types(self) -> list[dict[str, Any]]: ...


class ModelRegistry(Protocol):
    """The served models by name: KServe's `kserve.model_repository.ModelRepository`."""

    def get_model(self, name: str) -> ServedModel | None: ...

    def get_models(self) -> Mapping[str, ServedModel]: ...


@dataclass
class DataPlane:
    """The served models and whether the server is draining, for every transport."""

    registry: ModelRegistry
    draining: bool = False
    extensions: list[str] = field(default_factory=lambda: list(SERVER_EXTENSIONS))
    # --logger-url: every inference's request and response as CloudEvents; None: off.
    payload_log: PayloadLogger | None = None

    # ---- health and metadata (OIP "Health", "Server Metadata", "Model Metadata") -------------

    @property
    def ready(self) -> bool:
        """Server readiness: every model ready and not draining."""
        models = self.models()
        return not self.draining and bool(models) and all(m.ready for m in models)

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "kninfer", "version": __version__, "extensions": list(self.extensions)}

    def models(self) -> list[ServedModel]:
        return list(self.registry.get_models().values())

    def model(self, name: str, version: str | None = None) -> ServedModel:
        """The model called `name`; ModelNotFound (404, NOT_FOUND) if none is served, and
        VersionNotFound (404) when `version` is given and is not the one it serves."""
        model = self.registry.get_model(name)
        if model is None:
            raise ModelNotFound(name)
        if version:
            served = served_version(model)
            if version != served:
                raise VersionNotFound(name, version, served)
        return model

    def model_ready(self, name: str, version: str | None = None) -> bool:
        return bool(self.model(name, version).ready) and not self.draining

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self.model(name, version)
        if isinstance(model, DeclaresTensors):  # kninfer's models: platform and version too
            return model.metadata()
        return model_metadata(model.name, "", model.get_input_types(), model.get_output_types())

    # ---- inference ---------------------------------------------------------------------------

    def ready_model(self, name: str, version: str | None = None) -> ServedModel:
        """The model to run a request on: ModelNotReady (503, UNAVAILABLE) until it is loaded."""
        model = self.model(name, version)
        if not model.ready:
            # A model that stopped being ready says why (kninfer.predictors.sklearn: its file
            # changed); one still loading has no reason to give.
            why = model.not_ready_reason if isinstance(model, DeclaresTensors) else None
            raise ModelNotReady(name, why) if why else ModelNotReady(name)
        return model

    async def infer(
        self, model: ServedModel, request: Any, headers: Mapping[str, str] | None = None
    ) -> tuple[Any, dict[str, str]]:
        """Run one decoded request (a V2 `InferRequest`, or a V1 payload dict) on `model`.

        The model is called as KServe calls it (`kserve.Model.__call__`: preprocess, predict,
        postprocess, with KServe's latency histograms), so predictors and transformers alike
        answer every transport. Returns the response and the headers the model adds.

        With payload logging on, every transport's inferences are logged here, once: the
        request before the model runs, its answer or error after (the logger only queues;
        kninfer.observability.payload_log sends).
        """
        payload_log = self.payload_log
        if payload_log is None:
            response, response_headers = await model(request, headers=headers)
            return response, response_headers or {}
        inference = payload_log.begin(model, request, headers)
        try:
            response, response_headers = await model(request, headers=headers)
        except Exception as exc:
            payload_log.fail(inference, exc)
            raise
        payload_log.end(inference, response)
        return response, response_headers or {}
