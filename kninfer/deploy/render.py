"""`kninfer render`: one DeployConfig -> KServe and Knative manifests as plain dicts -> YAML.

Files written under OUTDIR (multi-document YAML, in `kubectl apply` order):
- kserve/<name>.yaml: [ServingRuntime|ClusterServingRuntime,] InferenceService (Knative mode);
  with an experiment, one InferenceService per variant (<name>-<variant>) and the
  InferenceGraph (<name>) that splits between them; with a shadow, the candidate's
  InferenceService (<name>-candidate) after the config's own
- knative/<name>.yaml: plain Knative Service(s) for clusters without KServe
- knative/<name>-eventing.yaml: Broker, Triggers, result and dead-letter sinks (eventing on)
- monitoring/<name>.yaml: PodMonitor, PrometheusRule and the Grafana dashboard's ConfigMap
  (`monitoring` on; kninfer.deploy.monitoring), for either variant
- with `mesh`, kserve/<name>.yaml and knative/<name>.yaml end with an Istio
  AuthorizationPolicy per workload (kninfer.deploy.mesh), selecting its pods by the labels that
  variant's controller puts on them

The plain Knative Services carry the names KServe gives the Services it generates
(`<name>-predictor`, `<name>-transformer`, kserve pkg/constants PredictorServiceName), so the
eventing file works unchanged with either variant. The two variants are alternatives: apply one
of them per namespace, never both.

Every service is cluster-local unless its config says `exposure: public` (docs/deploy.md,
"Exposure"): only the config's entry point can be public; experiment variants, shadows, a
predictor behind a transformer and event sinks never are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The event contract has one home (kninfer.cloudevents, a light module: no kserve, no cloudevents).
from kninfer.cloudevents.contract import (
    INFERENCE_SERVICE_EXTENSION,
    LOGGER_REQUEST_TYPE,
    MODEL_EXTENSION,
    REQUEST_TYPE,
    RESPONSE_TYPE,
    reply_source,
)
from kninfer.deploy.config import DeployConfig, Eventing, Resources, Sink
from kninfer.deploy.k8s_names import recommended_labels
from kninfer.deploy.mesh import RELAY_NAMESPACES, mesh_documents
from kninfer.deploy.monitoring import monitoring_documents

__all__ = [
    "MODEL_EXTENSION",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "exposures",
    "policies",
    "render",
    "write",
]
MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts STORAGE_URI's files
PORT = 8080  # Knative passes it back to the container as $PORT, which `kninfer serve` honours
GRPC_PORT = 8081  # `kninfer serve`'s gRPC port; the served port when serving_protocol is grpc

Doc = dict[str, Any]

# Knative Serving publishes a Service (or Route) labelled so only on the cluster-local gateway, at
# http://<name>.<namespace>.svc.cluster.local (knative docs, serving/services/private-services.md).
# KServe in Knative mode reads the same label on an InferenceService (constants.VisibilityLabel;
# reconcilers/ingress/ingress_reconciler.go: no external gateway host when it is cluster-local)
# and copies the InferenceService's, and an InferenceGraph's, labels onto the Knative Services it
# generates (inferencegraph/knative_reconciler.go createKnativeService).
KNATIVE_VISIBILITY = "networking.knative.dev/visibility"
# KServe's own label (constants.NetworkVisibility), read on InferenceServices by its Standard
# (raw) mode ingress and HTTPRoute reconcilers (raw_ingress_reconciler.go,
# httproute_reconciler.go) and on InferenceGraphs (openshift_route_reconciler.go). Set as well,
# so a service stays private if its deployment mode is switched.
KSERVE_VISIBILITY = "networking.kserve.io/visibility"
CLUSTER_LOCAL = "cluster-local"
CLUSTER_DOMAIN = "svc.cluster.local"  # kserve constants.ClusterLocalDomain
# A Broker's address: the multi-tenant ingress, path /<namespace>/<broker> (knative eventing,
# MTChannelBasedBroker; a Broker's status.address.url), the default sink of KServe's logger too.
BROKER_INGRESS = "http://broker-ingress.knative-eventing.svc.cluster.local"

_CPU_RESOURCES = Resources(
    requests={"cpu": "500m", "memory": "1Gi"}, limits={"cpu": "2", "memory": "2Gi"}
)
_GPU_RESOURCES = Resources(
    requests={"cpu": "2", "memory": "8Gi"}, limits={"cpu": "4", "memory": "16Gi"}
)


def predictor_service(config: DeployConfig) -> str:
    return f"{config.name}-predictor"


def transformer_service(config: DeployConfig) -> str:
    return f"{config.name}-transformer"


def entry_service(config: DeployConfig) -> str:
    """The Knative Service that takes requests first: the transformer when there is one."""
    return transformer_service(config) if config.transformer else predictor_service(config)


def _labels(config: DeployConfig, component: str) -> dict[str, str]:
    return recommended_labels(config.name, component)


def _meta(
    config: DeployConfig,
    name: str,
    component: str,
    annotations: dict[str, str] | None = None,
    *,
    private: bool | None = None,
    kserve: bool = False,
) -> Doc:
    """Object metadata. `private`: True labels a Knative Service (and with `kserve`, an
    InferenceService or InferenceGraph) cluster-local; None leaves visibility out (not a
    service)."""
    labels = _labels(config, component)
    if private:
        labels[KNATIVE_VISIBILITY] = CLUSTER_LOCAL
        if kserve:
            labels[KSERVE_VISIBILITY] = CLUSTER_LOCAL
    meta: Doc = {"name": name, "namespace": config.namespace, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _private(config: DeployConfig) -> bool:
    return config.exposure == "cluster-local"


def _resources(config: DeployConfig) -> Doc:
    base = config.resources or (_GPU_RESOURCES if config.gpu_enabled else _CPU_RESOURCES)
    requests = {k: str(v) for k, v in base.requests.items()}
    limits = {k: str(v) for k, v in base.limits.items()}
    if config.gpu_enabled:
        # Extended resources: whole numbers, and requests must equal limits when both are set.
        requests[config.gpu.resource] = str(config.gpu.count)
        limits[config.gpu.resource] = str(config.gpu.count)
    out: Doc = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _security_context() -> Doc:
    # The images run as uid 1000 (Dockerfile); these are the "restricted" Pod Security settings.
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _ports(config: DeployConfig) -> list[Doc]:
    if config.serving_protocol == "grpc":
        return [{"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"}]
    return [{"name": "http1", "containerPort": PORT, "protocol": "TCP"}]


def _grpc_args(config: DeployConfig) -> list[str]:
    # Knative sets $PORT to the container port, here the gRPC one: keep HTTP on its own port.
    return ["--http-port", str(PORT)] if config.serving_protocol == "grpc" else []


def _protocol(config: DeployConfig) -> str:
    """What the pods speak, in KServe's words (PROTOCOL env, protocolVersion) and kninfer's
    (--predictor-protocol): v2 or grpc-v2."""
    return "grpc-v2" if config.serving_protocol == "grpc" else "v2"


def _probe(config: DeployConfig, path: str) -> Doc:
    if config.serving_protocol == "grpc":
        # Knative probes only the serving port; kninfer opens gRPC once the model is loaded and
        # warmed, and closes it when draining, so an open port means ready.
        return {"tcpSocket": {"port": GRPC_PORT}}
    return _http_probe(path)


def _probes(config: DeployConfig) -> Doc:
    # Readiness on the V2 ready endpoint: Knative's queue-proxy runs it and routes traffic only
    # after the model is loaded and warmed (kninfer loads before opening the port). The startup
    # probe gives a slow (GPU) load time before liveness may restart the container.
    # The port is explicit because the ServingRuntime CRD (and the ISVC's startupProbe)
    # require it; Knative accepts it when it equals the serving port.
    startup_budget_s = 600 if config.gpu_enabled else 180
    return {
        "readinessProbe": _probe(config, "/v2/health/ready"),
        "livenessProbe": {
            **_probe(config, "/v2/health/live"),
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "startupProbe": {
            **_probe(config, "/v2/health/live"),
            "periodSeconds": 2,
            "failureThreshold": startup_budget_s // 2,
        },
    }


def _http_probe(path: str) -> Doc:
    return {"httpGet": {"path": path, "port": PORT}}


def _env(config: DeployConfig, extra: dict[str, str] | None = None) -> list[Doc]:
    env = dict(config.env)
    env.update(extra or {})
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def _image(config: DeployConfig) -> str:
    return config.gpu.image if config.gpu_enabled else config.cpu_image


def predictor_args(config: DeployConfig, *, storage: str, graph_step: bool = False) -> list[str]:
    """`kninfer serve` flags for the predictor. `storage` is `mounted` (KServe's storage
    initializer downloaded STORAGE_URI to /mnt/models), `download` (kninfer fetches the URI
    itself, plain Knative) or `template` (ServingRuntime, model name from `{{.Name}}`).
    `graph_step`: an InferenceGraph calls this InferenceService (see `_model_name_args`)."""
    args = ["serve", "--predictor", config.predictor]
    if config.compiled:
        # model.onnx or nothing: a directory without one fails to start, saying so, rather than
        # reaching for scikit-learn, which the onnx image does not carry.
        args += ["--runtime", "onnx"]
    if config.storage_uri is not None:
        pvc = _pvc(config.storage_uri)
        if storage == "download" and pvc is not None:
            args += ["--model-dir", f"{MODEL_DIR}/{pvc[1]}".rstrip("/")]  # mounted, see below
        elif storage == "download":
            args += ["--storage-uri", config.storage_uri]
        else:
            args += ["--model-dir", MODEL_DIR]
    if storage == "template":
        args += ["--model-name", "{{.Name}}"]
    else:
        args += _model_name_args(config, graph_step=graph_step)
    if config.gpu_enabled:
        args += ["--device", "cuda"]
    if storage != "template":  # a ServingRuntime is shared: the InferenceService says it
        args += _logger_args(config)
    return args + _grpc_args(config) + list(config.args)


def _logger_args(config: DeployConfig) -> list[str]:
    """`kninfer serve` flags for payload logging (kninfer.observability.payload_log), the
    in-process counterpart of KServe's `spec.predictor.logger`."""
    logger = config.logger
    if logger is None:
        return []
    broker = config.eventing.broker if config.eventing is not None else "default"
    url = logger.url or f"{BROKER_INGRESS}/{config.namespace}/{broker}"
    args = ["--logger-url", url, "--logger-namespace", config.namespace]
    if logger.mode != "all":
        args += ["--logger-mode", logger.mode]
    if logger.headers:
        args += ["--logger-headers", ",".join(logger.headers)]
    return args


