# make up     the stack, built and healthy      make test   every test
# make down   remove it all                     make help   everything else
#
# Works with the Compose v2 plugin (`docker compose`) or v1 (`docker-compose`).

SHELL := /bin/bash
.DEFAULT_GOAL := help

COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
export COMPOSE_PROJECT_NAME ?= m2stack
HUB ?= gevent
HANDLERS ?= 1
HTTP_PUBLISH ?= 6767
# Extra CA certificates for image builds (TLS-inspecting proxies); empty to use none.
EXTRA_CA_CERTS ?= $(wildcard /usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt)
PYTHON ?= python3

# VARIANT=mongrel2 (default) | wsgi (Gunicorn front door, same app) | example-flask (Flask behind Mongrel2)
VARIANT ?= mongrel2
ifeq ($(VARIANT),wsgi)
COMPOSE_FILES := -f docker-compose.yml -f compose/$(if $(filter eventlet,$(HUB)),wsgi-eventlet,wsgi).yml
else ifeq ($(VARIANT),example-flask)
COMPOSE_FILES := -f docker-compose.yml -f compose/example-flask.yml
else
COMPOSE_FILES := -f docker-compose.yml $(if $(filter eventlet,$(HUB)),-f compose/eventlet.yml)
endif
STACK := $(COMPOSE) $(COMPOSE_FILES)

.PHONY: help images up down build compare base-image ca-certs env logs ps test test-unit test-integration test-e2e lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'
	@echo "  variables: VARIANT=mongrel2|wsgi|example-flask HUB=gevent|eventlet HANDLERS=N HTTP_PUBLISH=[addr:]port EXTRA_CA_CERTS=files"

base-image: ## make sure debian:bookworm-slim exists (pull, else debootstrap)
	@scripts/ensure-base-image.sh

ca-certs: ## copy EXTRA_CA_CERTS into the build context
	@mkdir -p services/ca-certificates
	@find services/ca-certificates -name '*.crt' -delete
	@for cert in $(EXTRA_CA_CERTS); do cp "$$cert" services/ca-certificates/; done

env: ## write .env (project name, port, a random DB_PASSWORD made once and kept) for `docker compose` too
	@pw=$$(sed -n 's/^DB_PASSWORD=//p' .env 2>/dev/null | tail -n 1); \
	 [ -n "$$pw" ] || pw=$$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n'); \
	 umask 077; printf 'COMPOSE_PROJECT_NAME=%s\nHTTP_PUBLISH=%s\nDB_PASSWORD=%s\n' \
	   "$(COMPOSE_PROJECT_NAME)" "$(HTTP_PUBLISH)" "$$pw" > .env.tmp && mv -f .env.tmp .env

build: base-image ca-certs ## build the images of the selected HUB
	$(STACK) build

up: build env ## start mongrel2 + HANDLERS handlers on HUB, wait until healthy
	$(STACK) up -d $(if $(filter wsgi,$(VARIANT)),,--scale handler=$(HANDLERS))
	@scripts/wait-healthy.sh $(COMPOSE_PROJECT_NAME) 180
	@echo "up: http://localhost:$(lastword $(subst :, ,$(HTTP_PUBLISH)))/json  (variant: $(VARIANT), hub: $(HUB), handlers: $(HANDLERS))"

down: ## stop and remove containers, networks and volumes of the stack
	$(COMPOSE) -f docker-compose.yml -f compose/eventlet.yml down --volumes --remove-orphans

logs: ## follow the logs
	$(STACK) logs -f --tail 100

ps: ## list the containers
	$(STACK) ps

test: test-unit test-integration test-e2e ## every test: unit, integration, end-to-end

test-image: base-image ca-certs
	docker build -q -f services/Dockerfile --target test -t m2stack/test:latest .

test-unit: test-image ## protocol and app unit tests (in the test image)
	docker run --rm -e CI m2stack/test:latest -q tests/unit

test-integration: test-image ## real mongrel2 + real handler processes on loopback, both hubs
	docker run --rm -e CI m2stack/test:latest -q tests/integration

.venv/ok: services/requirements/e2e.txt
	$(PYTHON) -m venv .venv
	.venv/bin/pip install -q --require-hashes --no-deps -r services/requirements/e2e.txt
	@touch $@

images: base-image ca-certs ## build every image the tests and variants use (db included)
	$(COMPOSE) -f docker-compose.yml build
	$(COMPOSE) -f docker-compose.yml -f compose/eventlet.yml build handler
	$(COMPOSE) -f docker-compose.yml -f compose/wsgi.yml build wsgi
	$(COMPOSE) -f docker-compose.yml -f compose/wsgi-eventlet.yml build wsgi
	$(COMPOSE) -f docker-compose.yml -f compose/example-flask.yml build handler
	$(COMPOSE) -f docker-compose.yml -f compose/ceiling.yml build handler
	$(COMPOSE) -f docker-compose.yml -f compose/loadtest.yml build locust-master

test-e2e: images .venv/ok ## docker compose stacks driven by real HTTP clients
	COMPOSE="$(COMPOSE)" .venv/bin/python -m pytest -q tests/e2e

# Every variant under the same load, one after another; report in reports/<timestamp>/.
# Narrow or widen: VARIANTS=a,b SCENARIOS=x,y DURATION=30 WARMUP=5 USERS=64 SPAWN_RATE=
# HANDLERS=1 LOCUST_WORKERS=1 HANDLER_CPUS=1.0 MONGREL2_CPUS=1.0 LOCUST_CPUS=1.0 (see loadtest/compare.py)
compare: images .venv/ok ## load-test every variant side by side (Locust + wrk), write a report
	COMPOSE="$(COMPOSE)" HANDLERS=$(HANDLERS) .venv/bin/python loadtest/compare.py

lock: ## re-lock every requirements file (pip-compile with hashes)
	@for name in gevent eventlet test e2e locust ceiling example-flask; do \
	  $(PYTHON) -m piptools compile -q --generate-hashes --allow-unsafe --strip-extras --no-header \
	    -o services/requirements/$$name.txt services/requirements/$$name.in || exit 1; done

clean: down ## remove the stack and the test venv
	rm -rf .venv
