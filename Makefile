# The set-up commands of the README: `make demo`, `make run` and `make test`.
# Each bootstraps everything from the lock files on a fresh machine.

UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never

.PHONY: demo run test lint install test-tools services

demo: install  ## the gateway with the development provider as upstream, a demo user and an admin
	$(UV) run --frozen solaris demo $(DEMO_OPTIONS)

run: install  ## migrate the database, then serve on the embedded default (SQLite file)
	$(UV) run --frozen solaris migrate
	$(UV) run --frozen solaris serve

# Three workers on this 2-core machine: most tests wait on servers, outages and timeouts rather
# than compute; one file per worker keeps a module's servers started once, and files go out in
# the order tests/conftest.py gives them (the longest first).
TEST_WORKERS ?= 3

test: install test-tools services lint  ## the whole test suite, as CI runs it
	$(UV) run --frozen pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: install
	$(UV) run --frozen ruff check src tests bench scripts
	$(UV) run --frozen ruff format --check src tests bench scripts
	$(UV) run --frozen mypy

# Bytecode compiled once here: these machines set PYTHONDONTWRITEBYTECODE=1, so without it every
# `solaris …` process (and every gateway a test starts) compiles its dependencies from source.
install: $(UV)  ## the project and its locked dependencies in .venv
	$(UV) sync --frozen --python python3 --compile-bytecode

test-tools:  ## what only the tests drive: LibreChat's npm client stack, the LiteLLM proxy
	cd tests/e2e/librechat && npm ci --no-audit --no-fund --loglevel=error
	cd tests/compose && npm ci --no-audit --no-fund --loglevel=error  # dclint, for tests/test_deploy.py

services:  ## PostgreSQL and Redis for the integration tests (starts or installs them)
	bash scripts/services.sh

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# ── LiteLLM proxy and nginx for tests/test_litellm.py and tests/test_scale_out.py ────────────
# LiteLLM lives in its own virtualenv so its pinned dependencies never meet ours; the stamp
# file names the version, so a new LITELLM_VERSION reinstalls and an unchanged one is skipped.
# Bytecode is compiled at install, as for our own .venv: PYTHONDONTWRITEBYTECODE=1 here.
LITELLM_VERSION := 1.106.2
LITELLM_STAMP := .tools/litellm/.installed-$(LITELLM_VERSION)-compiled

.PHONY: litellm nginx
test-tools: $(LITELLM_STAMP)
services: nginx

litellm: $(LITELLM_STAMP)  ## the LiteLLM proxy in .tools/litellm (the real upstream of tests/test_litellm.py)

$(LITELLM_STAMP): | $(UV)
	rm -rf .tools/litellm
	$(UV) venv --quiet --python python3 .tools/litellm
	$(UV) pip install --quiet --compile-bytecode --python .tools/litellm/bin/python \
	  "litellm[proxy]==$(LITELLM_VERSION)"  # compiled: its start (a test's setup) halves
	touch $@

nginx:  ## nginx for tests/test_scale_out.py (installed with apt when missing and run as root)
	@if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	  else \
	    echo "nginx is missing (apt-get install nginx): tests/test_scale_out.py will not run" >&2; \
	  fi; \
	fi

# ── Chromium for tests/test_web.py (Playwright drives Debian's build; never `playwright install`)
.PHONY: chromium
test-tools: chromium

chromium:  ## Debian's chromium at /usr/bin/chromium (installed with apt when missing and run as root)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing (apt-get install chromium): tests/test_web.py will not run" >&2; \
	  fi; \
	fi
