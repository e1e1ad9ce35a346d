# make up     the stack, built and healthy      make test     every test
# make down   stop it, keep its data            make destroy  remove it, its database too
# make help   everything else
#
# Compose v2 only: the machine's `docker compose` plugin, else one fetched into .tools/.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Compose v2: the machine's `docker compose` plugin, else Debian's docker-compose package
# (pinned, checksummed) unpacked into .tools/ by `make compose-v2`, which every target
# that runs Compose depends on. Compose v1 (docker-compose 1.x, end of life since 2023) is
# refused with one line: it has no `up --wait`, and nothing here tests it any more.
COMPOSE_V2_TOOL := .tools/docker-compose
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo $(CURDIR)/$(COMPOSE_V2_TOOL))
COMPOSE_V1 = $(filter 1.%,$(shell $(COMPOSE) version --short 2>/dev/null))
COMPOSE_V2_ONLY = $(if $(COMPOSE_V1),$(error COMPOSE=$(COMPOSE) is Compose v1 ($(COMPOSE_V1)): use Compose v2 (unset COMPOSE and the Makefile fetches it)))
export COMPOSE_PROJECT_NAME ?= m2stack
HUB ?= gevent
HANDLERS ?= 1
HTTP_PUBLISH ?= 6767
# Extra CA certificates for image builds (TLS-inspecting proxies); empty to use none.
EXTRA_CA_CERTS ?= $(wildcard /usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt)
PYTHON ?= python3
# The host's python3 runs the variants table and the Compose v2 fetcher (3.9 or newer); the
# end-to-end tests' venv needs 3.10 (see .venv/ok). Said in one line, not as a traceback.
comma := ,
python_at_least = $(shell $(PYTHON) -c 'import sys; sys.exit(sys.version_info < ($(subst .,$(comma),$(1)),))' \
  >/dev/null 2>&1 && echo yes)
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
$(if $(call python_at_least,3.9),,$(error $(PYTHON) is $(or $(PYTHON_VERSION),not found): this Makefile needs \
  Python 3.9 or newer on the host (set PYTHON=python3.X)))
# The test image's tag: one per checkout when several build side by side (TEST_IMAGE=m2stack/test:mine).
TEST_IMAGE ?= m2stack/test:latest

# The variants are the table in loadtest/comparison/variants.py. VARIANT=mongrel2 (default)
# or wsgi takes its hub from HUB; mongrel2 runs behind the dispatcher (mongrel2-gevent-dispatch,
# the base file's shape) unless DISPATCH=0, the bare shape (mongrel2-gevent: mongrel2 PUSHes
# straight to the handlers, compose/bare.yml). Any other VARIANT is a name of the table
# itself (example-flask, ceiling, mongrel2-eventlet, ...). DISPATCH picks the shape of
# swarm-up too.
VARIANTS_PY := $(PYTHON) loadtest/comparison/variants.py
VARIANT ?= mongrel2
DISPATCH ?= 1
$(if $(filter-out 0 1,$(DISPATCH)),$(error DISPATCH=$(DISPATCH): use 1 (the dispatcher, default) or 0 (the bare shape)))
VARIANT_NAME := $(if $(filter mongrel2,$(VARIANT)),mongrel2-$(HUB)$(if $(filter 1,$(DISPATCH)),-dispatch),$(if \
  $(filter wsgi,$(VARIANT)),wsgi-$(HUB),$(VARIANT)))
COMPOSE_FILES := $(shell $(VARIANTS_PY) files $(VARIANT_NAME) 2>/dev/null)
# Recursive: only the targets that use the stack fail on an unknown variant.
STACK = $(if $(COMPOSE_FILES),$(COMPOSE) $(COMPOSE_FILES) $(TLS_FILES),$(error unknown VARIANT=$(VARIANT) \
  (HUB=$(HUB)): use mongrel2 or wsgi with HUB=gevent|eventlet, or one of: $(VARIANT_NAMES)))
VARIANT_NAMES = $(shell $(VARIANTS_PY) names)
# TLS=1: a second Mongrel2 front, HTTPS on TLS_PUBLISH, with the certificates of `make certs`
# (docs/tls.md). Mongrel2 variants only: the others have no Mongrel2 front to add.
TLS ?= 0
TLS_PUBLISH ?= 6443
export TLS_PUBLISH
TLS_FILES = $(if $(filter 1,$(TLS)),$(if $(filter mongrel2-%,$(VARIANT_NAME)),-f compose/tls.yml,$(error \
  TLS=1 needs a Mongrel2 variant (mongrel2-gevent-dispatch, mongrel2-eventlet, ...), not $(VARIANT_NAME))))

