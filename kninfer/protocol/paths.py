"""The inference routes' paths, known in one place: the route table (kninfer.http.routes), the
hot-path dispatcher (kninfer.http.app) and the metrics middleware
(kninfer.observability.middleware) all read them here, so a route cannot be parsed three ways.

Starlette matches `{name}` as `[^/]+` on the decoded path; the functions below match the same.
"""

from __future__ import annotations

# Route patterns (Starlette syntax), Open Inference Protocol REST and KServe V1.
V2_INFER = "/v2/models/{name}/infer"
V2_VERSION_INFER = "/v2/models/{name}/versions/{version}/infer"
V1_PREDICT = "/v1/models/{name}:predict"
EVENTS = "/"  # CloudEvents (kninfer.http.events); GET / is liveness

_V2_MODELS = "/v2/models/"
_INFER = "/infer"
_VERSIONS = "/versions/"
_V1_MODELS = "/v1/models/"
_PREDICT = ":predict"


def v2_infer_model(path: str) -> str | None:
    """The model `POST /v2/models/{name}/infer` names, None for any other path (the versioned
    route included: see `v2_any_infer_model`)."""
    if path.startswith(_V2_MODELS) and path.endswith(_INFER):
        name = path[len(_V2_MODELS) : -len(_INFER)]
        if name and "/" not in name:
            return name
    return None


def v2_any_infer_model(path: str) -> str | None:
    """The model a V2 infer path names, versioned (`/v2/models/{name}/versions/{v}/infer`) or
    not; None for any other path."""
    if not (path.startswith(_V2_MODELS) and path.endswith(_INFER)):
        return None
    name, slash, rest = path[len(_V2_MODELS) : -len(_INFER)].partition("/")
    if not name:
        return None
    if not slash:
        return name
    version = rest.removeprefix(_VERSIONS.lstrip("/"))
    return name if version != rest and version and "/" not in version else None


def v1_predict_model(path: str) -> str | None:
    """The model `POST /v1/models/{name}:predict` names, None for any other path."""
    if path.startswith(_V1_MODELS) and path.endswith(_PREDICT):
        name = path[len(_V1_MODELS) : -len(_PREDICT)]
        if name and "/" not in name:
            return name
    return None
