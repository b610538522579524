"""Kubernetes and Knative naming rules, stated once for the config checks (deploy.config), the
schema strictifier (deploy.strict) and the admission-webhook rules (deploy.webhooks).

- DNS-1123 label and subdomain, and label values: Kubernetes "Object Names and IDs" and
  apimachinery pkg/util/validation (IsDNS1123Label, IsDNS1123Subdomain, IsValidLabelValue).
- DNS-1035 label (starts with a letter): what KServe's webhook requires of an InferenceService
  name (kserve pkg/apis/serving/v1beta1/inference_service_validation.go) and Knative of a
  Service name.
- Names Knative reserves in a revision's container (knative/serving
  pkg/apis/serving/k8s_validation.go): environment variables and ports.
- The labels every rendered object carries: Kubernetes "Recommended Labels"
  (app.kubernetes.io/*).
"""

from __future__ import annotations

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
MAX_LABEL = 63

KNATIVE_RESERVED_ENV = ("PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION")
KNATIVE_RESERVED_PORTS = (8012, 8013, 8022, 8008, 9090, 9091)


def recommended_labels(config_name: str, component: str) -> dict[str, str]:
    """The app.kubernetes.io labels of an object `kninfer render` writes for a config."""
    return {
        "app.kubernetes.io/name": config_name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "kninfer",
        "app.kubernetes.io/managed-by": "kninfer-render",
    }
