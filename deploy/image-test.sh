#!/usr/bin/env bash
# `make image-test`: build the CPU images with a real container runtime (podman,
# deploy/podman-build.sh) and run the pod contract tests (tests/test_images.py) against them.
# Leaves localhost/kninfer:dev (all families) and localhost/kninfer:dev-<family> (sklearn,
# mlflow, pytorch, onnx), and writes bench/results/images.{json,md}: sizes after the builds, the
# cold starts the pod tests measured after them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export PYTHON
PODMAN=(podman --runtime runc)
# What a clean build takes in podman's store: 11 GB measured for the four images before onnx
# (docs/deploy.md#images); onnx adds its 610 MB virtualenv twice (the deps stage and the final
# image), about 1.2 GB.
NEEDS_GB="${IMAGE_TEST_MIN_FREE_GB:-13}"
# Where tests/test_images.py writes the cold starts it measured.
COLD_START=build/image-cold-start.json

log() { printf '[image-test %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

deploy/podman-build.sh --setup
STORE="$("${PODMAN[@]}" info --format '{{.Store.GraphRoot}}')"
free_gb() { df -P -BG "$STORE" | awk 'NR == 2 { sub("G", "", $4); print $4 }'; }
# Said up front, so a full disk reads as that and not as a failed COPY deep in a build log.
log "podman store $STORE: $(free_gb) GB free"
if [ "$(free_gb)" -lt "$NEEDS_GB" ]; then
  log "warning: a clean build of the five images needs about $NEEDS_GB GB free there"
fi

for family in sklearn onnx mlflow pytorch; do
  deploy/podman-build.sh "$family" "localhost/kninfer:dev-$family"
done
deploy/podman-build.sh all localhost/kninfer:dev
# The images these builds replaced are now untagged: remove them (only kninfer's own, by the label
# its final stage sets), so rebuilds do not pile up images on the disk.
"${PODMAN[@]}" image prune -f --filter label=dev.kninfer.family >/dev/null
log "removed the kninfer images these builds replaced; $(free_gb) GB free"
"$PYTHON" -m bench.image_sizes >/dev/null
log "wrote bench/results/images.md (what each image weighs and carries)"

log "pod contract tests"
rm -f "$COLD_START"
"$PYTHON" -m pytest -m image -p no:randomly -q -s tests/test_images.py
"$PYTHON" -m bench.image_sizes --cold-start "$COLD_START" >/dev/null
log "added the cold starts the pod tests measured to bench/results/images.md"
