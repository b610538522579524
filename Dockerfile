# CPU image: `kninfer serve` as uid 1000. HTTP listens on $PORT (Knative's runtime contract sets
# it; 8080 otherwise), gRPC on 8081. Build: `make image` (or docker build -t IMAGE .).
# Deployment args come from `kninfer render` (kserve/, knative/); the default CMD serves the
# embedded iris model, trained at build time so a cold start reads one small file.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Package sources, for builds behind a mirror or proxy: pip's index and extra index, and where the
# CPU build of torch comes from (PyTorch's CPU index by default: the default PyPI wheel drags in
# CUDA, GBs). No other host is contacted.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_EXTRA_INDEX_URL=
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_INDEX_URL=${PIP_INDEX_URL} \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
RUN python -m venv /opt/kninfer
ENV PATH=/opt/kninfer/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kninfer ./kninfer
# Non-editable install; `storage` adds kserve-storage for --storage-uri downloads (s3://, gs://...)
# on plain Knative, where no KServe storage initializer runs. Versions are pinned by pyproject.toml.
# compileall skips torch's Python-3.12-only test helper, which cannot compile on 3.11 and made
# the whole step (and every build) fail.
# hadolint ignore=DL3013
RUN pip install ".[pytorch,mlflow,storage]" \
    && python -m compileall -q -j 0 -x 'torch/testing/_internal/py312' /opt/kninfer

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/kninfer /opt/kninfer
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin kninfer
# Bytecode was compiled at build time; never write more (the root filesystem may be read-only).
ENV PATH=/opt/kninfer/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KNINFER_CACHE_DIR=/home/kninfer/.cache/kninfer
USER 1000:1000
WORKDIR /home/kninfer
RUN python -c "from pathlib import Path; from kninfer.iris import ensure_iris_model; ensure_iris_model(Path('/home/kninfer/.cache/kninfer'))"
EXPOSE 8080 8081
ENTRYPOINT ["kninfer"]
CMD ["serve"]