def _model_name_args(config: DeployConfig, *, graph_step: bool) -> list[str]:
    if graph_step:
        # An InferenceGraph step calls <isvc address>/v2/models/<model>/infer, the model read
        # from a `--model_name` argument (KServe's spelling, a prefix test) of the predictor, else
        # the InferenceService's name (kserve inferenceservice/utils GetModelName,
        # GetPredictorEndpoint). `kninfer serve` accepts that spelling as an alias.
        return [f"--model_name={config.served_model}"]
    return ["--model-name", config.served_model]


def _predictor_container(
    config: DeployConfig,
    *,
    name: str,
    storage: str,
    env: dict[str, str] | None = None,
    graph_step: bool = False,
) -> Doc:
    container: Doc = {
        "name": name,
        "image": _image(config),
        "args": predictor_args(config, storage=storage, graph_step=graph_step),
        "ports": _ports(config),
        "resources": _resources(config),
        "securityContext": _security_context(),
        **_probes(config),
    }
    env_list = _env(config, env)
    if env_list:
        container["env"] = env_list
    return container


def _transformer_args(config: DeployConfig, *, kserve_spelling: bool) -> list[str]:
    assert config.transformer is not None
    host = f"{predictor_service(config)}.{config.namespace}:80"
    protocol = _protocol(config)  # the predictor's Knative Service speaks what its pod serves
    files: list[str] = []
    if config.transformer.storage_uri is not None:
        files = (
            ["--model-dir", MODEL_DIR]
            if kserve_spelling
            else ["--storage-uri", config.transformer.storage_uri]
        )
    if kserve_spelling:
        # KServe appends `--model_name <isvc>`, `--predictor_host <svc>.<ns>` and
        # `--workers <containerConcurrency>` to a custom transformer unless an argument with that
        # prefix is present (kserve pkg/apis/serving/v1beta1/transformer_custom.go, IncludesArg).
        # Giving them in KServe's spelling (accepted by `kninfer serve` as aliases) keeps our
        # values and stops containerConcurrency from becoming a process count.
        return [
            "serve",
            "--transformer",
            config.transformer.name,
            f"--model_name={config.served_model}",
            f"--predictor_host={host}",
            "--predictor-protocol",
            protocol,
            "--workers=1",
            *files,
            *_grpc_args(config),
        ]
    return [
        "serve",
        "--transformer",
        config.transformer.name,
        "--model-name",
        config.served_model,
        "--predictor-host",
        host,
        "--predictor-protocol",
        protocol,
        *files,
        *_grpc_args(config),
    ]


