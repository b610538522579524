"""Prometheus metrics: the collectors kninfer exports and the `/metrics` exposition.

KServe 0.21 exports only its latency histograms (`request_predict_seconds` & co., label
`model_name`); those stay, because models are still called through `kserve.Model.__call__`.
kninfer adds, for every inference request whatever the transport:

- `kninfer_requests_total{protocol,model,version,status}` and `kninfer_request_errors_total{...}`
  (status >= 400 for HTTP, anything but OK for gRPC), protocol one of `rest_v1`, `rest_v2`,
  `grpc_v2`, `cloudevents`; `status` is the HTTP status code or the gRPC status code name;
- `kninfer_request_duration_seconds{protocol,model,version}` (histogram, whole request);
  `version` is the served model's version (`--model-version`, else a digest of its files); the
  Knative revision is not a label here: the rendered PodMonitor adds it from the pod's labels
  (kninfer.deploy.monitoring), as Prometheus adds `namespace` and `pod`;
- `kninfer_requests_in_flight{protocol}` (gauge);
- `kninfer_model_load_seconds{model}` and `kninfer_cold_start_seconds{phase}` (gauges, set once);
- `kninfer_batch_size{model}` (histogram, observed by kninfer.batching; made on first use here, so
  whichever module touches it first registers it). CloudEvents redeliveries answered from the
  dedupe cache are `kninfer_cloudevent_replays_total{model_name}` (kninfer.http.events);
  payload-log events not delivered are `kninfer_payload_log_dropped_total{reason}`
  (kninfer.observability.payload_log).

Counting happens in kninfer.observability.middleware (HTTP) and kninfer.observability.grpc.

Multi-worker: when `PROMETHEUS_MULTIPROC_DIR` is set (kninfer.observability.multiprocess sets it
for `--workers > 1`, before prometheus_client is imported), every process writes its samples to
mmap files there and `/metrics` aggregates them with `MultiProcessCollector` (prometheus_client
docs, "Multiprocess Mode"). Gauges declare how to aggregate: in-flight sums live processes,
cold-start takes the max.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

REST_V1 = "rest_v1"


REST_V2 = "rest_v2"


GRPC_V2 = "grpc_v2"


CLOUDEVENTS = "cloudevents"


UNKNOWN_MODEL = "_unknown"


# Request latencies from sub-millisecond (a cached CloudEvent reply) to a slow GPU model.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


REQUESTS = Counter(
    "kninfer_requests",
    "Inference requests answered, by protocol, model, model version and status",
    ["protocol", "model", "version", "status"],
)


ERRORS = Counter(
    "kninfer_request_errors",
    "Inference requests answered with an error (HTTP >= 400, gRPC not OK)",
    ["protocol", "model", "version", "status"],
)


DURATION = Histogram(
    "kninfer_request_duration_seconds",
    "Whole-request latency of inference requests, transport included",
    ["protocol", "model", "version"],
    buckets=DURATION_BUCKETS,
)


IN_FLIGHT = Gauge(
    "kninfer_requests_in_flight",
    "Inference requests being answered now",
    ["protocol"],
    multiprocess_mode="livesum",
)


MODEL_LOAD = Gauge(
    "kninfer_model_load_seconds",
    "Seconds the model took to load (warm-up apart)",
    ["model"],
    multiprocess_mode="max",
)


COLD_START = Gauge(
    "kninfer_cold_start_seconds",
    "Cold-start breakdown of this process: phase durations and time to ready",
    ["phase"],
    multiprocess_mode="max",
)


# The collectors made on first use, by name: prometheus_client's registry has no public lookup
# by name, so the one instance per process is kept here (and registering a name twice raises).
_made_on_first_use: dict[str, Any] = {}


def made_on_first_use(name: str, factory: Callable[[], Any]) -> Any:
    """The collector `name`, made by `factory` (which registers it) the first time any module
    asks for it in this process, the same instance after."""
    collector = _made_on_first_use.get(name)
    if collector is None:
        collector = _made_on_first_use[name] = factory()
    return collector


def batch_size_histogram() -> Any:
    """`kninfer_batch_size{model}`: rows per model call (same definition as kninfer.batching)."""
    return made_on_first_use(
        "kninfer_batch_size",
        lambda: Histogram(
            "kninfer_batch_size",
            "Rows per model call made by the adaptive batcher",
            ["model"],
            buckets=BATCH_SIZE_BUCKETS,
        ),
    )


def cloudevent_replays_counter() -> Any:
    """`kninfer_cloudevent_replays_total{model_name}` (kninfer.http.events)."""
    return made_on_first_use(
        "kninfer_cloudevent_replays",
        lambda: Counter(
            "kninfer_cloudevent_replays",
            "CloudEvents answered with a stored or in-flight reply instead of running the model "
            "(redeliveries of the same source and id)",
            ["model_name"],
        ),
    )


def payload_log_dropped_counter() -> Any:
    """`kninfer_payload_log_dropped_total{reason}` (kninfer.observability.payload_log)."""
    return made_on_first_use(
        "kninfer_payload_log_dropped",
        lambda: Counter(
            "kninfer_payload_log_dropped",
            "Payload-log events not delivered to the sink: queue_full, send_failed (retries "
            "exhausted or refused), shutdown (still queued when the flush time ran out), "
            "unencodable",
            ["reason"],
        ),
    )


def ensure_registered() -> None:
    """Register the collectors other modules own, so /metrics lists them from the start."""
    batch_size_histogram()


_before_scrape: list[Callable[[], object]] = []


def before_scrape(hook: Callable[[], object]) -> None:
    """Have HOOK run before each /metrics exposition of this process: for collectors that
    count off the request path and bring their counters up to date only then (a drift monitor's
    pending requests, kninfer.observability.drift.monitor)."""
    _before_scrape.append(hook)


def render(accept: str | None) -> tuple[bytes, str]:
    """The exposition for GET /metrics (all workers' samples in multiprocess mode)."""
    from prometheus_client import exposition

    for hook in _before_scrape:
        hook()

    registry: Any = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    encoder, content_type = exposition.choose_encoder(accept or "")
    return encoder(registry), content_type


def record_cold_start(
    breakdown: Mapping[str, float | None], model_name: str, load_ms: float
) -> None:
    """Export the cold-start log line's numbers (milliseconds there, seconds here)."""
    MODEL_LOAD.labels(model_name).set(load_ms / 1000)
    for key, value in breakdown.items():
        if value is not None:
            COLD_START.labels(key.removesuffix("_ms")).set(value / 1000)


class RequestCounts:
    """Label children cached by key (`Counter.labels()` takes a lock on every call). A model's
    `version` label is looked up once per key, through `version_of` (set by the server: the
    served model's version, kninfer.predictors.base; "" for a name it does not serve)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], Any] = {}
        self.errors: dict[tuple[str, str, str], Any] = {}
        self.duration: dict[tuple[str, str], Any] = {}
        self.in_flight: dict[str, Any] = {}
        self.version_of: Callable[[str], str] = lambda model: ""

    def count(self, protocol: str, model: str, status: str, seconds: float) -> None:
        key = (protocol, model, status)
        child = self.requests.get(key)
        if child is None:
            child = self.requests[key] = REQUESTS.labels(
                protocol, model, self.version_of(model), status
            )
        child.inc()
        if not (status == "OK" or (len(status) == 3 and status[0] in "123")):
            error = self.errors.get(key)
            if error is None:
                error = self.errors[key] = ERRORS.labels(
                    protocol, model, self.version_of(model), status
                )
            error.inc()
        timer = self.duration.get((protocol, model))
        if timer is None:
            timer = self.duration[(protocol, model)] = DURATION.labels(
                protocol, model, self.version_of(model)
            )
        timer.observe(seconds)

    def gauge(self, protocol: str) -> Any:
        gauge = self.in_flight.get(protocol)
        if gauge is None:
            gauge = self.in_flight[protocol] = IN_FLIGHT.labels(protocol)
        return gauge


request_counts = RequestCounts()
