#!/usr/bin/env bash
# Build one CPU image here with podman: `deploy/podman-build.sh FAMILY TAG [CONTEXT]` (CONTEXT,
# default this checkout, holds the Dockerfile). `deploy/podman-build.sh --setup` only gets podman
# and the base image ready. Used by `make image-test` and bench/image_rebuild.py.
#
# Facts of machines without a Docker engine or registry access (such as the development machines):
# podman needs `--runtime runc` (crun refuses a hybrid cgroup layout); builds use the host's
# network and CA bundle; the base image is made from Debian packages with debootstrap when the
# registry base cannot be pulled (bookworm's python3 is 3.11, like python:3.11-slim-bookworm).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
BASE="${PYTHON_IMAGE:-}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
TORCH_WHEELS="${TORCH_WHEELS:-$("$PYTHON" -m pip config get global.find-links 2>/dev/null || true)}"
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=4096:4096)
LOGS="$ROOT/build"

log() { printf '[podman-build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
mkdir -p "$LOGS"

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
      # apt's own mirror (one-line or deb822 sources), skipping comments: Debian's images carry
      # a commented snapshot.debian.org URL above the one apt really uses.
      mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -vE '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?' | head -1 || true)"
      debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
        "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$LOGS/debootstrap.log" 2>&1 \
        || { tail -20 "$LOGS/debootstrap.log"; exit 1; }
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
      tar -C "$rootfs" -c . | "${PODMAN[@]}" import - "$BASE" >/dev/null
      rm -rf "$rootfs"
    fi
  fi
fi
[ "${1:-}" = --setup ] && { log "podman and the base image $BASE are ready"; exit 0; }

FAMILY="${1:?usage: podman-build.sh FAMILY TAG [CONTEXT] | --setup}"
TAG="${2:?usage: podman-build.sh FAMILY TAG [CONTEXT] | --setup}"
CONTEXT="${3:-$ROOT}"
args=(--network host "${LIMITS[@]}" --build-arg "PYTHON_IMAGE=$BASE" --build-arg "FAMILY=$FAMILY")
if [ -f "$CA_BUNDLE" ]; then
  args+=(-v "$CA_BUNDLE:/etc/kninfer-ca.crt:ro" --build-arg CA_BUNDLE=/etc/kninfer-ca.crt)
fi
if [ -n "$TORCH_WHEELS" ] && ls "$TORCH_WHEELS"/torch-2.13.0* >/dev/null 2>&1; then
  args+=(-v "$TORCH_WHEELS:/torch-wheels:ro" --build-arg TORCH_FIND_LINKS=/torch-wheels)
fi
STORE="$("${PODMAN[@]}" info --format '{{.Store.GraphRoot}}')"
free_gb() { df -P -BG "$STORE" | awk 'NR == 2 { sub("G", "", $4); print $4 }'; }
started=$SECONDS
build_log="$LOGS/image-$FAMILY.log"
"${PODMAN[@]}" build "${args[@]}" -t "$TAG" -f "$CONTEXT/Dockerfile" "$CONTEXT" >"$build_log" 2>&1 \
  || { tail -30 "$build_log"; log "build of $TAG failed ($(free_gb) GB free in $STORE); log: $build_log"; exit 1; }
size="$("${PODMAN[@]}" image inspect "$TAG" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
log "built $TAG in $((SECONDS - started))s ($size; $(free_gb) GB free in $STORE)"