def _transformer_container(config: DeployConfig, *, name: str, kserve_spelling: bool) -> Doc:
    assert config.transformer is not None
    resources = config.transformer.resources
    container: Doc = {
        "name": name,
        "image": config.transformer_image,
        "args": _transformer_args(config, kserve_spelling=kserve_spelling),
        "ports": _ports(config),
        "resources": {
            "requests": {k: str(v) for k, v in resources.requests.items()},
            "limits": {k: str(v) for k, v in resources.limits.items()},
        },
        "securityContext": _security_context(),
        "readinessProbe": _probe(config, "/v2/health/ready"),
        "livenessProbe": {
            **_probe(config, "/v2/health/live"),
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
    }
    env = {"PROTOCOL": _protocol(config)} if kserve_spelling else {}
    if kserve_spelling and config.transformer.storage_uri is not None:
        env["STORAGE_URI"] = config.transformer.storage_uri  # KServe's storage initializer
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    return container


def _revision_annotations(config: DeployConfig) -> dict[str, str]:
    """Per-revision Knative autoscaling annotations (knative docs serving/autoscaling/*); all
    values are strings, since annotations are map[string]string."""
    scale = config.scale
    annotations = {
        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/min-scale": str(scale.min),
        "autoscaling.knative.dev/max-scale": str(scale.max),
        "autoscaling.knative.dev/metric": scale.metric,
        "autoscaling.knative.dev/target": str(scale.target),
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": scale.retention,
    }
    annotations.update(_deadline_annotation(config))
    return annotations


def _deadline_annotation(config: DeployConfig) -> dict[str, str]:
    # A GPU pod scaled from zero may wait minutes for a node (kserve#1247, knative/serving#6788);
    # the default 600s progress deadline then fails the revision. GPU configs default to 20m.
    deadline = config.scale.progress_deadline or ("20m" if config.gpu_enabled else None)
    return {"serving.knative.dev/progress-deadline": deadline} if deadline else {}


def _placement(config: DeployConfig) -> Doc:
    if not config.gpu_enabled:
        return {}
    return {
        "nodeSelector": dict(config.gpu.node_selector),
        "tolerations": [dict(t) for t in config.gpu.tolerations],
    }


# --- KServe -----------------------------------------------------------------------------------


def runtime_name(config: DeployConfig) -> str:
    return config.runtime_name


def serving_runtime(config: DeployConfig) -> Doc:
    """A (Cluster)ServingRuntime declaring the V2 protocol and the model format it serves."""
    metadata = _meta(config, runtime_name(config), "runtime")
    if config.runtime.kind == "ClusterServingRuntime":
        del metadata["namespace"]  # cluster-scoped
    container = _predictor_container(config, name="kserve-container", storage="template")
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": config.runtime.kind,
        "metadata": metadata,
        "spec": {
            "annotations": {
                "prometheus.kserve.io/path": "/metrics",
                "prometheus.kserve.io/port": str(PORT),
            },
            "containers": [container],
            "multiModel": False,
            "protocolVersions": ["grpc-v2"] if config.serving_protocol == "grpc" else ["v2", "v1"],
            # autoSelect off: an ISVC must name this runtime, so installing it never captures
            # other teams' `modelFormat: sklearn` services from the stock runtime.
            "supportedModelFormats": [
                {"name": config.predictor, "version": "1", "autoSelect": False}
            ],
        },
    }


