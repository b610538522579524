"""The one typed settings object. Every field is also `KNINFER_<FIELD>` in the environment;
CLI flags (kninfer.cli) map onto the same fields and win over the environment.

Knative's runtime contract sets `PORT` for the HTTP port (knative/specs, runtime-contract.md,
"Inbound network connectivity"), so `http_port` falls back to it before 8080.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PredictorFamily = Literal["sklearn", "mlflow", "pytorch"]
DEFAULT_MODEL_NAME = "iris"


def _default_http_port() -> int:
    return int(os.environ.get("PORT", "8080"))


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kninfer"


class ServeSettings(BaseSettings):
    """Everything `kninfer serve` needs, predictor or transformer."""

    model_config = SettingsConfigDict(env_prefix="KNINFER_", extra="ignore")

    # What to serve
    predictor: PredictorFamily | None = None
    model_dir: Path | None = None
    storage_uri: str | None = None
    model_name: str = DEFAULT_MODEL_NAME
    # Directory model_dir must resolve inside (after following symlinks); None = model_dir itself.
    model_root: Path | None = None
    cache_dir: Path = Field(default_factory=_default_cache_dir)

    # Transformer mode
    transformer: str | None = None
    predictor_host: str | None = None
    predictor_protocol: Literal["v2", "grpc-v2"] = "v2"
    predictor_timeout_s: float = 30.0
    predictor_retries: int = 2

    # Network
    host: str = "0.0.0.0"
    http_port: int = Field(default_factory=_default_http_port)
    grpc_port: int = 8081
    enable_grpc: bool = True
    workers: int = 1

    # Execution
    inference_threads: int = 4
    max_inflight: int = 64
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch_rows: int = 65536
    max_tensor_elements: int = 16 * 1024 * 1024
    request_timeout_s: float = 60.0
    grace_period_s: float = 30.0
    warmup: bool = True
    # gc.freeze() the start-up heap before serving (kninfer.serving; tail latency).
    gc_freeze: bool = True

    # Adaptive batching (kninfer.batching); None means the predictor family's default.
    batching: bool | None = None
    max_batch_size: int = 32
    max_latency_ms: float = 2.0

    # PyTorch
    device: str = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    torch_module: str | None = None
    input_spec: str | None = None

    # CloudEvents
    ce_dedupe_size: int = 10000
    ce_dedupe_ttl_s: float = 600.0
    # Bytes of replies the redelivery cache may hold (kninfer.events.DedupeCache).
    ce_dedupe_max_bytes: int = 64 * 1024 * 1024
    ce_source: str | None = None

    # Logging
    log_level: str = "INFO"
    access_log: bool = False

    @model_validator(mode="after")
    def _check(self) -> ServeSettings:
        if self.model_dir is not None and self.storage_uri is not None:
            raise ValueError("give either --model-dir or --storage-uri, not both")
        if self.transformer and not self.predictor_host:
            raise ValueError("--transformer needs --predictor-host HOST:PORT")
        return self

    @property
    def serves_default_model(self) -> bool:
        return self.transformer is None and self.model_dir is None and self.storage_uri is None