.PHONY: help certs images up down destroy build compare bench bench-dispatch base-image ca-certs env env-example logs ps test test-image lint test-unit test-integration test-e2e test-example lock clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'
	@echo "  variables: VARIANT=mongrel2|wsgi|example-flask|notes-... HUB=gevent|eventlet HANDLERS=N HTTP_PUBLISH=[addr:]port EXTRA_CA_CERTS=files"
	@echo "  DISPATCH=1 (default): mongrel2 -> the dispatcher -> handlers, nothing lost on scale-down or a handler's crash;"
	@echo "  DISPATCH=0: the bare shape, mongrel2 PUSHes straight to the handlers (one hop less; make up and swarm-up)"
	@echo "  VARIANT may also be a full variant name: $(VARIANT_NAMES)"

certs: ## a development CA and server certificate (localhost, 127.0.0.1, mongrel2) in .certs/ for TLS=1
	@sh mongrel2/make-certs.sh .certs

base-image: ## make sure debian:bookworm-slim exists (pull, else debootstrap)
	@scripts/ensure-base-image.sh

# Idempotent (a file is replaced only when it differs, and only stale ones are removed), so
# builds running side by side never see the folder half written.
ca-certs: ## copy EXTRA_CA_CERTS into the build context
	@mkdir -p services/ca-certificates
	@for cert in $(EXTRA_CA_CERTS); do cmp -s "$$cert" "services/ca-certificates/$${cert##*/}" || \
	  cp "$$cert" services/ca-certificates/; done
	@for have in services/ca-certificates/*.crt; do [ -e "$$have" ] || continue; \
	  case " $(notdir $(EXTRA_CA_CERTS)) " in *" $${have##*/} "*) ;; *) rm -f "$$have" ;; esac; done

# The first .env starts as a copy of .env.example (every setting, commented out); the lines
# you add or uncomment there are kept, only these three are rewritten.
env: ## write .env (project name, port, a random DB_PASSWORD made once and kept; your settings kept) for `docker compose` too
	@pw=$$(sed -n 's/^DB_PASSWORD=//p' .env 2>/dev/null | tail -n 1); \
	 [ -n "$$pw" ] || pw=$$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n'); \
	 umask 077; { printf 'COMPOSE_PROJECT_NAME=%s\nHTTP_PUBLISH=%s\nDB_PASSWORD=%s\n' \
	   "$(COMPOSE_PROJECT_NAME)" "$(HTTP_PUBLISH)" "$$pw"; \
	   grep -v -E '^(COMPOSE_PROJECT_NAME|HTTP_PUBLISH|DB_PASSWORD)=' $$([ -f .env ] && echo .env || echo .env.example) 2>/dev/null || true; \
	 } > .env.tmp && mv -f .env.tmp .env

env-example: test-image ## regenerate .env.example from services/m2stack/settings.py (scripts/env_example.py)
	docker run --rm --entrypoint python3 $(TEST_IMAGE) /app/scripts/env_example.py > .env.example.tmp
	mv -f .env.example.tmp .env.example

# A variant built on another's image (a service of your own: FROM m2stack/handler:gevent)
# builds that one first.
PREBUILD = $(shell $(VARIANTS_PY) prebuild $(VARIANT_NAME) 2>/dev/null)
build: base-image ca-certs compose-v2 ## build the images of the selected VARIANT and HUB
	$(if $(PREBUILD),$(COMPOSE) $(PREBUILD))
	$(STACK) build

up: build env $(if $(filter 1,$(TLS)),certs) ## start the VARIANT (HANDLERS handlers on HUB, behind the dispatcher unless DISPATCH=0), wait until healthy; TLS=1 adds HTTPS
	$(COMPOSE_V2_ONLY)$(STACK) up -d --wait --wait-timeout 180 $(shell $(VARIANTS_PY) scale $(VARIANT_NAME) $(HANDLERS))
	@echo "up: http://localhost:$(lastword $(subst :, ,$(HTTP_PUBLISH)))/json  (variant: $(VARIANT_NAME), handlers: $(HANDLERS))"
	$(if $(filter 1,$(TLS)),@echo "up: https://localhost:$(lastword $(subst :, ,$(TLS_PUBLISH)))/json  (trust .certs/ca.crt)")

