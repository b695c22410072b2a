# The two commands of the README: `make run` (the platform with demo traffic) and `make test`.
# Each installs what it needs: a virtual environment with the Python packages (pip), redis-server
# (apt-get, by infra/stack.py) and the Kafka and Cassandra artifacts (Maven, cached in .aura/m2).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint up down status reset migrate worker api demo bench clean console

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "python3 (>= 3.11) is required"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install            ## stack + migrations + worker + API + demo traffic
	$(BIN)/python -m infra.console build --if-missing
	$(BIN)/aura run

test: install           ## lint, then every test against the real stack
	@# docker-compose.yml is validated by `docker compose config` where a docker client is present
	@if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1 \
	    && ! command -v docker-compose >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing docker-compose (Debian) to validate docker-compose.yml"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose) >/dev/null 2>&1 || true; \
	fi
	$(BIN)/ruff check .
	$(BIN)/aura schema check
	$(BIN)/python -m infra.console build
	$(BIN)/python -m infra.console test
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

up: install ; $(BIN)/aura stack up
down: install ; $(BIN)/aura stack down
status: install ; $(BIN)/aura stack status
reset: install ; $(BIN)/aura stack reset
migrate: install ; $(BIN)/aura migrate
worker: install ; $(BIN)/aura worker
api: install ; $(BIN)/aura api
demo: install ; $(BIN)/aura demo

console: install        ## the operator console: Node from Debian if absent, npm ci, npm run build
	$(BIN)/python -m infra.console build

clean: down
	rm -rf $(VENV) .aura .pytest_cache .ruff_cache
