"""The one typed settings object. Every field is also `KNINFER_<FIELD>` in the environment;
CLI flags (kninfer.cli) map onto the same fields and win over the environment. This module is
the only reader of the environment (tests/test_settings.py checks), including the few
variables other tools define: Knative's PORT, K_SERVICE and K_SINK, XDG_CACHE_HOME, KUBECTL
for `kninfer canary`, and the OpenTelemetry variables that turn tracing on (the SDK reads the
rest of its OTEL_* variables itself, once tracing is on).

Knative's runtime contract sets `PORT` for the HTTP port (knative/specs, runtime-contract.md,
"Inbound network connectivity"), so `http_port` falls back to it before 8080.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PredictorFamily = Literal["sklearn", "mlflow", "pytorch"]
DEFAULT_MODEL_NAME = "iris"


def default_http_port() -> int:
    return int(os.environ.get("PORT", "8080"))


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kninfer"


def skops_trusted_from_env() -> str:
    """`$KNINFER_SKOPS_TRUSTED`, for `kninfer compile` (which loads models as serve does)."""
    return os.environ.get("KNINFER_SKOPS_TRUSTED", "")


def default_logger_url() -> str | None:
    """`$K_SINK`: where a Knative SinkBinding or a Source's sink sends this container's events
    (knative/specs, eventing sources.md, "SinkBinding": the subject's containers get the sink's
    URI as K_SINK). Read as PORT is, so KNINFER_LOGGER_URL and --logger-url still win."""
    return os.environ.get("K_SINK") or None


def kubectl_from_env() -> str | None:
    """`$KUBECTL`, the kubectl binary `kninfer canary` runs when set (else PATH's)."""
    return os.environ.get("KUBECTL") or None


class ServeSettings(BaseSettings):
    """Everything `kninfer serve` needs, predictor or transformer."""

    model_config = SettingsConfigDict(env_prefix="KNINFER_", extra="ignore")

    # What to serve
    predictor: str | None = Field(
        None,
        description="model family to serve: sklearn, mlflow, pytorch or package.module:Class "
        "(a kninfer.Predictor subclass of your own) (default: the embedded iris "
        "model)",
    )
    model_dir: Path | None = Field(None, description="local directory holding the model")
    storage_uri: str | None = Field(
        None,
        description="where to fetch the model from: a local path, file://, or s3://, gs://,"
        " ... with the [storage] extra",
    )
    model_name: str = Field(
        DEFAULT_MODEL_NAME,
        description="name the model is served under (V1/V2 paths, gRPC model_name)",
    )
    # Directory model_dir must resolve inside (after following symlinks); None = model_dir itself.
    model_root: Path | None = Field(
        None,
        description="directory the model directory must resolve inside (default: the model "
        "directory itself)",
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="where the embedded iris model and downloaded models are cached",
    )

    # Transformer mode
    transformer: str | None = Field(
        None,
        description="serve a transformer: iris, tabular, passthrough or package.module:Class",
    )
    predictor_host: str | None = Field(
        None,
        description="HOST:PORT of the predictor a transformer calls",
    )
    predictor_protocol: Literal["v2", "grpc-v2"] = Field(
        "v2",
        description="how a transformer calls its predictor: v2 (REST) or grpc-v2",
    )
    predictor_timeout_s: float = Field(
        30.0,
        description="seconds a transformer waits for its predictor per attempt",
    )
    predictor_retries: int = Field(
        2,
        description="retries of a predictor call that failed transiently",
    )

    # Network
    host: str = Field("0.0.0.0", description="address to listen on")
    http_port: int = Field(
        default_factory=default_http_port, description="HTTP port (default: $PORT, else 8080)"
    )
    grpc_port: int = Field(8081, description="gRPC V2 port")
    enable_grpc: bool = Field(True, description="serve gRPC V2")
    workers: int = Field(
        1,
        description="server processes sharing the ports (SO_REUSEPORT), each with the model loaded",
    )
    scoring_protocol: bool = Field(
        True,
        description="also serve MLflow's scoring protocol: /ping, /health, /version, /invocations",
    )

    # Execution
    inference_threads: int = Field(4, description="threads running the model, off the event loop")
    inline_below_us: float = Field(
        200.0,
        description="a compiled (ONNX) model whose warm-up calls each take less than this many "
        "microseconds runs on the event loop instead of an inference thread, sparing the "
        "thread hop (0: always a thread)",
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto",
        description="the event loop: uvloop where it is installed (auto), or asyncio's own",
    )
    max_inflight: int = Field(
        64,
        description="inferences in flight per model before new ones get 429",
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        description="largest request body accepted (413 above)",
    )
    max_batch_rows: int = Field(65536, description="most rows in one request (413 above)")
    max_tensor_elements: int = Field(
        16 * 1024 * 1024,
        description="most elements in one input tensor (413 above)",
    )
    request_timeout_s: float = Field(
        60.0,
        description="seconds an inference may take before it is answered 504 (0: no limit)",
    )
    grace_period_s: float = Field(
        30.0,
        description="seconds in-flight requests get to finish after SIGTERM",
    )
    drain_window_s: float = Field(
        5.0,
        description="after SIGTERM, seconds open connections are still served (each answer "
        "with Connection: close) before idle ones close",
    )
    warmup: bool = Field(True, description="run one prediction before the ports open")
    # gc.freeze() the start-up heap before serving (kninfer.server.startup; tail latency).
    eager_imports: bool = Field(
        False,
        description="import kserve whole at start-up instead of deferring the parts a served "
        "model never uses (kninfer._compat.kserve_imports; slower cold start)",
    )
    gc_freeze: bool = Field(
        True,
        description="gc.freeze() the start-up heap before serving (shorter pauses)",
    )

    # Adaptive batching (kninfer.batching); None means the predictor family's default.
    batching: bool | None = Field(
        None,
        description="adaptive batching of concurrent requests (default: the family's choice)",
    )
    max_batch_size: int = Field(32, description="most requests merged into one batch")
    max_latency_ms: float = Field(2.0, description="longest a request waits for its batch to fill")

    # PyTorch
    device: str = Field("auto", description="PyTorch device: auto, cpu, cuda or cuda:N")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32",
        description="PyTorch compute dtype: float32, float16 or bfloat16",
    )
    torch_module: str | None = Field(
        None,
        description="package.module:Class of an eager PyTorch model (its state_dict in the "
        "model dir)",
    )
    input_spec: str | None = Field(
        None,
        description="declared inputs/outputs: inline YAML or a file (overrides kninfer.yaml)",
    )

    # scikit-learn
    joblib_mmap: bool = Field(
        True,
        description="memory-map a joblib model's arrays read-only instead of copying them",
    )
    model_version: str | None = Field(
        None,
        description="the model version to report (V2 metadata `versions`, each response's "
        "`model_version`, the /versions/{v}/ routes); default: the MLflow model's "
        "run id, else a sha256 prefix of the model directory's files",
    )
    model_sha256: str | None = Field(
        None,
        description="sha256 the model file must have; with a model.audited.joblib from "
        "`kninfer audit`, the pinned fast load of an audited skops model",
    )
    skops_trusted: str = Field(
        "",
        description="comma-separated types a .skops file may hold beyond skops' trusted list",
    )
    runtime: Literal["auto", "onnx", "native"] = Field(
        "auto",
        description="how a model runs: auto (model.onnx from `kninfer compile`, or an MLflow "
        "model of the onnx flavor, through ONNX Runtime; a PyTorch model only on the CPU in "
        "float32; else its framework: the scikit-learn file, mlflow.pyfunc or torch), onnx "
        "(ONNX Runtime only) or native (the framework, any graph ignored)",
    )

    # CloudEvents
    ce_dedupe_size: int = Field(
        10000,
        description="CloudEvents redelivery cache: most events remembered",
    )
    ce_dedupe_ttl_s: float = Field(
        600.0,
        description="CloudEvents redelivery cache: seconds an event is remembered",
    )
    # Bytes of replies the redelivery cache may hold (kninfer.cloudevents.DedupeCache).
    ce_dedupe_max_bytes: int = Field(
        64 * 1024 * 1024,
        description="CloudEvents redelivery cache: most bytes of replies held",
    )
    ce_source: str | None = Field(
        None,
        description="source attribute of reply events (default: built from K_SERVICE)",
    )
    # Knative Serving sets K_SERVICE, unprefixed, in every revision's container (knative/specs,
    # runtime-contract.md, "Process"); read here like every other variable.
    k_service: str | None = Field(
        None,
        validation_alias=AliasChoices("k_service", "K_SERVICE"),
        description="Knative service name, for reply event sources [set by Knative: K_SERVICE]",
    )
    # K_REVISION likewise (runtime-contract.md, "Process"): which revision answered, on the V2
    # metadata and the payload-log events (metrics get it from the rendered PodMonitor).
    k_revision: str | None = Field(
        None,
        validation_alias=AliasChoices("k_revision", "K_REVISION"),
        description="Knative revision name, on metadata and payload-log events [set by "
        "Knative: K_REVISION]",
    )

    # Logging
    log_level: str = Field("INFO", description="log level: DEBUG, INFO, WARNING, ERROR")
    access_log: bool = Field(False, description="log one JSON line per request")

    # Payload logging (kninfer.observability.payload_log; docs/observability.md)
    logger_url: str | None = Field(
        default_factory=default_logger_url,
        pattern=r"^https?://\S+$",
        description="send each inference's request and response as CloudEvents (KServe's "
        "logger format) to this http(s) URL (default: $K_SINK, set by a Knative "
        "SinkBinding or Source; unset: off)",
    )
    logger_mode: Literal["all", "request", "response"] = Field(
        "all",
        description="payload logging: which events to send: all, request or response",
    )
    logger_headers: str = Field(
        "",
        description="payload logging: comma-separated request headers copied into each "
        "event's `metadata` (any letter case)",
    )
    logger_queue_size: int = Field(
        1000,
        ge=1,
        description="payload logging: events waiting to be sent before new ones are dropped "
        "(and counted)",
    )
    logger_namespace: str | None = Field(
        None,
        description="payload logging: the `namespace` extension of each event (kninfer render "
        "sets it)",
    )

    # OpenTelemetry traces (kninfer.observability.otel; docs/observability.md "Traces"). The
    # standard OTEL_* variables keep their names (OpenTelemetry SDK environment variable
    # specification); these four decide whether tracing is on, and the SDK reads the rest.
    otel: bool | None = Field(
        None,
        description="export OpenTelemetry traces over OTLP/HTTP (the otel extra) (default: on "
        "when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is "
        "set, unless OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none)",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("otel_exporter_otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OpenTelemetry's: OTLP/HTTP base URL traces go to, /v1/traces appended "
        "(turns tracing on)",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "otel_exporter_otlp_traces_endpoint", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        ),
        description="OpenTelemetry's: OTLP/HTTP URL traces go to, as it is (turns tracing on)",
    )
    otel_sdk_disabled: bool = Field(
        False,
        validation_alias=AliasChoices("otel_sdk_disabled", "OTEL_SDK_DISABLED"),
        description="OpenTelemetry's: true turns tracing off, whatever else is set",
    )
    otel_traces_exporter: str | None = Field(
        None,
        validation_alias=AliasChoices("otel_traces_exporter", "OTEL_TRACES_EXPORTER"),
        description="OpenTelemetry's: none turns tracing off (kninfer exports OTLP/HTTP only)",
    )

    @field_validator("otel_sdk_disabled", mode="before")
    @classmethod
    def _sdk_disabled(cls, value: object) -> object:
        # The SDK's rule: only "true" (any letter case) disables; any other text does not.
        return value.strip().lower() == "true" if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> ServeSettings:
        if self.model_dir is not None and self.storage_uri is not None:
            raise ValueError("give either --model-dir or --storage-uri, not both")
        if self.transformer and not self.predictor_host:
            raise ValueError("--transformer needs --predictor-host HOST:PORT")
        families = typing.get_args(PredictorFamily)
        if (
            self.predictor is not None
            and self.predictor not in families
            and ":" not in self.predictor
        ):
            raise ValueError(
                f"--predictor must be {', '.join(families)} or "
                f"package.module:Class; got '{self.predictor}'"
            )
        return self

    @property
    def otel_on(self) -> bool:
        """Whether this server exports OpenTelemetry traces."""
        if self.otel_sdk_disabled or (self.otel_traces_exporter or "").strip().lower() == "none":
            return False
        if self.otel is not None:
            return self.otel
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)

    @property
    def otel_traces_endpoint(self) -> str | None:
        """The OTLP/HTTP traces URL, as the SDK derives it from the two endpoint variables
        (OTLP exporter specification: the signal path is appended to the base URL only); None:
        the SDK's default, http://localhost:4318/v1/traces."""
        if self.otel_exporter_otlp_traces_endpoint:
            return self.otel_exporter_otlp_traces_endpoint
        base = self.otel_exporter_otlp_endpoint
        if not base:
            return None
        return base + ("v1/traces" if base.endswith("/") else "/v1/traces")

    @property
    def serves_default_model(self) -> bool:
        return self.transformer is None and self.model_dir is None and self.storage_uri is None
