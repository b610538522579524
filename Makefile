# The two set-up commands are `make serve` and `make test`; both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The locked dev environment (requirements/dev.txt, made by `make lock`): every package pinned with
# its hashes, so two installs on different days are the same software.
LOCK := requirements/dev.txt

.PHONY: serve test test-fast check-lock test-eager test-long test-latest lint lock docs docs-outputs bench bench-cold bench-compiled bench-torch-onnx bench-drift bench-tracing bench-dashboard \
	bench-quick clean serve-pipeline image image-gpu deploy image-test

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m compileall -q kninfer >/dev/null
	touch $(STAMP)

# Re-resolve every lock in requirements/ from pyproject.toml's ranges (docs/development.md).
lock: $(STAMP)
	UV=$(BIN)/uv LOCK_UPGRADE="$(LOCK_UPGRADE)" requirements/lock.sh

# The suite against the newest releases the registry serves within pyproject.toml's ranges (not
# the lock), in .venv-latest: finds an upgrade that breaks kninfer before `make lock` takes it.
LATEST := .venv-latest
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade -e '.[dev,pytorch,mlflow,onnx,compile,lightgbm,xgboost,otel]'
	@echo "what the newest releases change against $(LOCK):"
	-$(LATEST)/bin/python requirements/check.py $(LOCK)
	$(LATEST)/bin/python -m pytest -n 2 --dist loadfile -q

serve: $(STAMP)
	$(BIN)/kninfer serve

# Fails when .venv is not exactly the lock (a package added, removed or at another version by hand).
check-lock: $(STAMP)
	$(BIN)/python requirements/check.py $(LOCK)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

# The fast tier: the pure modules (codecs, the CloudEvents binding, the error map, settings, the
# lock, the public API, manifest validation) and the app driven in process, no server started:
# seconds, run first by CI and before every commit. The whole suite stays `make test`.
FAST_TESTS := tests/http/test_app.py tests/test_errors.py tests/test_settings.py \
	tests/test_lock.py tests/test_public_api.py tests/cloudevents/test_binding.py tests/protocol \
	tests/deploy/test_deploy_validate.py tests/deploy/test_deploy_exposure.py \
	tests/predictors/test_families.py tests/test_layering.py
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:randomly $(FAST_TESTS)

# The serving tests again with kserve imported whole (--eager-imports): what kninfer does on a
# kserve version its import deferral (kninfer/_compat) was not written for. CI runs it.
SERVING_TESTS := tests/http tests/grpc tests/cloudevents tests/observability tests/predictors \
	tests/transformers tests/test_smoke.py tests/reliability/test_reliability_inputs.py
test-eager: $(STAMP)
	KNINFER_EAGER_IMPORTS=1 $(BIN)/python -m pytest -n 2 --dist loadfile -q $(SERVING_TESTS)

test-long: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check kninfer tests bench
	$(BIN)/ruff format --check kninfer tests bench
	$(BIN)/mypy kninfer
	$(BIN)/lint-imports --no-cache

# The docs site (mkdocs.yml, docs/): strict, so a broken link or anchor, a page missing from the
# nav or a missing bench/results report fails the build. Open build/site/index.html.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d build/site

# Every command output the docs show, made again by running the command (tests/test_docs.py
# --write-docs-outputs); review the diff. `make test` then checks them at a stated tolerance.
docs-outputs: $(STAMP)
	$(BIN)/python -m pytest -q -p no:randomly -p no:xdist tests/test_docs.py --write-docs-outputs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache

# kninfer against KServe, MLServer, a FastAPI wrapper and a bare ASGI floor (docs/performance.md);
# builds each peer's virtualenv under bench/.venvs and installs wrk if
# missing. Writes bench/results/{latest.json,report.md,plot.png}. BENCH_ARGS adds options.
# Then the compiled path (bench-compiled below).
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.compiled

# The cold-start matrix (bench/cold.py): every family at a small and a real size, warm and cold
# page cache, next to its floor and KServe's pattern. Writes bench/results/cold.{json,md}.
bench-cold: $(STAMP)
	$(BIN)/python -m bench.cold $(BENCH_ARGS)

# A compiled model (ONNX Runtime) against scikit-learn, served side by side (bench/compiled.py),
# and what drift monitoring costs a served model (bench/drift.py, bench/drift_counting.py),
# and what OpenTelemetry tracing costs (bench/tracing.py). Write bench/results/compiled.{json,md},
# drift.{json,md}, drift-counting.{json,md} and tracing.{json,md}.
bench-compiled: $(STAMP)
	$(BIN)/python -m bench.compiled $(BENCH_ARGS)

# PyTorch networks through ONNX Runtime against kninfer's eager and .pt2 paths, in process
# (bench/torch_onnx.py; exports in bench/.venvs/torch-onnx-export). bench/results/torch-onnx.*
bench-torch-onnx: $(STAMP)
	$(BIN)/python -m bench.torch_onnx $(BENCH_ARGS)

