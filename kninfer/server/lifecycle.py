"""Server lifecycle: a `kserve.ModelServer` whose start/stop kninfer owns.

KServe's ModelServer keeps the model registry; kninfer replaces how it is served:
- HTTP is kninfer.http's lean app (plus extra routes such as CloudEvents), on uvicorn;
- gRPC is kninfer.grpc's servicer over the same dataplane, started after HTTP is listening so
  it is not on the cold-start critical path;
- SIGTERM drains instead of unloading: KServe 0.21's `ModelServer.stop` unloads every model as
  soon as the signal arrives, failing in-flight requests. Here readiness turns 503 at once (so
  Knative's queue-proxy and probes stop routing), uvicorn and gRPC finish in-flight requests
  within `grace_period_s`, and only then are models unloaded; the process exits 0.
- Payload logging (`--logger-url`, kninfer.observability.payload_log) starts before the ports
  open and is flushed after the transports have drained, for at most
  `payload_log.flush_budget` of what is left of the grace period; OpenTelemetry traces
  (kninfer.observability.otel) likewise, after it, for at most `otel_flush_budget`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from kserve import ModelServer

from kninfer.dataplane import DataPlane
from kninfer.http.app import build_app
from kninfer.protocol.tensor import served_version
from kninfer.server.draining import CloseWhenDraining, DrainingUvicorn
from kninfer.settings import ServeSettings

logger = logging.getLogger("kninfer")


GRPC_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


OTEL_FLUSH_S = 5.0


def otel_flush_budget(grace_period_s: float, drain_elapsed_s: float | None) -> float:
    """Seconds the buffered spans get to be exported at shutdown: OTEL_FLUSH_S, at most half the
    grace period, and never past its end (as the payload log's flush)."""
    budget = min(OTEL_FLUSH_S, grace_period_s / 2)
    if drain_elapsed_s is not None:
        budget = min(budget, grace_period_s - drain_elapsed_s)
    return max(0.0, budget)


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop to serve on (--event-loop): uvloop, as uvicorn's and KServe's `auto` pick it
    where it is installed (its transports cost less per request than asyncio's:
    docs/performance.md#inline-models), or None for asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise RuntimeError("--event-loop uvloop: uvloop is not installed") from None
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


class KninferServer(ModelServer):
    def __init__(self, settings: ServeSettings) -> None:
        super().__init__(
            http_port=settings.http_port,
            grpc_port=settings.grpc_port,
            workers=1,
            enable_grpc=settings.enable_grpc,
            enable_latency_logging=False,
            grace_period=int(settings.grace_period_s),
        )
        self.settings = settings
        # kninfer's dataplane in place of KServe's: every transport here calls this one.
        self.dataplane = DataPlane(self.registered_models)
        self._http: DrainingUvicorn | None = None
        self._grpc: Any = None
        self._drain_started: float | None = None
        self.on_ready: list[Any] = []

    def start(self, models: list[Any]) -> None:  # type: ignore[override]
        for model in models:
            if model.ready:
                self.register_model(model)
        with asyncio.Runner(loop_factory=event_loop_factory(self.settings.event_loop)) as runner:
            runner.run(self.serve())
        # Inference threads cannot be cancelled, and the interpreter joins them at exit: a model
        # call that outlived the grace period would keep the pod up until Kubernetes' SIGKILL.
        # The drain is over, so leave now, saying what was abandoned.
        abandoned = sum(int(getattr(model, "inflight", 0)) for model in models)
        if abandoned:
            logger.warning(
                "grace period of %gs over: abandoning %d inference(s) still running",
                self.settings.grace_period_s,
                abandoned,
            )
            logging.shutdown()
            os._exit(0)

    def _served_version(self, name: str) -> str:
        """The version label of a model's request metrics: its served version, or ""."""
        return served_version(self.dataplane.registry.get_model(name))

    def wrapped_app(self) -> Any:
        """kninfer.http's app inside the server's wrappers: metrics and access log, then the
        drain's `Connection: close`."""
        from kninfer.observability.access_log import configure_access_log
        from kninfer.observability.middleware import InstrumentedApp
        from kninfer.observability.prometheus import ensure_registered, request_counts

        # Metrics and the JSON access log wrap the whole app (kninfer.observability); uvicorn's own
        # access log stays off so each request is logged once.
        ensure_registered()
        request_counts.version_of = self._served_version
        configure_access_log(self.settings.access_log)
        app = InstrumentedApp(
            build_app(self.dataplane, self.settings),
            self.settings.model_name,
            self.settings.access_log,
            known_model=lambda name: self.dataplane.registry.get_model(name) is not None,
        )
        return CloseWhenDraining(app, self.dataplane)

    async def serve(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.begin_drain, sig)
        otel_on = settings.otel_on
        if otel_on:  # off: nothing of OpenTelemetry is imported
            try:
                from kninfer.observability import otel
            except ImportError as exc:
                raise RuntimeError(
                    f"tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT or --otel) but OpenTelemetry "
                    f"is not installed ({exc}); install kninfer[otel]"
                ) from exc
            otel.start(settings)
        payload_log = None
        if settings.logger_url:  # off: the logger module is never imported
            from kninfer.observability.payload_log import PayloadLogger

            payload_log = PayloadLogger.from_settings(settings)
            payload_log.start()
            self.dataplane.payload_log = payload_log
        config = uvicorn.Config(
            self.wrapped_app(),
            host=settings.host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            # No route speaks WebSocket: "none" spares the cold path uvicorn's websockets
            # protocol import (docs/performance.md#figures-behind-the-code).
            ws="none",
            # Behind Knative every client address is the queue-proxy's; the access log reports
            # X-Forwarded-For itself (kninfer.observability), so uvicorn's ProxyHeadersMiddleware
            # (1-2% of a batch-1 request here) is not run on every request.
            proxy_headers=False,
            timeout_graceful_shutdown=int(settings.grace_period_s),
            timeout_keep_alive=65,
        )
        self._http = DrainingUvicorn(config)
        # Half the grace period at most: in-flight work still needs time to finish after it.
        self._http.drain_window_s = min(settings.drain_window_s, settings.grace_period_s / 2)
        sockets = None
        if settings.workers > 1:  # N processes share the port (kninfer.server.workers)
            from kninfer.server.workers import reuse_port_socket

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
            from kninfer.grpc.server import build_grpc_server

            self._grpc = build_grpc_server(
                self.dataplane,
                settings.grpc_port,
                settings.host,
                GRPC_MAX_MESSAGE_BYTES,
            )
            await self._grpc.start()
            logger.info("gRPC V2 listening on port %d", settings.grpc_port)
        await http_task
        if self._grpc is not None:
            await self._grpc.stop(grace=settings.grace_period_s)
        if payload_log is not None:
            from kninfer.observability.payload_log import flush_budget

            started = self._drain_started
            await payload_log.close(
                flush_budget(
                    settings.grace_period_s, None if started is None else time.monotonic() - started
                )
            )
        if otel_on:  # the spans still buffered, the payload log's sends among them
            from kninfer.observability import otel

            started = self._drain_started
            await otel.stop(
                otel_flush_budget(
                    settings.grace_period_s, None if started is None else time.monotonic() - started
                )
            )
        for name in list(self.registered_models.get_models()):
            self.registered_models.unload(name)
        logger.info("stopped cleanly")

    def begin_drain(self, sig: int = signal.SIGTERM) -> None:
        """Stop reporting ready, stop accepting, finish in-flight work, then exit."""
        if self.dataplane.draining:
            return
        logger.info(
            "received %s: draining (grace %.0fs)",
            signal.Signals(sig).name,
            self.settings.grace_period_s,
        )
        self.dataplane.draining = True
        self._drain_started = time.monotonic()
        if self._http is not None:
            # In this step, before any answer says `Connection: close` (draining.py).
            self._http.close_listeners()
        if self._grpc is not None:
            asyncio.ensure_future(self._grpc.stop(grace=self.settings.grace_period_s))
        if self._http is not None:
            self._http.should_exit = True

    def stop(self, sig: int) -> None:
        self.begin_drain(sig)