def _component_extension(config: DeployConfig) -> Doc:
    scale = config.scale
    return {
        "minReplicas": scale.min,
        "maxReplicas": scale.max,
        "scaleMetric": scale.metric,
        "scaleTarget": scale.target,
        "containerConcurrency": config.container_concurrency,
        "timeout": config.timeout_seconds,
    }


def inference_service(config: DeployConfig, *, graph_step: bool = False) -> Doc:
    """The config's InferenceService. `graph_step`: an InferenceGraph routes to it, so the
    predictor states its model name where KServe looks for it."""
    annotations = {"serving.kserve.io/deploymentMode": "Knative"}
    if config.canary_percent is not None:
        # Tags `latest` and `prev` get their own URLs for testing each side of the split.
        annotations["serving.kserve.io/enable-tag-routing"] = "true"
    predictor: Doc = _component_extension(config)
    # KServe copies component annotations onto the Knative revision template (kserve
    # components/predictor.go); the autoscaling ones it derives from min/max/scale* itself.
    predictor["annotations"] = {
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": config.scale.retention,
        **_deadline_annotation(config),
    }
    predictor.update(_placement(config))
    if config.service_account is not None:
        predictor["serviceAccountName"] = config.service_account
    if config.canary_percent is not None:
        predictor["canaryTrafficPercent"] = config.canary_percent
    if config.kserve == "runtime":
        assert config.storage_uri is not None
        model: Doc = {
            "modelFormat": {"name": config.predictor},
            "protocolVersion": _protocol(config),
            "runtime": runtime_name(config),
            "storageUri": config.storage_uri,
        }
        args: list[str] = []
        if config.served_model != config.name or graph_step:
            # KServe concatenates these after the runtime's args (pkg/utils MergeRuntimeContainers),
            # so this flag overrides the runtime's `--model-name {{.Name}}`.
            args = _model_name_args(config, graph_step=graph_step)
        args += _logger_args(config)
        if args:
            model["args"] = args
        predictor["model"] = model
    else:
        env = {"PROTOCOL": _protocol(config)}
        if config.storage_uri is not None:
            env["STORAGE_URI"] = config.storage_uri  # runs KServe's storage initializer
        predictor["containers"] = [
            _predictor_container(
                config, name="kserve-container", storage="mounted", env=env, graph_step=graph_step
            )
        ]
    spec: Doc = {"predictor": predictor}
    if config.transformer is not None:
        transformer = _component_extension(config)
        transformer["annotations"] = {
            "autoscaling.knative.dev/scale-to-zero-pod-retention-period": config.scale.retention
        }
        if config.service_account is not None:
            transformer["serviceAccountName"] = config.service_account
        transformer["containers"] = [
            _transformer_container(config, name="kserve-container", kserve_spelling=True)
        ]
        spec["transformer"] = transformer
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _meta(
            config,
            config.name,
            "inferenceservice",
            annotations,
            private=_private(config),
            kserve=True,
        ),
        "spec": spec,
    }


