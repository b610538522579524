"""`kninfer render` for a config with `mesh`: one Istio AuthorizationPolicy (security.istio.io/v1,
action ALLOW) per workload the config runs, so each pod admits its real callers only
(docs/deploy.md, "Private to named callers"). The policies are appended to the variant's file
(kserve/<name>.yaml, knative/<name>.yaml), since the two variants label their pods differently.

Selecting a workload's pods, by labels the controllers put on them:
- plain Knative: `serving.knative.dev/service: <Knative Service>` on every pod of a Knative
  Service's revisions (knative/serving pkg/apis/serving/register.go ServiceLabelKey);
- KServe in Knative mode: `serving.kserve.io/inferenceservice: <InferenceService>` and
  `component: predictor|transformer`, which KServe sets on each component's Knative Service and
  its revision template (kserve pkg/constants InferenceServicePodLabelKey, KServiceComponentLabel;
  components' ObjectMeta; only the visibility label is kept off the template,
  RevisionTemplateLabelDisallowedList); the InferenceGraph router's pods carry
  `serving.kserve.io/inferencegraph: <graph>` (constants.InferenceGraphLabel, set on the template
  in inferencegraph/knative_reconciler.go createKnativeService).

Who reaches a pod (Istio with sidecars in the namespace; principals are mTLS identities):
- the Knative system: the activator proxies requests while a revision is scaled to zero or short
  of burst capacity, and it and the autoscaler probe and scrape the pods. Knative's "Enabling
  requests to Knative services when additional authorization policies are enabled"
  (knative/docs docs/serving/istio-authorization.md) says to allow the `knative-serving`
  namespace and the paths `/healthz` and `/metrics` from anyone;
- Istio's gateways (namespace istio-system): the external ingress gateway for a public service,
  and the `knative-local-gateway` (net-istio config/203-local-gateway.yaml, the same
  `istio: ingressgateway` pods) for callers outside the mesh. KServe routes an InferenceService's
  own address through that gateway for every caller, mesh or not (kserve ingress_reconciler.go:
  each route's destination is the local gateway service, Host rewritten to the component);
- the named callers: at the entry point the config's `mesh.allow`, and a Trigger's deliveries
  from the Broker's filter (knative/eventing config/brokers/mt-channel-broker/deployments/
  broker-filter.yaml: service account mt-broker-filter in knative-eventing); behind a
  transformer the transformer pod's service account (it calls `<name>-predictor.<ns>`); behind
  an InferenceGraph its router, whose pod names no service account and so runs as the
  namespace's `default` (createKnativeService sets none).

A relay (activator, gateway) presents its own identity, not its caller's, so allowing it admits
whoever it forwards; docs/deploy.md says what the policies therefore guarantee and how to make
the named-caller restriction hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kninfer.deploy.config import DeployConfig, Mesh
from kninfer.deploy.k8s_names import recommended_labels

Doc = dict[str, Any]

ISTIO_SECURITY = "security.istio.io/v1"
KNATIVE_SERVICE_LABEL = "serving.knative.dev/service"
KSERVE_ISVC_LABEL = "serving.kserve.io/inferenceservice"
KSERVE_COMPONENT_LABEL = "component"
KSERVE_GRAPH_LABEL = "serving.kserve.io/inferencegraph"
# Where the stock installs run the relays on the request path.
KNATIVE_SERVING_NAMESPACE = "knative-serving"  # activator, autoscaler
GATEWAY_NAMESPACE = "istio-system"  # istio-ingressgateway, knative-local-gateway
RELAY_NAMESPACES = (KNATIVE_SERVING_NAMESPACE, GATEWAY_NAMESPACE)
# The MTChannelBasedBroker's filter delivers to Triggers' subscribers.
EVENTING_NAMESPACE = "knative-eventing"
BROKER_FILTER_ACCOUNT = "mt-broker-filter"
MT_BROKER_CLASS = "MTChannelBasedBroker"
# Knative's system pods probe and scrape these paths (knative docs, istio-authorization.md).
SYSTEM_PATHS = ["/healthz", "/metrics"]
# KServe's router pod runs as the namespace's default service account (no serviceAccountName).
ROUTER_ACCOUNT = "default"


@dataclass(frozen=True)
class Callers:
    """A workload's callers: Istio principals and whole namespaces."""

    principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()

    def __add__(self, other: Callers) -> Callers:
        return Callers(
            _merge(self.principals, other.principals), _merge(self.namespaces, other.namespaces)
        )


@dataclass(frozen=True)
class Workload:
    """One set of pods a policy guards: its Knative Service name (the policy's name), the KServe
    selector (None where plain Knative does not run it) and its callers."""

    service: str
    kserve_selector: dict[str, str] | None
    callers: Callers
    knative: bool = True  # plain Knative runs it too (an InferenceGraph router does not)