bench-drift: $(STAMP)
	$(BIN)/python -m bench.drift --rounds 7 $(BENCH_ARGS)
	$(BIN)/python -m bench.drift_counting

bench-tracing: $(STAMP)
	$(BIN)/python -m bench.tracing --rounds 3 $(BENCH_ARGS)

# docs/monitoring.md's walk-through under a real Prometheus (prometheus and promtool on PATH):
# draws docs/img/dashboard.svg, writes bench/results/dashboard.{json,md}.
bench-dashboard: $(STAMP)
	$(BIN)/python -m bench.dashboard $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick --servers kninfer,fastapi,bare --peer-python \
		--out bench/.work/quick $(BENCH_ARGS)

# The iris predictor (:8080, gRPC :8081) and the iris transformer in front of it (:8090, gRPC
# :8091), as spec.predictor and spec.transformer of one InferenceService. Ctrl-C stops both.
# PIPELINE_PROTOCOL=grpc-v2 makes the transformer call the predictor over gRPC.
PIPELINE_PROTOCOL ?= v2
PIPELINE_PREDICTOR := 127.0.0.1:$(if $(filter grpc-v2,$(PIPELINE_PROTOCOL)),8081,8080)
serve-pipeline: $(STAMP)
	@$(BIN)/kninfer serve --http-port 8080 --grpc-port 8081 & p=$$!; \
	$(BIN)/kninfer serve --transformer iris --predictor-host $(PIPELINE_PREDICTOR) \
		--predictor-protocol $(PIPELINE_PROTOCOL) --http-port 8090 --grpc-port 8091 & t=$$!; \
	trap 'kill -TERM $$p $$t 2>/dev/null' INT TERM; \
	wait $$t; kill -TERM $$p 2>/dev/null; wait

# --- images and deployment (docs/deploy.md) -----------------------------------------------------
# make image [IMAGE=registry/you/kninfer TAG=0.1.0 PUSH=1]
# make deploy CONFIG=deploy/examples/iris-cpu.yaml [DEPLOY_IMAGE=registry/you/kninfer:0.1.0]
IMAGE ?= ghcr.io/kninfer/kninfer
TAG ?= 0.1.0
DOCKER ?= docker
CONFIG ?= deploy/examples/iris-cpu.yaml
DEPLOY_DIR ?= build/deploy
# Empty: the CRDs vendored in kninfer/deploy/crds; set CRDS=DIR to check against your cluster's.
CRDS ?=
# kserve: apply the InferenceService; knative: apply the plain Knative Service (no KServe).
VARIANT ?= kserve

# FAMILY=sklearn|mlflow|pytorch|onnx builds that family's smaller image, tagged $(TAG)-$(FAMILY)
# (onnx: compiled models through ONNX Runtime, no scikit-learn);
# BUILD_ARGS adds --build-arg INDEX_URL=... EXTRA_INDEX_URL=... CA_BUNDLE=... TORCH_INDEX_URL=...
FAMILY ?= all
IMAGE_TAG := $(TAG)$(if $(filter-out all,$(FAMILY)),-$(FAMILY))
image:
	$(DOCKER) build -f Dockerfile --build-arg FAMILY=$(FAMILY) $(BUILD_ARGS) \
		-t $(IMAGE):$(IMAGE_TAG) .
	$(if $(PUSH),$(DOCKER) push $(IMAGE):$(IMAGE_TAG))

# Builds every CPU image here with podman (installing it, and a Debian base image, if needed)
# and runs the pod contract tests against them (deploy/image-test.sh, tests/test_images.py).
image-test: $(STAMP)
	PYTHON=$(BIN)/python deploy/image-test.sh

image-gpu:
	$(DOCKER) build -f Dockerfile.gpu -t $(IMAGE):$(TAG)-cuda .
	$(if $(PUSH),$(DOCKER) push $(IMAGE):$(TAG)-cuda)

deploy: $(STAMP)
	rm -rf $(DEPLOY_DIR)
	$(BIN)/kninfer render $(CONFIG) -o $(DEPLOY_DIR) $(if $(DEPLOY_IMAGE),--image $(DEPLOY_IMAGE))
	$(BIN)/kninfer validate $(DEPLOY_DIR) $(if $(CRDS),--crds $(CRDS))
	kubectl apply -f $(DEPLOY_DIR)/$(VARIANT)/
	@# the eventing file (Broker, Triggers, sinks) goes with either variant
	for f in $(DEPLOY_DIR)/knative/*-eventing.yaml; do \
		if [ "$(VARIANT)" = kserve ] && [ -f "$$f" ]; then kubectl apply -f "$$f"; fi; \
	done
