# `make test` and `make demo` work on a fresh Debian machine: they install what they need.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
APT_PACKAGES := docker-registry skopeo awscli chromium tinyproxy groovy

.PHONY: test demo bytecode lint typecheck bench bench-package bench-status sysdeps venv unit clean soak mutants

# Lint and types first (seconds), then every test: unit, integration (real registries,
# moto server, skopeo, the AWS CLI, chromium), e2e.
# Property tests run derandomized here (hypothesis profile "ci": the same examples on every
# run); `make soak` runs them randomized.
# Two pytest workers, each taking whole test files (--dist loadfile: a file's sandbox
# fixture stays in one worker); every server a test starts has its own port and folder.
test: sysdeps $(STAMP) lint typecheck bytecode
	$(PY) -m pytest -q -n $(or $(JOBS),2) --dist loadfile --hypothesis-profile=ci $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

demo: sysdeps $(STAMP) bytecode
	$(VENV)/bin/cloudops demo

# Every CLI run (hundreds in the tests, one per Jenkins step) would otherwise compile the
# sources it imports again when PYTHONDONTWRITEBYTECODE is set, as on many CI machines.
bytecode: $(STAMP)
	$(PY) -m compileall -q src

bench: sysdeps $(STAMP)
	$(PY) benchmarks/copy_bench.py $(BENCH_ARGS)

bench-package: sysdeps $(STAMP)
	$(PY) benchmarks/package_bench.py $(BENCH_ARGS)

bench-status: sysdeps $(STAMP)
	$(PY) benchmarks/status_bench.py $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

venv: $(STAMP)

# Debian packages for the real servers the tests start (registry, tinyproxy as the forward
# proxy), the interop peers, and headless chromium (opens `cloudops status --html` pages in tests).
sysdeps:
	@missing=""; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	command -v skopeo >/dev/null || missing="$$missing skopeo"; \
	test -x /usr/bin/aws || missing="$$missing awscli"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v tinyproxy >/dev/null || missing="$$missing tinyproxy"; \
	command -v groovyc >/dev/null || missing="$$missing groovy"; \
	command -v mariadbd >/dev/null || test -x /usr/sbin/mariadbd || missing="$$missing mariadb-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,sandbox]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Longer fault and kill -9 loops against the sandbox; prints a table (inconsistencies must be 0).
# First the unit property tests with new random examples (hypothesis profile "random").
soak: sysdeps $(STAMP)
	$(PY) -m pytest -q tests/unit --hypothesis-profile=random
	$(PY) -m tests.soak --rounds $(or $(ROUNDS),10)

# Named mutations of the safety-critical code, each on a scratch copy with the tests that
# should notice; prints mutant, killing test, seconds (docs/testing.md). Not part of `test`.
# A subset: make mutants MUTANTS=account-guard,blob-sha256
mutants: sysdeps $(STAMP)
	$(PY) -m tests.mutants $(if $(MUTANTS),--only $(MUTANTS)) $(MUTANTS_ARGS)