# Any variant's stack: containers of services the base file lacks (wsgi, locust) are orphans.
down: compose-v2 ## stop and remove the stack's containers and networks; KEEP its volumes (the database)
	$(COMPOSE) -f docker-compose.yml down --remove-orphans

destroy: compose-v2 ## remove the stack AND its volumes: the database is deleted
	$(COMPOSE) -f docker-compose.yml down --volumes --remove-orphans

logs: compose-v2 ## follow the logs
	$(STACK) logs -f --tail 100

ps: compose-v2 ## list the containers
	$(STACK) ps

# Every suite, in the order that is quickest on 2 cores without running two suites with
# tight timing bounds at once: the base image; then the other images built while the checks
# in the test image run (lint, unit, integration); then the end-to-end tests that bound a
# time or a ratio near what a quiet machine measures, alone; then three streams side by
# side, each waiting on containers far more than it computes: the Swarm suite (counts of
# lost requests), the e2e modules that assert no time (E2E_UNTIMED) and those whose only
# time bounds are several times what they measure even with both cores saturated (E2E_LOOSE:
# 50 one-second waits through one process in under 5 s, measured 1.03-1.21 s so).
# The build's log goes to build/images.log and is shown if it fails; the Swarm suite's to
# build/swarm.log, E2E_LOOSE's to build/e2e-loose.log, both printed after.
# test_monitoring.py first: it needs Docker's DNS for its whole minute. A swarm leave breaks
# name resolution in every container then up (docs/swarm.md), so besides, the Swarm suite's
# leaves wait on SWARM_LEAVE_LOCK until no e2e stack is up. Last, alone (it bounds the
# waits of clients whose handlers' node is lost), the multi-node suite.
E2E_UNTIMED := tests/e2e/test_monitoring.py tests/e2e/test_compare.py tests/e2e/test_example_service.py \
  tests/e2e/test_example_flask.py tests/e2e/test_tls.py tests/e2e/test_shapes.py
E2E_LOOSE := tests/e2e/test_io.py tests/e2e/test_peers.py
SWARM_PYTEST = COMPOSE="$(COMPOSE)" PYTHON="$(PYTHON)" .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/swarm
MULTINODE_PYTEST = COMPOSE="$(COMPOSE)" PYTHON="$(PYTHON)" .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/multinode
test: base-image ca-certs compose-v2 ## every test: lint, unit, integration, end-to-end (the notes example's included), Swarm, multi-node Swarm
	@mkdir -p build; set +e; \
	 $(MAKE) --no-print-directory images registry-image .venv/ok > build/images.log 2>&1 & built=$$!; \
	 $(MAKE) --no-print-directory lint test-unit test-integration; checked=$$?; \
	 wait $$built; images=$$?; \
	 [ $$images -eq 0 ] || { tail -n 60 build/images.log; echo "make test: building the images or the end-to-end venv failed" >&2; exit $$images; }; \
	 [ $$checked -eq 0 ] || exit $$checked; \
	 echo "make test: images built (build/images.log)"
	@COMPOSE="$(COMPOSE)" .venv/bin/python -m pytest -q --durations=15 tests/e2e $(addprefix --ignore=,$(E2E_UNTIMED) $(E2E_LOOSE))
	@set +e; mkdir -p build; export SWARM_LEAVE_LOCK=$(CURDIR)/build/swarm-leave.lock; \
	 $(SWARM_PYTEST) > build/swarm.log 2>&1 & swarm=$$!; \
	 COMPOSE="$(COMPOSE)" .venv/bin/python -m pytest -q -p no:cacheprovider $(E2E_LOOSE) > build/e2e-loose.log 2>&1 & loose=$$!; \
	 COMPOSE="$(COMPOSE)" .venv/bin/python -m pytest -q -p no:cacheprovider $(E2E_UNTIMED); untimed=$$?; \
	 wait $$loose; loosed=$$?; echo "make test: $(E2E_LOOSE) (build/e2e-loose.log):"; cat build/e2e-loose.log; \
	 wait $$swarm; swarmed=$$?; echo "make test: the Swarm suite (build/swarm.log):"; cat build/swarm.log; \
	 echo "make test: the multi-node suite"; $(MULTINODE_PYTEST); multinode=$$?; \
	 for rc in $$untimed $$loosed $$swarmed $$multinode; do [ $$rc -eq 0 ] || exit $$rc; done

test-image: base-image ca-certs compose-v2
	TEST_IMAGE=$(TEST_IMAGE) $(COMPOSE) -p m2stack-test -f tests/test-image.yml build --quiet test

