"""Server wiring: a `kserve.ModelServer` whose start/stop kninfer owns.

KServe's ModelServer keeps the model registry, the dataplane and the gRPC servicer; kninfer
replaces how they are served:
- HTTP is kninfer.rest's lean app (plus extra routes such as CloudEvents), on uvicorn;
- gRPC is KServe's servicer behind kninfer's error map (kninfer.grpc_server), started after
  HTTP is listening so it is not on the cold-start critical path;
- SIGTERM drains instead of unloading: KServe 0.21's `ModelServer.stop` unloads every model as
  soon as the signal arrives, failing in-flight requests. Here readiness turns 503 at once (so
  Knative's queue-proxy and probes stop routing), uvicorn and gRPC finish in-flight requests
  within `grace_period_s`, and only then are models unloaded; the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from kserve import ModelServer
from starlette.routing import Route

from kninfer.rest import ServerState, build_app
from kninfer.settings import ServeSettings

logger = logging.getLogger("kninfer")

GRPC_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class _DrainingUvicorn(uvicorn.Server):
    """uvicorn that leaves signal handling to KninferServer (uvicorn would re-raise SIGTERM
    after shutdown, turning a clean drain into exit status 143), and drains keep-alive
    connections instead of cutting them.

    uvicorn's shutdown closes every idle keep-alive connection at once, so a client that has
    just sent a request on one reads a reset: a request the server accepted and lost (0-2 of
    ~200 under 24 keep-alive clients, README "Reliability"). Here the listener closes first (new
    connections are refused, so clients retry elsewhere), open connections are still served for
    `drain_window_s`, each answer saying `Connection: close` (CloseWhenDraining), and a
    connection is closed only after `QUIET_S` without a request on it; what is left when the
    window ends gets uvicorn's own shutdown.
    """

    drain_window_s = 0.0
    QUIET_S = 0.5

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_window_s
        idle_since: dict[int, float] = {}
        while self.server_state.connections and loop.time() < deadline:
            now = loop.time()
            for connection in list(self.server_state.connections):
                if not _idle(connection):
                    idle_since.pop(id(connection), None)
                elif now - idle_since.setdefault(id(connection), now) >= self.QUIET_S:
                    connection.shutdown()  # idle: uvicorn closes its transport
            await asyncio.sleep(0.05)
        await super().shutdown(sockets=sockets)


def _idle(connection: Any) -> bool:
    """Whether a uvicorn HTTP connection has no request in progress (its `cycle`, uvicorn 0.30+
    in both the httptools and h11 protocols). Unknown shapes count as busy: they are then left
    for uvicorn's own shutdown at the end of the window."""
    if not hasattr(connection, "cycle"):
        return False
    cycle = connection.cycle
    return cycle is None or bool(getattr(cycle, "response_complete", False))


class CloseWhenDraining:
    """ASGI wrapper: once the server drains, every response says `Connection: close` (RFC 9112
    section 9.6), so a keep-alive client finishes its request here and reconnects elsewhere."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.state.draining or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


class KninferServer(ModelServer):
    def __init__(self, settings: ServeSettings, extra_routes: list[Route] | None = None) -> None:
        super().__init__(
            http_port=settings.http_port,
            grpc_port=settings.grpc_port,
            workers=1,
            enable_grpc=settings.enable_grpc,
            enable_latency_logging=False,
            grace_period=int(settings.grace_period_s),
        )
        self.settings = settings
        self.extra_routes = list(extra_routes or [])
        self.state = ServerState(self.registered_models, settings.max_body_bytes)
        self._http: _DrainingUvicorn | None = None
        self._grpc: Any = None
        self._stopping: asyncio.Event | None = None
        self.on_ready: list[Any] = []

    def start(self, models: list[Any]) -> None:  # type: ignore[override]
        for model in models:
            if model.ready:
                self.register_model(model)
        asyncio.run(self.serve())
        # Inference threads cannot be cancelled, and the interpreter joins them at exit: a model
        # call that outlived the grace period would keep the pod up until Kubernetes' SIGKILL.
        # The drain is over, so leave now, saying what was abandoned.
        abandoned = sum(int(getattr(model, "inflight", 0)) for model in models)
        if abandoned:
            logger.warning("grace period of %gs over: abandoning %d inference(s) still running",
                           self.settings.grace_period_s, abandoned)
            logging.shutdown()
            os._exit(0)

    def build_app(self) -> Any:
        from kninfer.metrics import InstrumentedApp, configure_access_log, ensure_registered

        # Metrics and the JSON access log wrap the whole app (kninfer.metrics); uvicorn's own
        # access log stays off so each request is logged once.
        ensure_registered()
        configure_access_log(self.settings.access_log)
        app = InstrumentedApp(build_app(self.state, self.extra_routes), self.settings.model_name,
                              self.settings.access_log,
                              known_model=lambda name: self.state.registry.get_model(name)
                              is not None)
        return CloseWhenDraining(app, self.state)

    async def serve(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.begin_drain, sig)
        config = uvicorn.Config(
            self.build_app(),
            host=settings.host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            # No route speaks WebSocket: "none" spares the cold path uvicorn's websockets
            # protocol import (7-28 ms here, `python -X importtime`).
            ws="none",
            # Behind Knative every client address is the queue-proxy's; the access log reports
            # X-Forwarded-For itself (kninfer.metrics), so uvicorn's ProxyHeadersMiddleware
            # (1-2% of a batch-1 request here) is not run on every request.
            proxy_headers=False,
            timeout_graceful_shutdown=int(settings.grace_period_s),
            timeout_keep_alive=65,
        )
        self._http = _DrainingUvicorn(config)
        # Half the grace period at most: in-flight work still needs time to finish after it.
        self._http.drain_window_s = min(settings.drain_window_s, settings.grace_period_s / 2)
        sockets = None
        if settings.workers > 1:  # one of N worker processes sharing the port (kninfer.workers)
            from kninfer.workers import reuse_port_socket

            sockets = [reuse_port_socket(settings.host, settings.http_port)]
        http_task = asyncio.create_task(self._http.serve(sockets=sockets))
        while not self._http.started:
            if http_task.done():
                http_task.result()  # surfaces bind errors
                raise RuntimeError("HTTP server stopped before it started")
            await asyncio.sleep(0.002)
        for callback in self.on_ready:
            callback()
        if settings.enable_grpc:
            from kninfer.grpc_server import build_grpc_server

            self._grpc = build_grpc_server(
                self.dataplane,
                self.model_repository_extension,
                settings.grpc_port,
                settings.host,
                GRPC_MAX_MESSAGE_BYTES,
            )
            await self._grpc.start()
            logger.info("gRPC V2 listening on port %d", settings.grpc_port)
        await http_task
        if self._grpc is not None:
            await self._grpc.stop(grace=settings.grace_period_s)
        for name in list(self.registered_models.get_models()):
            self.registered_models.unload(name)
        logger.info("stopped cleanly")

    def begin_drain(self, sig: int = signal.SIGTERM) -> None:
        """Stop reporting ready, stop accepting, finish in-flight work, then exit."""
        if self.state.draining:
            return
        logger.info("received %s: draining (grace %.0fs)", signal.Signals(sig).name,
                    self.settings.grace_period_s)
        self.state.draining = True
        if self._grpc is not None:
            asyncio.ensure_future(self._grpc.stop(grace=self.settings.grace_period_s))
        if self._http is not None:
            self._http.should_exit = True

    def stop(self, sig: int) -> None:
        self.begin_drain(sig)


def now_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)