def inference_graph(config: DeployConfig) -> Doc:
    """The A/B entry point: a KServe InferenceGraph whose `root` node is a Splitter over the
    variants' InferenceServices. KServe's router picks one step per request at random, in
    proportion to `weight` (kserve cmd/router/main.go); the webhook wants the weights to sum to
    100 (pkg/apis/serving/v1alpha1/inference_graph_validation.go), as the config does."""
    assert config.experiment is not None
    annotations = {
        "serving.kserve.io/deploymentMode": "Knative",
        # KServe copies the graph's annotations onto the router's Knative revision and defaults
        # min-scale to 1 when none is given (inferencegraph/knative_reconciler.go).
        "autoscaling.knative.dev/min-scale": str(config.scale.min),
    }
    steps = [
        {"name": variant.name, "serviceName": variant_config.name, "weight": variant.weight}
        for variant, variant_config in config.variant_configs()
    ]
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": _meta(
            config,
            config.name,
            "inferencegraph",
            annotations,
            private=_private(config),
            kserve=True,
        ),
        "spec": {"nodes": {"root": {"routerType": "Splitter", "steps": steps}}},
    }


def kserve_documents(config: DeployConfig) -> list[Doc]:
    if config.experiment is not None:
        served = [(c, True) for _, c in config.variant_configs()]
    else:
        shadow = config.shadow_config()
        served = [(config, False)] + ([] if shadow is None else [(shadow, False)])
    runtimes: dict[str, Doc] = {}
    if config.kserve == "runtime":
        # Models of one family share its runtime (the config checks that they agree on it).
        for served_config, _ in served:
            runtime = serving_runtime(served_config)
            runtime["metadata"]["labels"] = _labels(config, "runtime")
            runtimes.setdefault(runtime["metadata"]["name"], runtime)
    docs = list(runtimes.values())
    docs += [inference_service(c, graph_step=graph_step) for c, graph_step in served]
    return docs + ([inference_graph(config)] if config.experiment is not None else [])


# --- Knative Serving --------------------------------------------------------------------------


def knative_service(
    config: DeployConfig,
    name: str,
    component: str,
    container: Doc,
    *,
    placement: bool,
    private: bool,
) -> Doc:
    template_spec: Doc = {
        "containerConcurrency": config.container_concurrency,
        "timeoutSeconds": config.timeout_seconds,
        "containers": [container],
    }
    if placement:
        template_spec.update(_placement(config))
    if config.service_account is not None:
        template_spec["serviceAccountName"] = config.service_account
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": _meta(config, name, component, private=private),
        "spec": {
            "template": {
                "metadata": {
                    "labels": _labels(config, component),
                    "annotations": _revision_annotations(config),
                },
                "spec": template_spec,
            },
        },
    }


