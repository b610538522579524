"""Deployment tooling: render manifests from one config, validate them offline against CRD
schemas, drive canary rollouts. Nothing here imports kserve or a model framework, so
`kninfer render/validate/canary` start in a fraction of a second."""
