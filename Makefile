# toolbridge: `make run` serves, `make test` tests. Both install what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml tests/conformance/package.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# Today's OpenAI SDK for the client tests that run it in a process of their own: litellm
	# 1.106.2, which the app runs on, requires openai<3 (see docs/getting-started.md, "OpenAI SDK versions").
	$(PY) -m pip install --quiet --no-deps --target $(VENV)/openai3 openai==3.57.0
	# The OpenAI Agents SDK (on the 3.x SDK) in a venv of its own, for tests/agents.
	$(PYTHON) -m venv $(VENV)/agents
	$(VENV)/agents/bin/pip install --quiet openai-agents==0.24.0 openai==3.57.0
	# The MCP conformance suite, server-everything and the Node 22 they run on (Linux x64), as
	# locked. A failed install stops make (and the stamp is not written, so the next make retries).
	cd tests/conformance && npm ci --no-audit --no-fund --silent
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install toolbridge with its test tools

# exec: the server replaces the shell, so a signal to make (which passes SIGTERM on) reaches it.
# compileall: the editable install leaves app/ uncompiled, and with PYTHONDONTWRITEBYTECODE set
# every start would compile it again (0.1 s); an installed package (the image) has it compiled.
run: $(STAMP) ## Serve on 127.0.0.1:8000 (embedded Redis and the offline demo unless configured)
	-$(PY) -m compileall -q app
	exec $(PY) -m app --anonymous-by-default

# Twice for what Redis backs: on one node, then on a real three-primary Redis Cluster.
# -rfEs: every failure, error and skip is listed at the end, a skip with its reason (in CI a
# missing prerequisite fails instead: tests/fixtures).
test: $(STAMP) ## Run the whole test suite (what CI runs)
	$(PY) -m pytest -rfEs $(PYTEST_ARGS)
	TOOLBRIDGE_TEST_REDIS=cluster $(PY) -m pytest -rfEs -m redis $(PYTEST_ARGS)

docs: $(STAMP) ## Build the documentation site into site/ (strict: a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# Latency, throughput, memory and start-up (bench.run), then CPU per run (bench.cpu); both
# always run, and a missed target in either fails.
bench: $(STAMP) ## Benchmark toolbridge against direct calls (the floor)
	-$(PY) -m compileall -q app
	$(PY) -m bench.run $(BENCH_ARGS); run=$$?; $(PY) -m bench.cpu $(CPU_ARGS); cpu=$$?; \
	exit $$(( run || cpu ))

bench-compare: $(STAMP) ## CPU per run of this checkout against REV (default HEAD), served side by side
	$(PY) -m bench.compare $(or $(REV),HEAD)

bench-profile: $(STAMP) ## Where toolbridge's CPU goes in one of bench.cpu's jobs (JOB, default chat), sampled
	$(PY) -m bench.profile "$(or $(JOB),chat)" $(PROFILE_ARGS)

bench-sweep: $(STAMP) ## 1 to 1,024 runs in flight (a 2 s tool), through toolbridge and the floor
	$(PY) -m bench.sweep $(SWEEP_ARGS)

bench-background: $(STAMP) ## Background responses: time to answer, and 100 resumed streams
	$(PY) -m bench.background $(BENCH_ARGS)

bench-budget: $(STAMP) ## Budget reservations per second: one Redis node, then a Redis Cluster
	$(PY) -m bench.reservations $(BENCH_ARGS)

fmt: $(STAMP) ## Format and fix lint
	$(PY) -m ruff format app tests bench
	$(PY) -m ruff check --fix app tests bench

lint: $(STAMP) ## Check formatting, lint, and types (mypy --strict on app/)
	$(PY) -m ruff format --check app tests bench
	$(PY) -m ruff check app tests bench
	$(PY) -m mypy app

check: lint test ## Lint, then test

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-8s %s\n", $$1, $$2}'

.PHONY: install run test docs bench bench-compare bench-profile bench-sweep bench-background bench-budget fmt lint check help