def _pvc(uri: str) -> tuple[str, str] | None:
    """(claim, path inside it) of a `pvc://claim/path` storage URI (KServe's PVC scheme)."""
    if not uri.startswith("pvc://"):
        return None
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return claim, path


def knative_documents(config: DeployConfig) -> list[Doc]:
    docs = _knative_services(config)
    shadow = config.shadow_config()
    return docs if shadow is None else docs + _knative_services(shadow)


def _knative_services(config: DeployConfig) -> list[Doc]:
    # Only the entry service may be public: a predictor behind a transformer has one caller.
    predictor = knative_service(
        config,
        predictor_service(config),
        "predictor",
        _predictor_container(config, name="predictor", storage="download"),
        placement=True,
        private=_private(config) or config.transformer is not None,
    )
    pvc = _pvc(config.storage_uri) if config.storage_uri else None
    if pvc is not None:
        # The claim mounted read-only where KServe would mount it: nothing is downloaded on
        # scale-up. Knative needs its `kubernetes.podspec-persistent-volume-claim` feature flag.
        spec = predictor["spec"]["template"]["spec"]
        spec["volumes"] = [
            {"name": "model", "persistentVolumeClaim": {"claimName": pvc[0], "readOnly": True}}
        ]
        spec["containers"][0]["volumeMounts"] = [
            {"name": "model", "mountPath": MODEL_DIR, "readOnly": True}
        ]
    docs = [predictor]
    if config.transformer is not None:
        docs.append(
            knative_service(
                config,
                transformer_service(config),
                "transformer",
                _transformer_container(config, name="transformer", kserve_spelling=False),
                placement=False,
                private=_private(config),
            )
        )
    return docs


# --- Knative Eventing -------------------------------------------------------------------------


def _ksvc_ref(name: str) -> Doc:
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name}


def _destination(sink: Sink) -> Doc:
    if sink.service is not None:
        return {"ref": _ksvc_ref(sink.service)}
    return {"uri": sink.uri}


def _sink_service(config: DeployConfig, name: str, component: str, image: str) -> Doc:
    container = {
        "name": "display",
        "image": image,
        "ports": [{"name": "http1", "containerPort": PORT, "protocol": "TCP"}],
        "securityContext": _security_context(),
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "128Mi"},
        },
    }
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        # A sink's only caller is the Broker: never public.
        "metadata": _meta(config, name, component, private=True),
        "spec": {
            "template": {
                "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "0"}},
                "spec": {"containers": [container]},
            }
        },
    }


def eventing_documents(config: DeployConfig) -> list[Doc]:
    events = config.eventing
    if events is None or not events.enabled:
        return _http_shadow_documents(config)
    docs: list[Doc] = []
    results = events.results_sink or Sink(service=f"{config.name}-results")
    dead_letter = events.dead_letter_sink or Sink(service=f"{config.name}-dead-letter")
    delivery = {
        # retry = attempts after the first; 4xx other than 404/408/409/429 are not retried and
        # go straight to the dead-letter sink (knative specs, eventing data-plane.md).
        "retry": events.retry,
        "backoffPolicy": events.backoff_policy,
        "backoffDelay": events.backoff_delay,
        "deadLetterSink": _destination(dead_letter),
    }
    if events.dead_letter_sink is None:
        docs.append(
            _sink_service(config, dead_letter.service or "", "dead-letter-sink", events.sink_image)
        )
    if events.results_sink is None:
        docs.append(_sink_service(config, results.service or "", "results-sink", events.sink_image))
    if events.create_broker:
        docs.append(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "metadata": {
                    "name": events.broker,
                    "namespace": config.namespace,
                    "labels": _labels(config, "broker"),
                    "annotations": {"eventing.knative.dev/broker.class": events.broker_class},
                },
                "spec": {"delivery": dict(delivery)},
            }
        )
    request_filter = {"type": REQUEST_TYPE}
    if events.match_model:
        request_filter[MODEL_EXTENSION] = config.served_model
    path = "/" if events.path == "root" else f"/v2/models/{config.served_model}/infer"
    docs.append(
        _trigger(
            config,
            f"{config.name}-requests",
            events.broker,
            request_filter,
            {"ref": _ksvc_ref(entry_service(config)), "uri": path},
            delivery,
        )
    )
    # Replies are re-enqueued into the broker (knative specs, data-plane.md "Replies"): they carry
    # a different type, so they match only this trigger and never loop back into the model.
    reply_filter = {
        "type": RESPONSE_TYPE,
        "source": reply_source(config.served_model, None, entry_service(config)),
    }
    docs.append(
        _trigger(
            config,
            f"{config.name}-responses",
            events.broker,
            reply_filter,
            _destination(results),
            delivery,
        )
    )
    shadow = config.shadow_config()
    if shadow is not None:
        docs += _shadow_documents(config, shadow, request_filter, path, delivery)
    return docs


