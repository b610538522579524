"""The dataplane: the one protocol-agnostic path from a decoded request to a model and back.

REST V2, V1, MLflow scoring, CloudEvents and gRPC all reach the model through
`DataPlane.infer(model, request, headers)`, so model lookup, readiness and draining are decided
once, and the checks and errors live in the model (kninfer.predictors, kninfer.transformers) and
kninfer.errors, never in a transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kninfer.errors import (
    ModelNotFound,
    ModelNotReady,
)

SERVER_EXTENSIONS = ["binary_tensor_data", "cloudevents"]


@dataclass
class DataPlane:
    """What the transports share: the models, the limits, and whether we are draining."""

    registry: Any  # kserve.model_repository.ModelRepository
    max_body_bytes: int
    draining: bool = False
    extensions: list[str] = field(default_factory=lambda: list(SERVER_EXTENSIONS))
    # CloudEvents endpoint (kninfer.http.events.EventEndpoint), installed by server_routes.
    events: Any = None

    def model(self, name: str) -> Any:
        model = self.registry.get_model(name)
        if model is None:
            raise ModelNotFound(name)
        return model

    def ready_model(self, name: str) -> Any:
        model = self.model(name)
        if not model.ready:
            raise ModelNotReady(name)
        return model

    def models(self) -> list[Any]:
        return list(self.registry.get_models().values())

    @property
    def ready(self) -> bool:
        models = self.models()
        return not self.draining and bool(models) and all(m.ready for m in models)
