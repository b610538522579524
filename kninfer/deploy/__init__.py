"""Deployment tooling: render manifests from one config, validate them offline against CRD
schemas, drive canary rollouts and A/B weights. Nothing here imports kserve or a model framework,
so `kninfer render/validate/canary/experiment` start in a fraction of a second."""

from pathlib import Path

# The KServe and Knative CRDs kninfer renders for, vendored byte for byte with their sources and
# licences (crds/SOURCES.md), so `kninfer validate` works from a clone or a wheel offline. Here,
# not in crd_store, so building the CLI parser (every `kninfer serve`) names the default without
# importing the schema store.
VENDORED_CRDS = Path(__file__).resolve().parent / "crds"
