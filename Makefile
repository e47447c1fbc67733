# Every target works from a fresh clone: `make test` creates .venv and installs into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RESOURCES := $(wildcard resources/*/pyproject.toml)
MANIFEST ?= hostconfig.toml

.PHONY: install run check test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(RESOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' $(foreach p,$(RESOURCES),-e $(dir $(p)))
	touch $@

run: install
	$(BIN)/sghost start -c $(MANIFEST)

check: install
	$(BIN)/sghost check -c $(MANIFEST)

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python bench/framework.py
	$(BIN)/python bench/host.py
	$(BIN)/python bench/logring.py
	$(BIN)/python bench/integrations.py
	$(BIN)/python bench/canbus.py
	$(BIN)/python bench/certificate_check.py
	$(BIN)/python bench/deploy.py
	$(BIN)/python bench/reaction.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/failover.py

clean:
	rm -rf $(VENV) build *.egg-info
