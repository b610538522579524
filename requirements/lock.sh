#!/usr/bin/env bash
# `make lock`: re-resolve every locked environment from pyproject.toml's ranges, with hashes.
#
#   all.txt            every extra: the resolution of record; the others take its versions
#   dev.txt            what `make serve` and `make test` install (.venv): dev, pytorch, mlflow,
#                      onnx, compile, lightgbm, xgboost, otel
#   image-FAMILY.txt   what each CPU image installs (Dockerfile): sklearn, mlflow, pytorch, all
#                      (each with storage and otel), and onnx: compiled models (model.onnx) through
#                      ONNX Runtime, with storage and otel, and without scikit-learn (nor skops,
#                      scipy and what only they need): the graph path imports none of them
#   image-gpu.txt      the GPU image (Dockerfile.gpu): Ubuntu 24.04's Python 3.12, CUDA torch
#
# uv resolves (`uv pip compile`: for a stated Python and platform, so the GPU image's 3.12 lock is
# made here too); pip installs (`pip install --require-hashes`), in .venv and in the images alike,
# so pip's own sources still apply, among them a directory of wheels holding the CPU torch.
# docs/development.md#dependencies says when to run this and how to check what moved.
set -euo pipefail
cd "$(dirname "$0")/.."
UV="${UV:-.venv/bin/uv}"
# Where torch's CPU build comes from: PyTorch's CPU index, or a directory of wheels that holds it
# (TORCH_FIND_LINKS; by default pip's own configured find-links when that has torch 2.13.0).
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
TORCH_FIND_LINKS="${TORCH_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}"
if [ -n "$TORCH_FIND_LINKS" ] && ls "$TORCH_FIND_LINKS"/torch-2.13.0+cpu-* >/dev/null 2>&1; then
  torch_cpu=(--find-links "$TORCH_FIND_LINKS")
else
  torch_cpu=(--extra-index-url "$TORCH_CPU_INDEX" --index-strategy unsafe-best-match)
fi

compile() {  # compile OUT PYTHON_VERSION [uv args...]
  local out="$1" python="$2"
  shift 2
  "$UV" pip compile --quiet --generate-hashes --no-header --python-version "$python" \
    --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" \
    --no-emit-find-links --no-emit-index-url -o "requirements/$out" "$@"
}
extras() { local e; for e in "$@"; do printf -- '--extra\n%s\n' "$e"; done; }

mapfile -t all < <(extras dev pytorch mlflow storage onnx compile lightgbm xgboost otel)
# LOCK_UPGRADE: what may move. Everything by default; `make lock LOCK_UPGRADE="--upgrade-package
# NAME"` adds or moves one package and keeps every other at its locked version.
read -r -a upgrade <<< "${LOCK_UPGRADE:-"--upgrade"}"
compile all.txt 3.11 pyproject.toml "${all[@]}" "${torch_cpu[@]}" "${upgrade[@]}"
mapfile -t dev < <(extras dev pytorch mlflow onnx compile lightgbm xgboost otel)
compile dev.txt 3.11 pyproject.toml "${dev[@]}" "${torch_cpu[@]}" -c requirements/all.txt
# scikit-learn and skops are core requirements of kninfer; the onnx image leaves them out of the
# resolution (uv's --excludes), and scipy, threadpoolctl and the rest that only they need with them.
# The image installs its lock with --no-deps, kninfer too, so nothing brings them back.
onnx_excludes="$(mktemp)"
trap 'rm -f "$onnx_excludes" requirements/.cpu-pins.txt' EXIT
printf '%s\n' scikit-learn skops > "$onnx_excludes"
for family in sklearn mlflow pytorch all onnx; do
  leave_out=()
  case "$family" in
    sklearn) mapfile -t ex < <(extras storage otel) ;;
    mlflow) mapfile -t ex < <(extras mlflow storage otel) ;;
    pytorch) mapfile -t ex < <(extras pytorch storage otel) ;;
    all) mapfile -t ex < <(extras pytorch mlflow storage otel) ;;
    onnx) mapfile -t ex < <(extras onnx storage otel); leave_out=(--excludes "$onnx_excludes") ;;
  esac
  compile "image-$family.txt" 3.11 pyproject.toml "${ex[@]}" "${torch_cpu[@]}" \
    -c requirements/all.txt "${leave_out[@]}"
done
# The GPU image: PyPI's torch 2.13.0 (a CUDA build, with NVIDIA's runtime wheels) for Python 3.12,
# every other package at all.txt's version where that version serves 3.12.
grep -vE '^(torch==|    )' requirements/all.txt | grep -E '^[A-Za-z0-9]' | sed 's/ \\$//' \
  > requirements/.cpu-pins.txt
mapfile -t gpu < <(extras pytorch storage)
compile image-gpu.txt 3.12 pyproject.toml "${gpu[@]}" -c requirements/.cpu-pins.txt
echo "locked: $(grep -c '==' requirements/all.txt) packages in requirements/all.txt"
