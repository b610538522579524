"""`kninfer serve`: resolve the model, load and warm it, then start the servers.

Order matters for scale-from-zero: the model is loaded and warmed before any port opens, so
Knative's readiness probe (and the first request queued at the activator) never sees a server that
answers but cannot infer (kserve#2882). A model that fails to load ends the process with status 1
and one log line naming the reason, so Knative marks the revision failed instead of routing to it.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kninfer._compat.argv import hide_argv_from_kserve
from kninfer.settings import ServeSettings

logger = logging.getLogger("kninfer")


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("kninfer")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def resolve_model_dir(settings: ServeSettings) -> Path:
    if settings.serves_default_model:
        from kninfer.iris import ensure_iris_model
        from kninfer.predictors import require_sklearn

        require_sklearn(
            "the embedded iris model",
            "give --model-dir or --storage-uri: a model compiled by `kninfer compile` "
            "(model.onnx) is served without it",
        )

        return ensure_iris_model(settings.cache_dir)
    from kninfer.storage import local_model_dir

    local = local_model_dir(settings)
    assert local is not None  # not the default model: --model-dir or --storage-uri was given
    return local


def build_models(settings: ServeSettings) -> list[Any]:
    """The kserve.Model objects this process serves, loaded and warmed up."""
    if settings.transformer is not None:
        from kninfer.transformers import transformer_class

        transformer = transformer_class(settings.transformer)(settings.model_name, settings)
        transformer.load()
        return [transformer]
    from kninfer.predictors import predictor_class

    family = settings.predictor or "sklearn"
    model_dir = resolve_model_dir(settings)
    # The sklearn family's runtime (--runtime) is chosen for the resolved directory.
    predictor = predictor_class(family, model_dir, settings)(
        settings.model_name, model_dir, settings
    )
    predictor.load()
    batching = settings.batching if settings.batching is not None else predictor.batching_by_default
    if batching:
        from kninfer.batching import AdaptiveBatcher

        predictor.batcher = AdaptiveBatcher(
            predictor, predictor.batch_cap(), settings.max_latency_ms
        )
    return [predictor]


def _process_age_ms() -> float | None:
    """Milliseconds since this process started, from the kernel's own clock: the start time in
    /proc/self/stat (field 22, clock ticks since boot) against CLOCK_BOOTTIME, the clock it is
    counted on, so exact to one tick (10 ms at the usual USER_HZ of 100). psutil adds the same
    start time to the whole-second `btime` of /proc/stat and so reads up to a second high; not
    importing it also keeps psutil off the cold path. None where /proc is not Linux's."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22; fields[0] is field 3
        return round((time.clock_gettime(time.CLOCK_BOOTTIME) - started) * 1000, 1)
    except Exception:
        return None


def serve(
    settings: ServeSettings,
    started: float,
    worker: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT. With --workers > 1 this process only supervises worker
    processes (kninfer.server.workers), each of which calls `serve(..., worker=True)`."""
    configure_logging(settings.log_level)
    from kninfer.errors import KninferError, WarmupFailed

    breakdown: dict[str, float | None] = {"interpreter_ms": _process_age_ms()}
    mark = time.perf_counter()
    try:
        from kninfer.observability.multiprocess import prepare_multiprocess

        prepare_multiprocess(settings.workers)  # before prometheus_client is imported
        if settings.workers > 1 and not worker:
            from kninfer.server.workers import run_workers

            gc.enable()  # this process only supervises (kninfer.cli turned collection off)
            return run_workers(settings, serve_worker)
        from kninfer._compat.kserve_imports import deferred_imports
        from kninfer.predictors import serves_onnx

        # A compiled model (model.onnx) is served without scikit-learn: nothing to preload.
        sklearn_model = (
            settings.transformer is None
            and settings.predictor in (None, "sklearn")
            and not serves_onnx(settings)
        )
        # kserve (and scikit-learn) without pandas/kubernetes on the cold path
        preload = ["sklearn.utils", "sklearn.callback"] if sklearn_model else []
        with deferred_imports(*preload, eager=settings.eager_imports):
            from kninfer.server.lifecycle import KninferServer

        breakdown["imports_ms"] = round((time.perf_counter() - started) * 1000, 1)
        models = build_models(settings)
    except WarmupFailed as exc:
        logger.error("model loaded but failed its warm-up prediction: %s", exc)
        return 1
    except KninferError as exc:
        logger.error("model failed to load: %s", exc)
        return 1
    except Exception as exc:  # any other load failure: one line, non-zero exit
        logger.error("model failed to load: %s: %s", type(exc).__name__, exc)
        return 1
    model = models[0]
    breakdown["model_load_ms"] = round(getattr(model, "load_ms", 0.0), 1)
    breakdown["warmup_ms"] = round(getattr(model, "warmup_ms", 0.0), 1)
    load_total = time.perf_counter() - mark

    server = KninferServer(settings)

    def log_ready() -> None:
        breakdown["ready_ms"] = round((time.perf_counter() - started) * 1000, 1)
        breakdown["build_ms"] = round(load_total * 1000, 1)
        age = _process_age_ms()
        breakdown["since_process_start_ms"] = age
        logger.info("cold start %s", json.dumps(breakdown))
        from kninfer.observability.prometheus import record_cold_start

        record_cold_start(breakdown, model.name, getattr(model, "load_ms", 0.0))
        logger.info("serving model '%s' on HTTP port %d", model.name, settings.http_port)

    server.on_ready.append(log_ready)
    if on_ready is not None:
        server.on_ready.append(on_ready)
    # Everything imported and loaded so far lives as long as the process: move it out of the
    # cyclic GC's reach (gc.freeze, Python docs "gc"). Without this a full collection walks
    # every start-up object every few thousand requests: the p99 spikes of
    # docs/performance.md. No gc.collect() first: it would cost as much as one such
    # collection on the cold-start path, for a little start-up garbage kept (the figures:
    # docs/performance.md#figures-behind-the-code).
    if settings.gc_freeze:
        gc.freeze()
    gc.enable()  # off during start-up (kninfer.cli.main, kninfer.server.workers): serving needs it
    server.start(models)
    return 0


def serve_worker(settings: ServeSettings, index: int, ready: Any) -> None:
    """Entry point of one `--workers` process (spawned by kninfer.server.workers)."""
    gc.disable()  # as kninfer.cli.main does for start-up; serve() turns it back on
    hide_argv_from_kserve()  # `import kserve` parses sys.argv (kninfer._compat.argv)

    def announce() -> None:
        logger.info("worker %d of %d ready (pid %d)", index + 1, settings.workers, os.getpid())
        ready.set()

    # The parent handles Ctrl-C for the group; a worker drains on SIGTERM/SIGINT like a server.
    status = serve(settings, started=time.perf_counter(), worker=True, on_ready=announce)
    # Drained and done: a late signal must not turn this clean exit into -15.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(status)
