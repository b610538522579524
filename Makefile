# The two set-up commands are `make serve` and `make test`; both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= dev,pytorch,mlflow

.PHONY: serve test test-long lint bench bench-quick clean serve-pipeline image deploy

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	$(BIN)/python -m compileall -q kninfer >/dev/null
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/kninfer serve

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

test-long: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check kninfer tests bench
	$(BIN)/mypy kninfer

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