def _merge(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return first + tuple(v for v in second if v not in first)


def principal(mesh: Mesh, namespace: str, account: str) -> str:
    """The Istio principal of a pod running as a service account: its SPIFFE identity
    spiffe://<trust domain>/ns/<namespace>/sa/<account> without the scheme (Istio
    AuthorizationPolicy `source.principals`)."""
    return f"{mesh.trust_domain}/ns/{namespace}/sa/{account}"


def _account(config: DeployConfig) -> str:
    return config.service_account or "default"


def _broker_filter(mesh: Mesh, broker_class: str) -> Callers:
    if broker_class == MT_BROKER_CLASS:
        return Callers(principals=(principal(mesh, EVENTING_NAMESPACE, BROKER_FILTER_ACCOUNT),))
    # Another class dispatches from its own data plane, whose account kninfer does not know; its
    # controllers install it in knative-eventing.
    return Callers(namespaces=(EVENTING_NAMESPACE,))


def _allowed(mesh: Mesh) -> Callers:
    allow = mesh.allow
    accounts = tuple(principal(mesh, *sa.split("/", 1)) for sa in allow.service_accounts)
    return Callers(principals=accounts, namespaces=tuple(allow.namespaces))


def _isvc_selector(config: DeployConfig, component: str) -> dict[str, str]:
    return {KSERVE_ISVC_LABEL: config.name, KSERVE_COMPONENT_LABEL: component}


def _served(config: DeployConfig, mesh: Mesh, entry: Callers) -> list[Workload]:
    """The predictor and (when there is one) the transformer of one served config: the entry
    one called by `entry`, a predictor behind a transformer by the transformer's pods."""
    predictor = f"{config.name}-predictor"
    if config.transformer is None:
        return [Workload(predictor, _isvc_selector(config, "predictor"), entry)]
    behind = Callers(principals=(principal(mesh, config.namespace, _account(config)),))
    return [
        Workload(predictor, _isvc_selector(config, "predictor"), behind),
        Workload(f"{config.name}-transformer", _isvc_selector(config, "transformer"), entry),
    ]


def workloads(config: DeployConfig) -> list[Workload]:
    """Every workload the config runs, with its callers, in the order the services render."""
    mesh = config.mesh
    if mesh is None:
        return []
    allowed = _allowed(mesh)
    if config.experiment is not None:
        router = Callers(principals=(principal(mesh, config.namespace, ROUTER_ACCOUNT),))
        found = [
            w for _, variant in config.variant_configs() for w in _served(variant, mesh, router)
        ]
        return found + [
            Workload(config.name, {KSERVE_GRAPH_LABEL: config.name}, allowed, knative=False)
        ]
    events = config.eventing if config.event_driven else None
    entry = allowed + (_broker_filter(mesh, events.broker_class) if events else Callers())
    found = _served(config, mesh, entry)
    shadow = config.shadow_config()
    if shadow is None:
        return found
    if events is not None:
        # A second Trigger delivers each request event to the candidate's entry service.
        return found + _served(shadow, mesh, _broker_filter(mesh, events.broker_class))
    # HTTP shadow: the Trigger on the payload logger's events (the namespace's `default` Broker,
    # of the default class) posts to the candidate's predictor; nothing calls its transformer.
    candidate = _served(shadow, mesh, Callers())
    fed = Workload(
        f"{shadow.name}-predictor",
        _isvc_selector(shadow, "predictor"),
        candidate[0].callers + _broker_filter(mesh, MT_BROKER_CLASS),
    )
    return [*found, fed, *candidate[1:]]


def _rules(callers: Callers) -> list[Doc]:
    rules: list[Doc] = []
    sources: list[Doc] = []
    if callers.principals:
        sources.append({"source": {"principals": list(callers.principals)}})
    if callers.namespaces:
        sources.append({"source": {"namespaces": list(callers.namespaces)}})
    if sources:
        rules.append({"from": sources})
    # The relays on the request path: the activator (and autoscaler) and the gateways.
    rules.append({"from": [{"source": {"namespaces": list(RELAY_NAMESPACES)}}]})
    # Knative's probes and metrics scraping, from any source (knative docs: allow by paths).
    rules.append({"to": [{"operation": {"paths": list(SYSTEM_PATHS)}}]})
    return rules


def authorization_policy(config: DeployConfig, workload: Workload, variant: str) -> Doc:
    """The ALLOW policy for one workload's pods in the `kserve` or `knative` variant."""
    if variant == "kserve":
        assert workload.kserve_selector is not None
        selector = dict(workload.kserve_selector)
    else:
        selector = {KNATIVE_SERVICE_LABEL: workload.service}
    return {
        "apiVersion": ISTIO_SECURITY,
        "kind": "AuthorizationPolicy",
        "metadata": {
            "name": workload.service,
            "namespace": config.namespace,
            "labels": recommended_labels(config.name, "authorization-policy"),
        },
        "spec": {
            "action": "ALLOW",
            "selector": {"matchLabels": selector},
            "rules": _rules(workload.callers),
        },
    }


def mesh_documents(config: DeployConfig, variant: str) -> list[Doc]:
    """The policies for the `kserve` or `knative` variant; none without `mesh`."""
    return [
        authorization_policy(config, w, variant)
        for w in workloads(config)
        if variant == "kserve" or w.knative
    ]
