"""kninfer's public event contract (docs/eventing.md, "The event contract"): event types,
extension names, and where reply events say they come from. Imports nothing heavy, so
kninfer.deploy renders Triggers from these names without loading a server.
"""

from __future__ import annotations

# kninfer's public event contract (docs/eventing.md, "The event contract").
REQUEST_TYPE = "dev.kninfer.inference.request"


RESPONSE_TYPE = "dev.kninfer.inference.response"


MODEL_EXTENSION = "kninfermodel"


CAUSATION_EXTENSION = "causationid"


CORRELATION_EXTENSION = "correlationid"


STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"


BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


DATA_CONTENT_TYPE = "application/json"


SPEC_VERSION = "1.0"
# KServe's payload-logger events (kserve pkg/logger), which kninfer's payload logger sends
# (kninfer.observability.payload_log) and a rendered HTTP shadow's Trigger selects
# (kninfer.deploy.render): the types, the InferenceService extension and the request id.
LOGGER_REQUEST_TYPE = "org.kubeflow.serving.inference.request"
LOGGER_RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
INFERENCE_SERVICE_EXTENSION = "inferenceservicename"
REQUEST_ID_EXTENSION = "requestid"
# How a request event's `requestid` reaches the payload logger with the request's headers (the
# binary-mode header name): a payload-log event delivered to a shadow keeps its requestid.
REQUEST_ID_HEADER = f"ce-{REQUEST_ID_EXTENSION}"


def reply_source(model_name: str, configured: str | None, k_service: str | None) -> str:
    """`source` of replies: KNINFER_CE_SOURCE, else kninfer/<K_SERVICE or local>/models/<model>.
    K_SERVICE is set by Knative Serving (runtime-contract.md, "Process")."""
    if configured:
        return configured
    return f"kninfer/{k_service or 'local'}/models/{model_name}"
