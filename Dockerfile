# CPU images: `kninfer serve` as uid 1000. HTTP listens on $PORT (Knative's runtime contract sets
# it; 8080 otherwise), gRPC on 8081. Build: `make image` (all families) or
# `make image FAMILY=sklearn|mlflow|pytorch|onnx`; `make image-test` builds them here with podman.
# Deployment args come from `kninfer render` (kserve/, knative/); the default CMD serves the
# embedded iris model, trained at build time so a cold start reads one small file.
#
# FAMILY decides what the image carries, since image pull is part of a cold start on a fresh
# node: sklearn (no torch, no mlflow), mlflow (no torch), pytorch (no mlflow), all, and onnx:
# models compiled by `kninfer compile` (model.onnx) through ONNX Runtime, without scikit-learn,
# scipy, torch or mlflow. The onnx image has no embedded model (nothing to train it with): it
# serves the --model-dir or --storage-uri its manifest names.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The GBs of dependencies are one layer that a change to kninfer's code leaves alone: `deps`
# installs FAMILY's lock (requirements/image-FAMILY.txt, made by `make lock`: every package pinned
# with its hashes, so two builds a month apart install the same files), `build` installs kninfer
# itself under /stage, and the final image copies the two separately. Only a changed lock rebuilds
# `deps`; a rebuild after a code change takes seconds, and a node that holds the previous image
# pulls only kninfer's own layers (about 4 MB) when a new revision rolls out.
FROM ${PYTHON_IMAGE} AS deps
ARG FAMILY=all
# Package sources, for builds behind a mirror or proxy: pip's index and extra index, a CA bundle
# (a path inside the build, e.g. a mounted file) and where the CPU build of torch comes from:
# PyTorch's CPU index by default (PyPI's default wheel drags in CUDA, GBs), or a directory of
# wheels mounted into the build (TORCH_FIND_LINKS). No other host is contacted, and whatever the
# source, pip installs only files whose sha256 the lock names.
ARG INDEX_URL=https://pypi.org/simple
ARG EXTRA_INDEX_URL=
ARG CA_BUNDLE=
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_FIND_LINKS=
# Packages the model needs beyond FAMILY's lock (a flavor's library, say `lightgbm==4.6.0`),
# installed after it with pip's ordinary resolution: they are not locked here, so pin them.
ARG EXTRA_PACKAGES=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/kninfer
ENV PATH=/opt/kninfer/bin:$PATH
# The sources as pip's environment, so pip's own subprocesses (build isolation) use them too. The
# file stays out of /opt/kninfer, so the final image never carries it.
# (The single quotes are literal text inside double quotes.)
# hadolint ignore=SC2016
RUN printf '%s\n' "export PIP_INDEX_URL='$INDEX_URL'" \
      "${EXTRA_INDEX_URL:+export PIP_EXTRA_INDEX_URL='$EXTRA_INDEX_URL'}" \
      "${CA_BUNDLE:+export PIP_CERT='$CA_BUNDLE'}" > /etc/kninfer-pip-sources
COPY requirements/image-*.txt /tmp/locks/
# compileall skips torch's Python-3.12-only test helper, which cannot compile on 3.11 and made
# the whole step (and every build) fail.
# hadolint ignore=DL3013,SC1091,SC2086
RUN set -eu; . /etc/kninfer-pip-sources; \
    lock="/tmp/locks/image-$FAMILY.txt"; \
    case "$FAMILY" in \
      sklearn|mlflow|onnx) torch_source="" ;; \
      pytorch|all) torch_source="--extra-index-url $TORCH_INDEX_URL" ;; \
      *) echo "FAMILY must be sklearn, mlflow, pytorch, all or onnx; got '$FAMILY'" >&2; exit 2 ;; \
    esac; \
    if [ -n "$torch_source" ] && [ -n "$TORCH_FIND_LINKS" ]; then \
      torch_source="--find-links $TORCH_FIND_LINKS"; fi; \
    pip install --require-hashes --no-deps $torch_source -r "$lock"; \
    if [ -n "$EXTRA_PACKAGES" ]; then pip install $EXTRA_PACKAGES; fi; \
    rm -r /tmp/locks; \
    python -m compileall -q -j 0 -x 'torch/testing/_internal/py312' /opt/kninfer

FROM deps AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kninfer ./kninfer
# kninfer alone (its requirements are in the venv already), under /stage: /stage/opt/kninfer/...
# holds exactly the files it adds. Bytecode records the paths the image will have.
# hadolint ignore=DL3013,SC1091
RUN set -eu; . /etc/kninfer-pip-sources; \
    pip install --no-deps --root /stage .; \
    python -m compileall -q -s /stage -p / /stage

FROM ${PYTHON_IMAGE}
ARG FAMILY=all
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin kninfer
COPY --from=deps /opt/kninfer /opt/kninfer
COPY --from=build /stage/ /
# Bytecode was compiled at build time; never write more (the root filesystem may be read-only).
ENV PATH=/opt/kninfer/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KNINFER_CACHE_DIR=/home/kninfer/.cache/kninfer
LABEL dev.kninfer.family=${FAMILY}
USER 1000:1000
WORKDIR /home/kninfer
# The embedded iris model, trained by the image's scikit-learn (the onnx image has none).
RUN python -c "import os; from pathlib import Path; from kninfer.iris import ensure_iris_model; os.environ['FAMILY'] == 'onnx' or ensure_iris_model(Path('/home/kninfer/.cache/kninfer'))"
EXPOSE 8080 8081
ENTRYPOINT ["kninfer"]
CMD ["serve"]
