# The two set-up commands of the README: `make run` and `make test`.
# Both bootstrap everything from the lock files on a fresh machine.

UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test lint install services

run: install  ## migrate the database, then serve on the embedded default (SQLite file)
	$(UV) run --frozen solaris migrate
	$(UV) run --frozen solaris serve

test: install services lint  ## the whole test suite, as CI runs it
	$(UV) run --frozen pytest

lint: install
	$(UV) run --frozen ruff check src tests bench scripts
	$(UV) run --frozen ruff format --check src tests bench scripts
	$(UV) run --frozen mypy

install: $(UV)
	$(UV) sync --frozen --python python3
	cd tests/e2e/librechat && npm ci --no-audit --no-fund --loglevel=error

services:  ## PostgreSQL and Redis for the integration tests (starts or installs them)
	bash scripts/services.sh

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)
