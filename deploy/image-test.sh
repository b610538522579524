#!/usr/bin/env bash
# `make image-test`: build the CPU images with a real container runtime (podman,
# deploy/podman-build.sh) and run the pod contract tests (tests/test_images.py) against them.
# Leaves localhost/kninfer:dev (all families) and localhost/kninfer:dev-<family> (sklearn,
# mlflow, pytorch).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export PYTHON
PODMAN=(podman --runtime runc)
# What a clean build of the four takes in podman's store (measured: docs/deploy.md#images).
NEEDS_GB="${IMAGE_TEST_MIN_FREE_GB:-12}"

log() { printf '[image-test %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

deploy/podman-build.sh --setup
STORE="$("${PODMAN[@]}" info --format '{{.Store.GraphRoot}}')"
free_gb() { df -P -BG "$STORE" | awk 'NR == 2 { sub("G", "", $4); print $4 }'; }
# Said up front, so a full disk reads as that and not as a failed COPY deep in a build log.
log "podman store $STORE: $(free_gb) GB free"
if [ "$(free_gb)" -lt "$NEEDS_GB" ]; then
  log "warning: a clean build of the four images needs about $NEEDS_GB GB free there"
fi

for family in sklearn mlflow pytorch; do
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
"$PYTHON" -m pytest -m image -p no:randomly -q -s tests/test_images.py
