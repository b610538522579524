#!/usr/bin/env bash
# `make image-test`: build the CPU images with a real container runtime (podman) and run the pod
# contract tests (tests/test_images.py) against them. Leaves localhost/kninfer:dev (all
# families) and localhost/kninfer:dev-<family> (sklearn, mlflow, pytorch).
#
# Facts of machines without a Docker engine or registry access (../shared/notes/containers-here.md):
# podman needs `--runtime runc` (crun refuses a hybrid cgroup layout); builds use the host's
# network and CA bundle; the base image is made from Debian packages with debootstrap when the
# registry base cannot be pulled (bookworm's python3 is 3.11, like python:3.11-slim-bookworm).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
BASE="${PYTHON_IMAGE:-}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
TORCH_WHEELS="${TORCH_WHEELS:-$("$PYTHON" -m pip config get global.find-links 2>/dev/null || true)}"
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=4096:4096)

log() { printf '[image-test %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  log "installing podman, runc and debootstrap (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc debootstrap uidmap >/dev/null
fi

if [ -z "$BASE" ]; then
  if "${PODMAN[@]}" image exists docker.io/library/python:3.11-slim-bookworm \
      || timeout 60 "${PODMAN[@]}" pull -q docker.io/library/python:3.11-slim-bookworm >/dev/null 2>&1; then
    BASE=docker.io/library/python:3.11-slim-bookworm
  else
    BASE=localhost/debian-python:bookworm
    if ! "${PODMAN[@]}" image exists "$BASE"; then
      log "no registry base image; making $BASE from Debian packages (debootstrap)"
      rootfs="$(mktemp -d)"
      mirror="$(grep -hoE 'https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | head -1 || true)"
      debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
        "$rootfs" "${mirror:-http://deb.debian.org/debian}" >/dev/null
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
      tar -C "$rootfs" -c . | "${PODMAN[@]}" import - "$BASE" >/dev/null
      rm -rf "$rootfs"
    fi
  fi
fi
log "base image: $BASE"

build() {  # build FAMILY TAG
  local args=(--network host "${LIMITS[@]}" --build-arg "PYTHON_IMAGE=$BASE" --build-arg "FAMILY=$1")
  if [ -f "$CA_BUNDLE" ]; then
    args+=(-v "$CA_BUNDLE:/etc/kninfer-ca.crt:ro" --build-arg CA_BUNDLE=/etc/kninfer-ca.crt)
  fi
  if [ -n "$TORCH_WHEELS" ] && ls "$TORCH_WHEELS"/torch-2.13.0* >/dev/null 2>&1; then
    args+=(-v "$TORCH_WHEELS:/torch-wheels:ro" --build-arg TORCH_FIND_LINKS=/torch-wheels)
  fi
  local started=$SECONDS
  "${PODMAN[@]}" build "${args[@]}" -t "$2" -f Dockerfile . >"build/image-$1.log" 2>&1 \
    || { tail -30 "build/image-$1.log"; exit 1; }
  log "built $2 in $((SECONDS - started))s ($("${PODMAN[@]}" image inspect "$2" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}'))"
}
mkdir -p build
for family in sklearn mlflow pytorch; do
  build "$family" "localhost/kninfer:dev-$family"
done
build all localhost/kninfer:dev

log "pod contract tests"
"$PYTHON" -m pytest -m image -p no:randomly -q -s tests/test_images.py
