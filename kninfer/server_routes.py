"""Routes that extend the V1/V2 REST surface (CloudEvents and friends). One function so
kninfer.serving does not need to know which extensions exist."""

from __future__ import annotations

from starlette.routing import Route

from kninfer.rest import ServerState
from kninfer.settings import ServeSettings


def extra_routes(state: ServerState, settings: ServeSettings) -> list[Route]:
    from kninfer.event_routes import event_routes

    routes: list[Route] = []
    routes += event_routes(state, settings)  # POST / and CloudEvents on V2 infer
    if settings.scoring_protocol:
        from kninfer.scoring import ScoringRoutes

        routes += ScoringRoutes(state).routes()  # MLflow's /ping, /version, /invocations
    return routes