lint: test-image ## ruff, mypy and the import contracts between the layers (in the test image)
	docker run --rm --entrypoint /app/scripts/lint.sh $(TEST_IMAGE)

test-unit: test-image ## protocol and app unit tests (in the test image)
	docker run --rm -e CI $(TEST_IMAGE) -q tests/unit

# Four processes (pytest-xdist), a test file each at a time: the suite mostly waits (for
# timeouts, sleeps, processes starting), so four wait side by side on 2 cores; its longest
# file (test_dispatcher.py, about 90 s) bounds it. docs/testing-time.md has the figures.
test-integration: test-image ## real mongrel2 + real handler processes on loopback, both hubs
	docker run --rm -e CI $(TEST_IMAGE) -q -n 4 --dist loadfile tests/integration

.venv/ok: services/requirements/e2e.txt
	@$(if $(call python_at_least,3.10),:,echo "make: the end-to-end tests need Python 3.10 or newer; $(PYTHON) is \
	  $(PYTHON_VERSION) (set PYTHON=python3.X)" >&2; exit 1)
	$(PYTHON) -m venv .venv
	.venv/bin/pip install -q --require-hashes --no-deps -r services/requirements/e2e.txt
	@touch $@

# Each variant's images with its own compose files, so their build arguments apply.
images: base-image ca-certs compose-v2 ## build every image the tests and variants use (db included)
	@set -eo pipefail; $(VARIANTS_PY) images | while read -r args; do \
	  echo "$(COMPOSE) $$args"; $(COMPOSE) $$args </dev/null; done
	$(COMPOSE) -f docker-compose.yml -f compose/loadtest.yml build locust-master
	$(COMPOSE) -f docker-compose.yml -f compose/monitoring.yml build prometheus

test-e2e: images .venv/ok ## docker compose stacks driven by real HTTP clients (the notes example's own tests included)
	COMPOSE="$(COMPOSE)" .venv/bin/python -m pytest -q tests/e2e

# The notes example alone (examples/notes), as README's "Start your own service" does it:
# its images built FROM the handler and WSGI images, its tests against each door and hub.
test-example: images .venv/ok ## the notes example service end to end: both doors, both hubs
	COMPOSE="$(COMPOSE)" .venv/bin/python -m pytest -q tests/e2e/test_example_service.py

# The variants under the same load, one after another, ROUNDS=3 times; report in
# reports/<timestamp>/. The standard run: the headline variants and scenarios, wrk swept
# over CONCURRENCY=16,64,256,1024 connections; FULL=1: every variant on every workload (each GET by wrk).
# Narrow or widen: VARIANTS=a,b SCENARIOS=x,y DURATION=30 WARMUP=5 USERS=64 SPAWN_RATE=
# HANDLERS=1 LOCUST_WORKERS=1 HANDLER_CPUS=1.0 MONGREL2_CPUS=1.0 LOCUST_CPUS=1.0 (see loadtest/compare.py);
# the generator pinned to its own half of the CPUs, the servers to the other (PIN=0: not);
# VARIANTS names come from loadtest/comparison/variants.py.
compare: images .venv/ok ## load-test the variants side by side, 3 rounds, wrk swept (FULL=1: everything), write a report
	COMPOSE="$(COMPOSE)" HANDLERS=$(HANDLERS) .venv/bin/python loadtest/compare.py

# The dispatcher's ceiling on one CPU (loadtest/dispatch_bench.py), in the test image: the
# real dispatcher process, fake mongrel2 and handlers on the other CPU.
bench-dispatch: test-image ## requests/s the dispatcher moves on one CPU (a benchmark, not a test)
	docker run --rm --entrypoint python3 $(TEST_IMAGE) /app/loadtest/dispatch_bench.py

# What each step of one request costs on each hub, in µs (loadtest/hotpath.py, run in the
# real handler images); BENCH_OUT=file.json also writes the rows for `make compare`'s report
# (HOTPATH_JSON=file.json make compare).
BENCH_NUMBER ?= 5000
BENCH_REPEAT ?= 7
bench: base-image ca-certs compose-v2 ## per-step cost of one request on each hub (a benchmark, not a test)
	$(COMPOSE) -f docker-compose.yml build handler
	$(COMPOSE) -f docker-compose.yml -f compose/eventlet.yml build handler
	@out=$$(mktemp -d); for hub in gevent eventlet; do \
	  docker run --rm --read-only --tmpfs /tmp -e PYTHONWARNINGS=ignore -v "$(CURDIR)/loadtest:/bench:ro" \
	    --entrypoint python3 m2stack/handler:$$hub /bench/hotpath.py --hub $$hub --json \
	    --number $(BENCH_NUMBER) --repeat $(BENCH_REPEAT) > $$out/$$hub.json || exit 1; \
	done; \
	$(PYTHON) -c 'import json,sys; print(json.dumps([r for f in sys.argv[1:] for r in json.load(open(f))], indent=1))' \
	  $$out/gevent.json $$out/eventlet.json > $${BENCH_OUT:-$$out/hotpath.json}; \
	echo "bench: rows in $${BENCH_OUT:-$$out/hotpath.json} (HOTPATH_JSON=that make compare adds them to the report)"

