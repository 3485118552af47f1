# The README's two commands: `make run` (set up and serve the site) and `make test` (set up and run every test).
PORT ?= 8000
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Development defaults; a real environment variable or .env still wins for everything but debug.
export DJANGO_DEBUG ?= 1
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_CACHE_URL ?= redis://127.0.0.1:6379/15

.PHONY: run serve test lint bench screenshots browser-deps fapi-deps clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.production: requirements.txt requirements-production.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-production.txt
	touch $@ $(VENV)/.runtime

$(VENV)/.dev: requirements.txt requirements-production.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime $(VENV)/.production

run: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable
	$(PY) manage.py devidp setup --base-url http://127.0.0.1:$(PORT)
	@echo "Open http://127.0.0.1:$(PORT)/ and sign in with the Local dev IdP."
	$(PY) manage.py runserver 127.0.0.1:$(PORT)

# Production: gunicorn with WhiteNoise for static files. Needs DJANGO_SECRET_KEY and
# DJANGO_ALLOWED_HOSTS (and DATABASE_URL / CACHE_URL for several instances); see the README.
# ASGI=1 serves project.asgi with uvicorn workers instead (async views; see docs/api.md).
WORKERS ?= 2
ASGI ?= 0
ifeq ($(ASGI),1)
SERVE_APP := project.asgi --worker-class uvicorn_worker.UvicornWorker
else
SERVE_APP := project.wsgi
endif
serve: $(VENV)/.production
	DJANGO_DEBUG=0 $(PY) manage.py migrate --noinput
	DJANGO_DEBUG=0 $(PY) manage.py collectstatic --noinput --verbosity 0
	DJANGO_DEBUG=0 $(VENV)/bin/gunicorn $(SERVE_APP) --bind 127.0.0.1:$(PORT) --workers $(WORKERS) \
		--access-logfile - --timeout 30

# Browser tests drive Debian's Chromium; install it when missing and possible (they skip otherwise).
# Their accessibility checks inject axe-core, pinned in tests/browser/package-lock.json and installed
# with npm (Debian's npm when missing and possible; the checks skip, saying why, without it).
AXE_STAMP := tests/browser/node_modules/.installed
browser-deps: $(AXE_STAMP)
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "Chromium could not be installed: browser tests will be skipped."; }

$(AXE_STAMP): tests/browser/package.json tests/browser/package-lock.json
	@command -v npm >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& (apt-get update -qq && apt-get install -y -qq npm >/dev/null) \
		|| echo "npm could not be installed: the accessibility checks will be skipped."; }
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/browser --no-audit --no-fund --ignore-scripts --loglevel=error && touch $@ \
		|| echo "npm ci failed in tests/browser: the accessibility checks will be skipped."; fi

# The FAPI 2.0 tests (tests/fapi/) run against panva's certified oidc-provider, pinned in
# tests/fapi/package-lock.json and installed with npm; they skip, saying why, only without node and npm.
FAPI_STAMP := tests/fapi/node_modules/.installed
fapi-deps: $(FAPI_STAMP)

$(FAPI_STAMP): tests/fapi/package.json tests/fapi/package-lock.json
	@command -v npm >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& (apt-get update -qq && apt-get install -y -qq npm >/dev/null) \
		|| echo "npm could not be installed: the FAPI tests will be skipped."; }
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/fapi --no-audit --no-fund --ignore-scripts --loglevel=error && touch $@; fi

# First pass: the embedded defaults (SQLite, local-memory cache), every test.
# Second pass: the whole suite again on PostgreSQL and a shared Redis cache (the `services` tests,
# which need them, run only here).
test: $(VENV)/.dev browser-deps fapi-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy accounts/
	$(VENV)/bin/lint-imports
	DJANGO_DEBUG=0 $(PY) -m pytest
	@if $(PY) -c "import socket; [socket.create_connection(a, timeout=2).close() for a in (('127.0.0.1', 5432), ('127.0.0.1', 6379))]" 2>/dev/null || [ -n "$$CI" ]; then \
		echo "Second pass: PostgreSQL + Redis"; \
		DJANGO_DEBUG=0 DATABASE_URL=$(TEST_DATABASE_URL) CACHE_URL=$(TEST_CACHE_URL) $(PY) -m pytest; \
	else \
		echo "PostgreSQL (127.0.0.1:5432) or Redis (127.0.0.1:6379) is not reachable: second pass skipped (CI always runs it)."; \
	fi

# Refresh the README's screenshots (docs/screenshots/) from a browser test run.
screenshots: $(VENV)/.dev browser-deps
	UPDATE_DOC_SCREENSHOTS=1 DJANGO_DEBUG=0 $(PY) -m pytest tests/browser/test_sign_in.py

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy accounts/
	$(VENV)/bin/lint-imports

# Side by side with django-allauth and mozilla-django-oidc (installed by bench/run.py in throwaway
# virtual environments under bench/.venvs/, reused), all on 127.0.0.1; writes bench/results.md.
bench: $(VENV)/.dev
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) db.sqlite3 artifacts
