"""The ASGI app: the V1/V2 routes, the extension routes (CloudEvents, MLflow scoring) and the fast
path for V2 infer.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from kninfer.dataplane import DataPlane
from kninfer.http.responses import Handler, guarded, json_response
from kninfer.http.routes import V2Routes
from kninfer.protocol import paths
from kninfer.settings import ServeSettings


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    detail = "no such route" if status == 404 else "method not allowed"
    return json_response({"error": f"{detail}: {request.method} {request.url.path}"}, status)


class InferFastPath:
    """ASGI app: `POST /v2/models/{name}/infer` goes straight to its guarded handler; every other
    request goes to the Starlette app.

    The hot route skips Starlette's ServerErrorMiddleware, ExceptionMiddleware and the route
    table scan (about a tenth of the server's time per request at batch 1, measured with py-spy;
    docs/performance.md). Answers are the same: the handler is the one the
    route table holds, `guarded` already turns every exception into kninfer's error answer, and
    a name is matched as Starlette's `{name}` is (`[^/]+`, on the decoded path).
    """

    def __init__(self, infer: Handler, app: Starlette) -> None:
        self.infer = infer
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            name = paths.v2_infer_model(scope["path"])
            if name is not None:
                scope["path_params"] = {"name": name}
                scope["app"] = self.app
                response = await self.infer(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(dataplane: DataPlane, settings: ServeSettings) -> InferFastPath:
    """The ASGI app over `dataplane`: CloudEvents on `POST /` (and on V2 infer), MLflow's
    scoring routes when `--scoring-protocol` is on, then the V1/V2 routes. No extension route
    claims the V2 infer path, which the fast path answers first."""
    from kninfer.http.events import EventEndpoint

    events = EventEndpoint(dataplane, settings)
    v2 = V2Routes(dataplane, settings.max_body_bytes, events)
    routes = events.routes()
    if settings.scoring_protocol:
        from kninfer.http.scoring import ScoringRoutes

        routes += ScoringRoutes(dataplane, settings.max_body_bytes).routes()
    routes += v2.routes()
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
    return InferFastPath(guarded(v2.infer), app)
