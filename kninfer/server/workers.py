"""`kninfer serve --workers N`: N complete server processes sharing the HTTP and gRPC ports.

KServe injects `--workers <containerConcurrency>` into custom transformer containers
(kserve/kserve pkg/apis/serving/v1beta1/transformer_custom.go), and KServe 0.21's own multi-worker
mode spawns uvicorn workers that never see the predictor configuration (a ContextVar set in
`ModelServer.__init__`), so its transformers answer 501 "Could not find PredictorConfig.".

Here each worker is a whole `kninfer serve` process started with `multiprocessing`'s spawn (no
fork: a forked PyTorch or gRPC runtime can deadlock), built from the same `ServeSettings`, so a
transformer's predictor client, a predictor's model and its limits exist in every worker. Every
worker binds the HTTP port with SO_REUSEPORT (socket(7)) and the gRPC port with gRPC's default
`grpc.so_reuseport`, and the kernel spreads incoming connections across them. Consequences worth
knowing: a keep-alive HTTP connection or a gRPC channel stays with one worker; every worker loads
its own copy of the model (memory x N); per-worker limits (max_inflight) apply per worker.

The parent holds no port and loads no model. It starts the workers, exits 1 if one fails before
all are serving, restarts a worker that dies later (at most `_MAX_RESTARTS` per minute), and on
SIGTERM/SIGINT forwards SIGTERM so each worker drains as a single server does (lifecycle.py),
then exits 0 when they all did.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from kninfer.settings import ServeSettings

logger = logging.getLogger("kninfer")

_MAX_RESTARTS = 5  # per rolling minute, across all workers
_POLL_S = 0.5


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other worker processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


WorkerMain = Callable[[ServeSettings, int, Any], None]


class _Supervisor:
    def __init__(self, settings: ServeSettings, worker_main: WorkerMain) -> None:
        self.settings = settings
        self.worker_main = worker_main
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, tuple[BaseProcess, Any]] = {}
        self.stopping = False
        self.restarts: list[float] = []
        self.signalled: set[int] = set()

    def spawn(self, index: int) -> None:
        ready = self.context.Event()
        process = self.context.Process(
            target=self.worker_main,
            args=(self.settings, index, ready),
            name=f"kninfer-worker-{index + 1}",
            daemon=False,
        )
        process.start()
        self.workers[index] = (process, ready)

    def on_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            logger.info(
                "received %s: stopping %d workers", signal.Signals(signum).name, len(self.workers)
            )
        self.stopping = True
        self.terminate_all()

    def terminate_all(self) -> None:
        """SIGTERM each worker once: a second signal could reach a worker that has finished
        draining and already closed its event loop (and with it its signal handlers), killing it
        with status -15 instead of letting it exit 0."""
        for process, _ in self.workers.values():
            if process.is_alive() and process.pid is not None and process.pid not in self.signalled:
                self.signalled.add(process.pid)
                os.kill(process.pid, signal.SIGTERM)

    def wait_started(self) -> bool:
        """True once every worker is serving; False when one exits first."""
        while not self.stopping:
            if all(ready.is_set() for _, ready in self.workers.values()):
                return True
            for index, (process, _) in self.workers.items():
                if not process.is_alive():
                    logger.error(
                        "worker %d exited with %s before serving", index + 1, process.exitcode
                    )
                    return False
            wait([p.sentinel for p, _ in self.workers.values()], timeout=0.05)
        return False

    def supervise(self) -> None:
        while not self.stopping:
            wait([p.sentinel for p, _ in self.workers.values()], timeout=_POLL_S)
            if self.stopping:
                break
            for index, (process, _) in list(self.workers.items()):
                if process.is_alive():
                    continue
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < 60] + [now]
                if len(self.restarts) > _MAX_RESTARTS:
                    logger.error(
                        "workers keep dying (%d restarts in a minute); giving up",
                        len(self.restarts) - 1,
                    )
                    self.on_signal(signal.SIGTERM, None)
                    return
                logger.warning(
                    "worker %d (pid %s) exited with %s; starting a new one",
                    index + 1,
                    process.pid,
                    process.exitcode,
                )
                self.spawn(index)

    def stop(self) -> int:
        deadline = time.monotonic() + self.settings.grace_period_s + 5
        self.terminate_all()
        codes = []
        for process, _ in self.workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
            codes.append(process.exitcode)
        return 0 if all(code == 0 for code in codes) else 1


def run_workers(settings: ServeSettings, worker_main: WorkerMain) -> int:
    """Run `settings.workers` processes, each `worker_main(settings, index, ready_event)` (a
    top-level function, so spawn can pickle it: kninfer.server.startup.serve_worker), until
    SIGTERM/SIGINT; the process exit status."""
    if settings.storage_uri is not None and settings.transformer is None:
        # Download once here rather than N times, concurrently, into one directory.
        from kninfer.storage import local_model_dir

        local = local_model_dir(settings)
        settings = settings.model_copy(update={"storage_uri": None, "model_dir": local})
    supervisor = _Supervisor(settings, worker_main)
    previous = {
        sig: signal.signal(sig, supervisor.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        logger.info("starting %d workers on HTTP port %d", settings.workers, settings.http_port)
        for index in range(settings.workers):
            supervisor.spawn(index)
        if supervisor.wait_started():
            logger.info("all %d workers serving", settings.workers)
            supervisor.supervise()
        elif not supervisor.stopping:  # a worker failed to start: fail like a single server
            supervisor.stopping = True
            supervisor.stop()
            return 1
        return supervisor.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
