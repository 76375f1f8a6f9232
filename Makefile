# The two commands: `make run` and `make test`. Everything else is underneath.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
GENERATED := clients/prisme/v1

.PHONY: run test check gen lint typecheck buflint gen-check install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev]'
	touch $@

install: $(STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(STAMP)
	PRISME_ORIGIN_REGISTRY_ORIGINS="$${PRISME_ORIGIN_REGISTRY_ORIGINS:-localhost}" $(BIN)/prisme serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

gen: $(STAMP)
	PYTHON=$(BIN)/python scripts/gen_protos.sh clients

check: lint typecheck buflint gen-check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

buflint: $(STAMP) $(NPM_STAMP)
	PYTHON=$(BIN)/python scripts/protodeps.sh
	npx --no-install buf lint
	npx --no-install buf format --diff --exit-code proto

gen-check: $(STAMP)
	rm -rf .build/gen && PYTHON=$(BIN)/python scripts/gen_protos.sh .build/gen
	diff -r --exclude=__init__.py --exclude=__pycache__ --exclude=py.typed .build/gen/prisme/v1 $(GENERATED) \
	  || { echo "generated code is stale: run 'make gen'" >&2; exit 1; }

clean:
	rm -rf $(VENV) .build node_modules
