# CPU image: `kninfer serve` as uid 1000. HTTP listens on $PORT (Knative's runtime contract sets
# it; 8080 otherwise), gRPC on 8081. Build: `make image` (or docker build -t IMAGE .).
# Deployment args come from `kninfer render` (kserve/, knative/); the default CMD serves the
# embedded iris model, trained at build time so a cold start reads one small file.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kninfer
ENV PATH=/opt/kninfer/bin:$PATH
# The CPU build of torch from PyTorch's CPU index: the default PyPI wheel drags in CUDA (GBs).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kninfer ./kninfer
# Non-editable install; `storage` adds kserve-storage for --storage-uri downloads (s3://, gs://...)
# on plain Knative, where no KServe storage initializer runs. Versions are pinned by pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".[pytorch,mlflow,storage]" \
    && python -m compileall -q -j 0 /opt/kninfer

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
