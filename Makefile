# viber-vote: `make run` starts the service locally; `make test` runs the whole test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_PROCESSES ?= 0
# Test processes (pytest-xdist, a file each at a time; 0: one by one, in this process). Two finish
# in 8-11 minutes on 2 cores instead of 10-14, but timing tests (Telegram's rate limiter against the
# fake's 30/s, a restarted worker's first sends) then fail now and then: one process by default.

.PHONY: chromium nginx run run-ha test lint format bench bench-profile bench-sustained bench-memory bench-distant bench-wait translations clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)  ## Start Redis (if REDIS_URL is unset), web, workers, clock; without messenger tokens, fakes and a demo
	$(PY) -m bench.localstack

run-ha: $(STAMP)  ## make run on a Redis primary, two replicas and three Sentinels (loopback), to watch a failover
	$(PY) -m bench.localstack_ha

chromium:  ## Debian's Chromium for the browser test (installed when missing and run as root)
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "no /usr/bin/chromium: the browser test will skip (install Debian's chromium package)"

# Debian's nginx postinst starts the service (the default site on port 80) unless policy-rc.d
# says no: a policy-rc.d exiting 101 (Docker images ship one) is put in place for the install when
# there is none, and removed after. Under systemd the unit is also disabled, so no boot starts it.
# The test runs its own nginx (tests/support/nginx.py); the system service is never needed.
nginx:  ## Debian's nginx for the slow-client test (installed when missing and run as root, never started)
	@test -x /usr/sbin/nginx || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ( \
	  policy=/usr/sbin/policy-rc.d; \
	  if [ ! -e $$policy ]; then trap 'rm -f '$$policy EXIT; printf '#!/bin/sh\nexit 101\n' >$$policy; \
	    chmod 755 $$policy; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null \
	  && { [ ! -d /run/systemd/system ] || systemctl disable --quiet nginx; } ); } \
	  || echo "no /usr/sbin/nginx: the nginx test will skip (install Debian's nginx package)"

test: $(STAMP) chromium nginx  ## Lint, then every test against a throwaway redis-server
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: $(STAMP)  ## Throughput benchmark against baselines; writes BENCHMARKS.md
	$(PY) -m bench.run $(BENCH_ARGS)

bench-profile: $(STAMP)  ## One vote's web CPU by function (cProfile): the service vs the minimal vote path
	$(PY) -m bench.profile $(BENCH_ARGS)

bench-sustained: $(STAMP)  ## A steady 500 callbacks/s for 10 minutes, memory sampled; writes BENCHMARKS.md
	$(PY) -m bench.sustained $(BENCH_ARGS)

bench-memory: $(STAMP)  ## Redis bytes per vote for 1,000,000 votes
	$(PY) -m bench.memory $(BENCH_ARGS)

bench-distant: $(STAMP)  ## The web process when Viber is a round trip away: sync vs gthread workers
	$(PY) -m bench.distant $(BENCH_ARGS)

bench-wait: $(STAMP)  ## Intake and tally with and without WAIT for one replica (primary + replica)
	$(PY) -m bench.wait $(BENCH_ARGS)

translations: $(STAMP)  ## Re-extract the bot's messages and merge them into the ru/be catalogues
	$(VENV)/bin/pybabel extract -F babel.cfg --no-location --omit-header -o webhook/translations/messages.pot .
	$(VENV)/bin/pybabel update -i webhook/translations/messages.pot -d webhook/translations --width 100

clean:
	rm -rf $(VENV) var test-artifacts