def _shadow_documents(
    config: DeployConfig,
    shadow: DeployConfig,
    request_filter: dict[str, str],
    path: str,
    delivery: Doc,
) -> list[Doc]:
    """A second Trigger with the request Trigger's filter: the Broker delivers each request
    event to every Trigger that matches it (knative specs, eventing overview.md "Trigger"), so
    the candidate gets a copy. Its replies are re-enqueued like the baseline's, but with the
    source kninfer/<candidate service>/models/<model>: the results Trigger matches the baseline's
    exact source and no rendered Trigger matches the candidate's, so the Broker drops them. Its
    failures go to a dead-letter sink of its own, never the baseline's."""
    assert config.eventing is not None
    dead_letter = f"{shadow.name}-dead-letter"
    docs = [
        _sink_service(config, dead_letter, "shadow-dead-letter-sink", config.eventing.sink_image)
    ]
    docs.append(
        _trigger(
            config,
            f"{shadow.name}-requests",
            config.eventing.broker,
            request_filter,
            {"ref": _ksvc_ref(entry_service(shadow)), "uri": path},
            {**delivery, "deadLetterSink": {"ref": _ksvc_ref(dead_letter)}},
        )
    )
    return docs


def _http_shadow_documents(config: DeployConfig) -> list[Doc]:
    """A shadow of HTTP traffic: the predictor's payload logger sends each request it answers
    to the namespace's Broker as a KServe logger request event (the config turns the logger on,
    kninfer.deploy.config); a Trigger on those events, from this InferenceService only, posts
    them in binary mode to the candidate's predictor, which takes a CloudEvent on its V2
    endpoint. The candidate's payload logger keeps the event's `requestid`, so its response
    events join the baseline's on it. Its reply events match no Trigger and are dropped; its
    failures go to a dead-letter sink of its own. A transformer's output is what the predictor
    logs, so the candidate's predictor, not its transformer, is the subscriber."""
    shadow = config.shadow_config()
    if shadow is None:
        return []
    events = Eventing()  # the logger's Broker: the namespace's `default` (_logger_args)
    dead_letter = f"{shadow.name}-dead-letter"
    delivery = {
        "retry": events.retry,
        "backoffPolicy": events.backoff_policy,
        "backoffDelay": events.backoff_delay,
        "deadLetterSink": {"ref": _ksvc_ref(dead_letter)},
    }
    logged = {"type": LOGGER_REQUEST_TYPE, INFERENCE_SERVICE_EXTENSION: config.name}
    return [
        _sink_service(config, dead_letter, "shadow-dead-letter-sink", events.sink_image),
        _trigger(
            config,
            f"{shadow.name}-requests",
            events.broker,
            logged,
            {
                "ref": _ksvc_ref(predictor_service(shadow)),
                "uri": f"/v2/models/{shadow.served_model}/infer",
            },
            delivery,
        ),
    ]


def _trigger(
    config: DeployConfig,
    name: str,
    broker: str,
    exact: dict[str, str],
    subscriber: Doc,
    delivery: Doc,
) -> Doc:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": _meta(config, name, "trigger"),
        "spec": {
            "broker": broker,
            "filters": [{"exact": dict(exact)}],
            "subscriber": subscriber,
            "delivery": dict(delivery),
        },
    }


# --- output -----------------------------------------------------------------------------------


def dump_documents(docs: list[Doc], header: str) -> str:
    """Deterministic multi-document YAML: sorted keys, block style, no line wrapping. PyYAML
    quotes strings that YAML 1.1 would read as another type ("0", "true", "on")."""
    import yaml

    body = "---\n".join(
        yaml.safe_dump(doc, sort_keys=True, default_flow_style=False, width=4096) for doc in docs
    )
    return header + body


VARIANTS = ("kserve", "knative")


