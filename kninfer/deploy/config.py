"""The one small config `kninfer render` reads (deploy/examples/*.yaml are samples).

Unknown keys are errors (a typo must not silently fall back to a default). Values that
Kubernetes or Knative would only reject at admission time are checked here, with the rule
that rejects them cited next to the check.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kninfer.deploy.k8s_names import (
    DNS1035_LABEL,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    KNATIVE_RESERVED_ENV,
    MAX_LABEL,
)
from kninfer.settings import PredictorFamily

DEFAULT_IMAGE = "ghcr.io/kninfer/kninfer:0.1.0"
# `make image FAMILY=<family>` tags: each predictor pulls only its framework (docs/deploy.md,
# "Images"). A compiled model (`compiled: true`) gets the onnx family's: ONNX Runtime without
# scikit-learn, scipy, torch or mlflow.
FAMILY_IMAGE = DEFAULT_IMAGE + "-{family}"
COMPILED_FAMILY = "onnx"
DEFAULT_GPU_IMAGE = "ghcr.io/kninfer/kninfer:0.1.0-cuda"
# Knative's sample event sink: logs every CloudEvent it receives and answers 202 without a
# reply, so it can never feed events back into the broker.
DEFAULT_SINK_IMAGE = "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display"

# KServe: ISVC names must match this (kserve pkg/apis/serving/v1beta1/
# inference_service_validation.go); it is also a DNS-1035 label, as Knative requires.
NAME_RE = re.compile(DNS1035_LABEL)
LABEL_RE = re.compile(DNS1123_LABEL)
# ServiceAccount names, and a SPIFFE trust domain, are DNS-1123 subdomains (apimachinery
# validation.IsDNS1123Subdomain, at most 253 characters).
SUBDOMAIN_RE = re.compile(DNS1123_SUBDOMAIN)
MAX_SUBDOMAIN = 253
# "<name>-transformer-00001" (the longest generated revision name) must fit a 63-char label.
MAX_NAME = MAX_LABEL - len("-transformer-00001")
# Kubernetes resource quantity (apimachinery resource.Quantity), the same pattern the CRDs carry.
QUANTITY_RE = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# Go time.Duration as Knative parses the scale-to-zero retention and progress deadline.
DURATION_RE = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
# ISO-8601 duration, Knative Eventing's backoffDelay (eventing docs, event-delivery.md).
# A Prometheus duration (`for:` of a rule, a range): prometheus/common model.ParseDuration.
PROMETHEUS_DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"
ISO_DURATION_RE = re.compile(
    r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
)
RESERVED_ENV = frozenset(KNATIVE_RESERVED_ENV)
# Who may call a rendered service (docs/deploy.md, "Exposure"). `cluster-local`: only callers
# inside the cluster, at <service>.<namespace>.svc.cluster.local; `public`: Knative's ingress also
# publishes it on the cluster's external domain.
Exposure = Literal["cluster-local", "public"]
SHADOW_SUFFIX = "candidate"  # a shadow is served as <name>-candidate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Quantity = str | int


def _check_quantities(values: dict[str, Quantity]) -> dict[str, Quantity]:
    for key, value in values.items():
        if isinstance(value, bool) or not QUANTITY_RE.match(str(value)):
            raise ValueError(f"{key}: {value!r} is not a Kubernetes quantity (e.g. 500m, 2Gi, 1)")
    return values


class Resources(_Strict):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)

    _q1 = field_validator("requests", "limits")(_check_quantities)


class Scale(_Strict):
    """Knative KPA settings (knative docs, serving/autoscaling/*)."""

    min: int = Field(default=0, ge=0)  # 0 = scale to zero
    max: int = Field(default=3, ge=0)  # 0 = unbounded
    target: int = Field(default=4, ge=1)  # soft target per pod for `metric`
    metric: Literal["concurrency", "rps"] = "concurrency"
    # Minimum time the last pod is kept after traffic stops (scale-to-zero-pod-retention-period).
    retention: str = "1m"
    # Per-revision progress deadline (serving.knative.dev/progress-deadline); None = global 600s.
    progress_deadline: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Scale:
        # KServe webhook: minReplicas <= maxReplicas unless maxReplicas == 0 (component.go).
        if self.max and self.min > self.max:
            raise ValueError(f"scale.min ({self.min}) is above scale.max ({self.max})")
        for field, value in (
            ("retention", self.retention),
            ("progress_deadline", self.progress_deadline),
        ):
            if value is not None and not DURATION_RE.match(value):
                raise ValueError(f"scale.{field}: {value!r} is not a duration like 90s, 2m, 1h")
        return self


class Gpu(_Strict):
    count: int = Field(default=1, ge=1)  # extended resources are whole numbers
    resource: str = "nvidia.com/gpu"
    image: str = DEFAULT_GPU_IMAGE
    node_selector: dict[str, str] = Field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"}
    )
    tolerations: list[dict[str, str]] = Field(
        default_factory=lambda: [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    )


class Runtime(_Strict):
    """How the InferenceService declares the predictor (docs/deploy.md, "Custom container or
    ServingRuntime?")."""

    kind: Literal["ServingRuntime", "ClusterServingRuntime"] = "ServingRuntime"
    name: str | None = None  # default kninfer-<family>[-gpu]


class TransformerConfig(_Strict):
    """The `transformer:` section (not kninfer.Transformer, the class a transformer subclasses)."""

    # `kninfer serve --transformer NAME`: tabular, iris (tabular with the embedded iris spec),
    # passthrough, or package.module:Class baked into your image.
    name: str = "tabular"
    # Directory holding the transformer's files (features.json for `tabular`).
    storage_uri: str | None = None
    image: str | None = None  # default: the predictor's CPU image
    resources: Resources = Field(
        default_factory=lambda: Resources(
            requests={"cpu": "100m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "1Gi"}
        )
    )


class Sink(_Strict):
    """A Knative Eventing destination: a Knative Service in the namespace, or a URI."""

    service: str | None = None
    uri: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Sink:
        if (self.service is None) == (self.uri is None):
            raise ValueError("a sink names exactly one of `service` or `uri`")
        return self


class Eventing(_Strict):
    enabled: bool = True
    broker: str = "default"
    create_broker: bool = True
    broker_class: str = "MTChannelBasedBroker"
    # Where the request Trigger delivers: the V2 infer path or `POST /` (DESIGN, CloudEvents).
    path: Literal["v2", "root"] = "v2"
    # Also filter requests on the `kninfermodel` extension, so many models can share one broker.
    match_model: bool = True
    results_sink: Sink | None = None  # None: render an event-display Service <name>-results
    dead_letter_sink: Sink | None = None  # None: render an event-display Service <name>-dead-letter
    sink_image: str = DEFAULT_SINK_IMAGE
    retry: int = Field(default=5, ge=0)
    backoff_policy: Literal["linear", "exponential"] = "exponential"
    backoff_delay: str = "PT0.5S"

    @field_validator("backoff_delay")
    @classmethod
    def _iso(cls, value: str) -> str:
        if not ISO_DURATION_RE.match(value):
            raise ValueError(f"{value!r} is not an ISO-8601 duration like PT0.5S")
        return value


class PayloadLogging(_Strict):
    """In-process payload logging of the predictor's traffic (`kninfer serve --logger-url`;
    docs/observability.md, "Payload logging"), where KServe would inject its logger sidecar
    for `spec.predictor.logger`."""

    # None: the namespace's Broker (eventing.broker when eventing is configured, else `default`).
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    mode: Literal["all", "request", "response"] = "all"
    headers: list[str] = Field(default_factory=list)  # request headers copied into `metadata`


class Monitoring(_Strict):
    """Prometheus and Grafana objects for the config's services (kninfer.deploy.monitoring;
    docs/monitoring.md, "Alerting"): a PodMonitor, a PrometheusRule and the dashboard. They need
    the Prometheus Operator's CRDs in the cluster; `monitoring: true` takes the defaults."""

    # Labels the Prometheus instance selects PodMonitors and PrometheusRules by (its
    # podMonitorSelector and ruleSelector; kube-prometheus-stack's default is
    # `release: <its Helm release>`).
    labels: dict[str, str] = Field(default_factory=dict)
    drift_psi: float = Field(default=0.25, gt=0)  # alert above this PSI (0.25: significant)
    drift_for: str = Field(default="15m", pattern=PROMETHEUS_DURATION)
    error_ratio: float = Field(default=0.05, gt=0, le=1)  # alert above this share of errors
    errors_for: str = Field(default="10m", pattern=PROMETHEUS_DURATION)
    dashboard: bool = True  # a ConfigMap for Grafana's dashboard sidecar


class MeshAllow(_Strict):
    """Who may call the config's entry point, besides the platform (kninfer.deploy.mesh)."""

    # "<namespace>/<name>": a ServiceAccount whose pods call the entry point, matched as the
    # Istio principal <trust domain>/ns/<namespace>/sa/<name> (mutual TLS identity).
    service_accounts: list[str] = Field(default_factory=list)
    # Every workload in these namespaces (Istio `source.namespaces`, also an mTLS identity).
    namespaces: list[str] = Field(default_factory=list)

    @field_validator("service_accounts")
    @classmethod
    def _accounts(cls, values: list[str]) -> list[str]:
        for value in values:
            namespace, slash, name = value.partition("/")
            if (
                not slash
                or not LABEL_RE.match(namespace)
                or len(namespace) > MAX_LABEL
                or not SUBDOMAIN_RE.match(name)
                or len(name) > MAX_SUBDOMAIN
            ):
                raise ValueError(
                    f"{value!r} is not <namespace>/<service account>: a DNS-1123 "
                    "label, '/', and a DNS-1123 subdomain (e.g. shop/checkout)"
                )
        return _unique("mesh.allow.service_accounts", values)

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, values: list[str]) -> list[str]:
        for value in values:
            if not LABEL_RE.match(value) or len(value) > MAX_LABEL:
                raise ValueError(
                    f"{value!r} is not a namespace name (a DNS-1123 label: "
                    "lower-case letters, digits and '-', at most 63 characters)"
                )
        return _unique("mesh.allow.namespaces", values)


def _unique(field: str, values: list[str]) -> list[str]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{field} repeats {', '.join(repeated)}")
    return values


class Mesh(_Strict):
    """Istio AuthorizationPolicies for the config's workloads (kninfer.deploy.mesh; docs/deploy.md,
    "Private to named callers"): each pod admits only its real callers. `mesh: true` takes the
    defaults: the platform's relays and, at the entry point, nobody else."""

    provider: Literal["istio"] = "istio"  # the only mesh whose policies are rendered
    allow: MeshAllow = Field(default_factory=lambda: MeshAllow())
    # The SPIFFE trust domain in principals: Istio's default unless the mesh was installed with
    # another (meshConfig.trustDomain).
    trust_domain: str = "cluster.local"

    @field_validator("trust_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not SUBDOMAIN_RE.match(value) or len(value) > MAX_SUBDOMAIN:
            raise ValueError(
                f"{value!r} is not a trust domain (a DNS-1123 subdomain such as cluster.local)"
            )
        return value


class Candidate(_Strict):
    """Another model served like the config's own: an experiment variant or a shadow. It takes
    the config's settings (scale, resources, transformer, ...) and serves the same model name, so
    a caller (the InferenceGraph router, a Trigger) reaches each at the same path."""

    storage_uri: str | None = None  # None: the embedded iris model (sklearn only)
    predictor: PredictorFamily | None = None  # None: the config's `predictor`
    # None: the config's `compiled` when the predictor is the config's, else false
    compiled: bool | None = None
    # None: the config's image for the same family and compiled, else the family's
    image: str | None = None


class Variant(Candidate):
    name: str  # a DNS-1123 label; the InferenceService is <config name>-<variant name>
    weight: int = Field(ge=0, le=100)  # percent of requests the router sends to this variant


class Experiment(_Strict):
    """A/B: one InferenceService per variant behind a KServe InferenceGraph Splitter."""

    variants: list[Variant] = Field(min_length=2)

    @model_validator(mode="after")
    def _check(self) -> Experiment:
        names = [v.name for v in self.variants]
        for name in names:
            if not LABEL_RE.match(name) or len(name) > MAX_LABEL:
                raise ValueError(
                    f"variant name {name!r} is not a DNS-1123 label (lower-case "
                    "letters, digits and '-', at most 63 characters)"
                )
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variant names must be unique; repeated: {', '.join(duplicates)}")
        # KServe's webhook refuses a Splitter whose weights do not sum to 100
        # (kserve pkg/apis/serving/v1alpha1/inference_graph_validation.go, InvalidWeightError).
        total = sum(v.weight for v in self.variants)
        if total != 100:
            weights = ", ".join(f"{v.name}={v.weight}" for v in self.variants)
            raise ValueError(f"variant weights must sum to 100, got {total} ({weights})")
        return self


class DeployConfig(_Strict):
    name: str
    namespace: str = "default"
    predictor: PredictorFamily = "sklearn"
    model_name: str | None = None  # default: `name`
    storage_uri: str | None = None  # None: the embedded iris model (sklearn only)
    # The model at storage_uri is compiled by `kninfer compile` (model.onnx and compile.json):
    # served through ONNX Runtime (`--runtime onnx`, so a directory without model.onnx fails to
    # start instead of reaching for scikit-learn) from the onnx image, which carries no
    # scikit-learn, mlflow or torch, for any predictor family (each serves its compiled graph).
    compiled: bool = False
    # None: the predictor family's image (FAMILY_IMAGE; `compiled`: the onnx one); a transformer
    # gets the sklearn one.
    image: str | None = None
    accelerator: Literal["cpu", "gpu"] = "cpu"
    gpu: Gpu = Field(default_factory=lambda: Gpu())
    # `container`: the predictor is a custom container in the ISVC; `runtime`: a
    # (Cluster)ServingRuntime declares the container; the ISVC names model format and storage URI.
    kserve: Literal["container", "runtime"] = "container"
    runtime: Runtime = Field(default_factory=lambda: Runtime())
    transformer: TransformerConfig | None = None
    scale: Scale = Field(default_factory=lambda: Scale())
    # Knative bounds: container-concurrency-max-limit 1000, max-revision-timeout-seconds 600.
    container_concurrency: int = Field(default=8, ge=0, le=1000)
    timeout_seconds: int = Field(default=120, ge=1, le=600)
    canary_percent: int | None = Field(default=None, ge=0, le=100)
    # What Knative routes to the pod. `http`: REST V1/V2 and CloudEvents on the `http1` port.
    # `grpc`: gRPC V2 over h2c on 8081 (Knative allows one port per container; REST then stays
    # inside the pod). Knative Serving "Configuring the container port" (`name: h2c`).
    serving_protocol: Literal["http", "grpc"] = "http"
    # The pods' ServiceAccount: credentials for s3:// and gs:// storage URIs (KServe's storage
    # initializer reads the secrets attached to it) and for workload identity.
    service_account: str | None = None
    resources: Resources | None = None  # None: per-accelerator defaults
    env: dict[str, str] = Field(default_factory=dict)
    args: list[str] = Field(default_factory=list)  # extra `kninfer serve` flags
    eventing: Eventing | None = None
    # Private by default: `public` is the only way a rendered service is published outside the
    # cluster (docs/deploy.md, "Exposure").
    exposure: Exposure = "cluster-local"
    experiment: Experiment | None = None  # A/B through a KServe InferenceGraph
    # A copy of each request for a candidate: through a second Trigger on the request events
    # (event-driven), or on the payload logger's request events (HTTP).
    shadow: Candidate | None = None
    logger: PayloadLogging | None = None  # payload logging of the predictor's requests
    monitoring: Monitoring | None = None  # PodMonitor, alerts and dashboard (Prometheus Operator)
    mesh: Mesh | None = None  # Istio AuthorizationPolicies: each workload admits its callers only

    @model_validator(mode="before")
    @classmethod
    def _http_shadow_logs_requests(cls, data: Any) -> Any:
        # A shadow of HTTP traffic is fed by the payload logger's request events (docs/deploy.md,
        # "Shadow traffic"): the logger is on, with its defaults unless the config sets it.
        if not isinstance(data, dict) or data.get("shadow") is None or data.get("logger"):
            return data
        eventing = data.get("eventing")
        if isinstance(eventing, Eventing):
            eventing = eventing.model_dump()
        event_driven = eventing is True or (
            isinstance(eventing, dict) and eventing.get("enabled", True)
        )
        return data if event_driven else {**data, "logger": {}}

    @field_validator("monitoring", "mesh", mode="before")
    @classmethod
    def _block_switch(cls, value: Any) -> Any:
        return {} if value is True else None if value is False else value

    @field_validator("eventing", mode="before")
    @classmethod
    def _eventing_switch(cls, value: Any) -> Any:
        # `eventing: true` / `eventing: false` is the on/off switch; a mapping configures it.
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @model_validator(mode="after")
    def _check(self) -> DeployConfig:
        if not NAME_RE.match(self.name) or len(self.name) > MAX_NAME:
            raise ValueError(
                f"name {self.name!r} must match {NAME_RE.pattern} and be at most "
                f"{MAX_NAME} characters (generated revision names must fit 63)"
            )
        if not LABEL_RE.match(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} is not a DNS-1123 label")
        if self.compiled:
            self._check_compiled()
        if self.experiment is None:
            if self.storage_uri is None and self.predictor != "sklearn":
                raise ValueError(
                    f"predictor {self.predictor} needs storage_uri (only sklearn has "
                    "an embedded default model)"
                )
            if self.kserve == "runtime" and self.storage_uri is None:
                raise ValueError(
                    "kserve: runtime needs storage_uri (the runtime loads /mnt/models)"
                )
        if (
            self.transformer is not None
            and self.transformer.name == "tabular"
            and self.transformer.storage_uri is None
        ):
            raise ValueError(
                "transformer tabular needs transformer.storage_uri: a directory "
                "holding features.json (or use the `iris` transformer)"
            )
        if self.serving_protocol == "grpc" and self.eventing is not None:
            raise ValueError(
                "eventing needs serving_protocol http: the Broker delivers "
                "CloudEvents over HTTP, and a grpc pod exposes only its h2c port"
            )
        if self.service_account is not None and not LABEL_RE.match(self.service_account):
            raise ValueError(f"service_account {self.service_account!r} is not a DNS-1123 label")
        reserved = sorted(RESERVED_ENV & set(self.env))
        if reserved:
            raise ValueError(
                f"env sets {', '.join(reserved)}, reserved by Knative's runtime contract"
            )
        if self.exposure == "public" and self.event_driven:
            raise ValueError(
                "exposure: public is refused for an event-driven service: its only "
                "caller is the Broker, which reaches it inside the cluster; to serve "
                "HTTP callers outside the cluster too, deploy the model again from a "
                "second config without eventing"
            )
        if self.experiment is not None:
            self._check_experiment(self.experiment)
        if self.shadow is not None:
            if not self.event_driven:
                self._check_http_shadow()
            self._check_candidate("shadow", self.shadow)
            shadow = self.shadow_config()
            assert shadow is not None
            self._check_runtime_images([self, shadow])
        return self

    def _check_compiled(self) -> None:
        if self.accelerator == "gpu":
            raise ValueError(
                "compiled: true runs on the CPU: the onnx image carries ONNX Runtime's CPU "
                "build (use accelerator: cpu)"
            )
        if self.storage_uri is None and self.experiment is None:
            raise ValueError(
                "compiled: true needs storage_uri, the directory holding model.onnx and "
                "compile.json (the onnx image has no embedded model)"
            )

    def _check_http_shadow(self) -> None:
        # The candidate gets the predictor's payload-log request events from the Broker.
        logger = self.logger
        if logger is None:
            raise ValueError("a shadow of HTTP traffic needs the payload logger (`logger`)")
        if logger.url is not None:
            raise ValueError(
                "a shadow of HTTP traffic takes the payload logger's request events "
                "from the namespace's Broker: leave logger.url unset (it defaults "
                "to the Broker)"
            )
        if logger.mode == "response":
            raise ValueError(
                "a shadow of HTTP traffic needs the payload logger's request "
                "events: logger.mode all or request, not response"
            )
        if self.kserve == "runtime":
            raise ValueError(
                "a shadow of HTTP traffic needs the payload logger's flags on the "
                "predictor, which a shared ServingRuntime does not carry: use "
                "kserve: container"
            )

    def _check_runtime_images(self, configs: list[DeployConfig]) -> None:
        # One (Cluster)ServingRuntime per family and accelerator declares one image for every
        # InferenceService that names it.
        if self.kserve != "runtime":
            return
        served: dict[str, set[tuple[str, str]]] = {}
        for config in configs:
            image = config.gpu.image if config.gpu_enabled else config.cpu_image
            served.setdefault(config.runtime_name, set()).add((config.predictor, image))
        mixed = sorted(name for name, found in served.items() if len(found) > 1)
        if mixed:
            raise ValueError(
                f"kserve: runtime: one ServingRuntime ({', '.join(mixed)}) declares "
                "one family and one image, but the models here differ in them "
                "(use kserve: container, or one family and image)"
            )

    def _check_experiment(self, experiment: Experiment) -> None:
        for field, value in (
            ("storage_uri", self.storage_uri),
            ("canary_percent", self.canary_percent),
            ("eventing", self.eventing),
        ):
            if value is not None:
                raise ValueError(
                    f"experiment and {field} are alternatives: the variants name "
                    "the models, the InferenceGraph splits the HTTP traffic (for "
                    "event-driven services use shadow)"
                )
        for variant in experiment.variants:
            self._check_candidate(f"experiment variant {variant.name}", variant)
        self._check_runtime_images([c for _, c in self.variant_configs()])

    def _check_candidate(self, what: str, candidate: Candidate) -> None:
        try:
            self.candidate_config(candidate, self._suffix(candidate))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            raise ValueError(f"{what}: {where + ': ' if where else ''}{message}") from None

    @staticmethod
    def _suffix(candidate: Candidate) -> str:
        return candidate.name if isinstance(candidate, Variant) else SHADOW_SUFFIX

    def candidate_config(self, candidate: Candidate, suffix: str) -> DeployConfig:
        """The config that serves `candidate` as <name>-<suffix>: this one's settings, the
        candidate's model, the same served model name, cluster-local, no experiment or events."""
        predictor = candidate.predictor or self.predictor
        same_family = predictor == self.predictor
        compiled = (
            candidate.compiled
            if candidate.compiled is not None
            else (self.compiled and same_family)
        )
        same_image = same_family and compiled == self.compiled
        image = candidate.image or (self.image if same_image else None)
        data = self.model_dump(exclude={"experiment", "shadow", "eventing", "canary_percent"})
        data.update(
            name=f"{self.name}-{suffix}",
            model_name=self.served_model,
            storage_uri=candidate.storage_uri,
            predictor=predictor,
            compiled=compiled,
            image=image,
            exposure="cluster-local",
        )
        if candidate.image is not None:
            data["gpu"]["image"] = candidate.image
        return DeployConfig.model_validate(data)

    def variant_configs(self) -> list[tuple[Variant, DeployConfig]]:
        """(variant, its config) for each experiment variant, in the config's order."""
        if self.experiment is None:
            return []
        return [(v, self.candidate_config(v, v.name)) for v in self.experiment.variants]

    def shadow_config(self) -> DeployConfig | None:
        """The shadow's config: <name>-candidate, the name of its InferenceService."""
        return None if self.shadow is None else self.candidate_config(self.shadow, SHADOW_SUFFIX)

    @property
    def runtime_name(self) -> str:
        """The (Cluster)ServingRuntime an InferenceService of this config names."""
        suffix = "-gpu" if self.gpu_enabled else ""
        compiled = f"-{COMPILED_FAMILY}" if self.compiled else ""
        return self.runtime.name or f"kninfer-{self.predictor}{compiled}{suffix}"

    @property
    def event_driven(self) -> bool:
        return self.eventing is not None and self.eventing.enabled

    @property
    def cpu_image(self) -> str:
        family = COMPILED_FAMILY if self.compiled else self.predictor
        return self.image or FAMILY_IMAGE.format(family=family)

    @property
    def transformer_image(self) -> str:
        assert self.transformer is not None
        return self.transformer.image or self.image or FAMILY_IMAGE.format(family="sklearn")

    @property
    def served_model(self) -> str:
        return self.model_name or self.name

    @property
    def gpu_enabled(self) -> bool:
        return self.accelerator == "gpu"


class ConfigError(ValueError):
    """A config file that cannot be rendered; the message names the file and the field."""


def load_config(path: Path) -> DeployConfig:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a deploy config is a mapping with at least `name`")
    try:
        return DeployConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "(top level)"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{path}: {where}: {message}")
        raise ConfigError("\n".join(problems)) from None