lock: ## re-lock every requirements file (pip-compile with hashes)
	@for name in build gevent eventlet test e2e locust ceiling example-flask granian uvicorn; do \
	  $(PYTHON) -m piptools compile -q --generate-hashes --allow-unsafe --strip-extras --no-header \
	    -o services/requirements/$$name.txt services/requirements/$$name.in || exit 1; done

clean: down ## remove the stack (its data kept: make destroy deletes it) and the test venv
	rm -rf .venv

# ---- Compose v2, Docker Swarm, registry (docs/swarm.md) --------------------------------

.PHONY: compose-v2 swarm-up swarm-down swarm-stack-file push registry-image registry-up registry-down test-swarm test-multinode

compose-v2: ## Compose v2 for this project: the machine's plugin, else Debian's package in .tools/
	@$(if $(filter $(CURDIR)/$(COMPOSE_V2_TOOL),$(COMPOSE)),[ -x $(COMPOSE_V2_TOOL) ] || $(PYTHON) scripts/compose_v2.py $(COMPOSE_V2_TOOL),:)

FRONTS ?= 2
REGISTRY ?=
SWARM_STACK ?= m2stack
SWARM_PUBLISH ?= host
REGISTRY_PUBLISH ?= 127.0.0.1:5000
SWARM_ENV = COMPOSE="$(COMPOSE)" PYTHON="$(PYTHON)" HUB=$(HUB) HANDLERS=$(HANDLERS) FRONTS=$(FRONTS) DISPATCH=$(DISPATCH) \
  REGISTRY=$(REGISTRY) SWARM_STACK=$(SWARM_STACK) SWARM_PUBLISH=$(SWARM_PUBLISH) HTTP_PUBLISH=$(HTTP_PUBLISH)

swarm-up: compose-v2 ## deploy to the swarm (a single-node one is made if none): FRONTS=M HANDLERS=N [HUB=] [DISPATCH=0: bare] [REGISTRY=host:port]
	@$(SWARM_ENV) scripts/swarm.sh up

swarm-down: ## remove the stack, its secret, networks and volume; leave the swarm if swarm-up made it
	@$(SWARM_ENV) scripts/swarm.sh down

swarm-stack-file: compose-v2 ## print the path of the generated stack file (build/swarm/STACK/stack.json)
	@$(SWARM_ENV) scripts/swarm.sh stack-file

push: compose-v2 ## tag and push the images of the stack (HUB) to REGISTRY=host:port
	@$(SWARM_ENV) scripts/swarm.sh push

registry-image: base-image ## the registry image (Debian's docker-registry)
	docker build -q -t m2stack/registry:latest services/registry

registry-up: registry-image ## a local registry on REGISTRY_PUBLISH (127.0.0.1:5000), for make push
	docker run -d --name m2stack-registry --read-only --cap-drop ALL --security-opt no-new-privileges \
	  --tmpfs /tmp -v m2stack-registry:/var/lib/docker-registry -p $(REGISTRY_PUBLISH):5000 m2stack/registry:latest

registry-down: ## remove the local registry and its volume
	docker rm -f m2stack-registry; docker volume rm m2stack-registry

# A single-node swarm of its own (left as found): 2 fronts x 3 handlers, scaling, a front
# killed, a rolling update, the registry path. About 5 minutes on 2 cores.
test-swarm: images registry-image .venv/ok compose-v2 ## Docker Swarm: fronts x handlers, scaling, failover, registry
	$(SWARM_PYTEST)

# Three Swarm nodes on this machine (scripts/multinode.sh; needs root), the stack spread over
# them from the registry, a node drained, the leader killed, a worker powered off, under
# load; the machine left as found. About 3 minutes.
test-multinode: images registry-image .venv/ok compose-v2 ## Docker Swarm on three nodes of this machine: registry, drain, leader and node loss
	$(MULTINODE_PYTEST)