def knative_gap(config: DeployConfig) -> str | None:
    """Why a plain Knative Service cannot carry this config, or None."""
    if config.storage_uri is not None and config.storage_uri.startswith("oci://"):
        return (
            "an oci:// storage_uri is a KServe modelcar (the model image runs beside the "
            "server and shares /mnt/models; enable it in KServe's storageInitializer "
            "config); plain Knative has no storage initializer: render the kserve variant, "
            "or use pvc://"
        )
    if config.canary_percent is not None:
        return (
            "canary_percent needs KServe's InferenceService (canaryTrafficPercent); a plain "
            "Knative Service has no such field: render the kserve variant, or split "
            "traffic between revisions with `kninfer canary start`"
        )
    if config.experiment is not None:
        return (
            "an experiment needs KServe's InferenceGraph (its Splitter router); plain "
            "Knative has no router between Services: render the kserve variant"
        )
    return None


def render(
    config: DeployConfig, source: str, variants: tuple[str, ...] = VARIANTS
) -> dict[str, str]:
    """Relative path -> file text for one config. `source` names the config in the header.

    A variant that would silently drop part of the config is not rendered: asked for alone it
    is a ConfigError, alongside the other it is left out (`knative_gap` says why)."""
    from kninfer.deploy.config import ConfigError

    header = f"# Generated by `kninfer render {source}`; edit the config, not this file.\n"
    files: dict[str, str] = {}
    if "kserve" in variants:
        files[f"kserve/{config.name}.yaml"] = dump_documents(
            kserve_documents(config) + mesh_documents(config, "kserve"), header
        )
    if "knative" in variants:
        gap = knative_gap(config)
        if gap is None:
            files[f"knative/{config.name}.yaml"] = dump_documents(
                knative_documents(config) + mesh_documents(config, "knative"), header
            )
        elif variants == ("knative",):
            raise ConfigError(f"{source}: cannot render plain Knative: {gap}")
    events = eventing_documents(config)
    if events:
        files[f"knative/{config.name}-eventing.yaml"] = dump_documents(events, header)
    watching = monitoring_documents(config, PORT)
    if watching:
        files[f"monitoring/{config.name}.yaml"] = dump_documents(watching, header)
    return files


SERVICE_KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"),
    ("serving.kserve.io/v1alpha1", "InferenceGraph"),
    ("serving.knative.dev/v1", "Service"),
}


def is_cluster_local(doc: Doc) -> bool:
    """Whether a rendered service carries the cluster-local label its kind is read by."""
    labels = (doc.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(KNATIVE_VISIBILITY) == CLUSTER_LOCAL)


def exposures(config: DeployConfig, variants: tuple[str, ...] = VARIANTS) -> list[str]:
    """One line per rendered service (InferenceService, InferenceGraph, Knative Service): its
    name, its exposure, and the address callers inside the cluster use (KServe and Knative both
    answer on <name>.<namespace>.svc.cluster.local: network.GetServiceHostname)."""
    docs: list[Doc] = []
    if "kserve" in variants:
        docs += kserve_documents(config)
    if "knative" in variants and knative_gap(config) is None:
        docs += knative_documents(config)
    docs += eventing_documents(config)
    lines = []
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in SERVICE_KINDS:
            continue
        meta = doc["metadata"]
        address = f"http://{meta['name']}.{meta['namespace']}.{CLUSTER_DOMAIN}"
        if is_cluster_local(doc):
            lines.append(f"{meta['name']}: {CLUSTER_LOCAL} ({address})")
        else:
            lines.append(
                f"{meta['name']}: public (outside the cluster through the ingress "
                f"domain; inside it {address})"
            )
    return lines


def policies(config: DeployConfig, variants: tuple[str, ...] = VARIANTS) -> list[str]:
    """One line per AuthorizationPolicy written (`mesh`): its name, its file, the callers it
    admits, and the relays every policy admits (kninfer.deploy.mesh)."""
    lines = []
    for variant in variants:
        if variant == "knative" and knative_gap(config) is not None:
            continue
        for doc in mesh_documents(config, variant):
            named = [
                source
                for rule in doc["spec"]["rules"]
                for entry in rule.get("from", [])
                for source in [entry["source"]]
                if source.get("namespaces") != list(RELAY_NAMESPACES)
            ]
            callers = [
                *(p for s in named for p in s.get("principals", [])),
                *(f"namespace {n}" for s in named for n in s.get("namespaces", [])),
            ]
            lines.append(
                f"{doc['metadata']['name']}: AuthorizationPolicy in "
                f"{variant}/{config.name}.yaml: allows "
                f"{', '.join(callers) or 'no caller of its own'}; plus the relays in "
                f"{', '.join(RELAY_NAMESPACES)}"
            )
    return lines


def write(files: dict[str, str], outdir: Path) -> list[Path]:
    written = []
    for relative, text in sorted(files.items()):
        path = outdir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
