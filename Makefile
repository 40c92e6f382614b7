# nodebook: the two commands a newcomer needs are `make demo` and `make test`.
# Everything else here is a building block of those two.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SANDBOX := $(PYTHON) sandbox/cluster.py
# Debian packages the sandbox cluster and the tests need (installed without starting services;
# checked from a debootstrap minbase Debian 12 with only make, python3 and git added).
APT_PACKAGES := slurmctld slurmd slurm-client munge openssh-server openssh-client lmod \
	nftables iproute2 procps python3-venv libpam0g-dev gcc chromium chromium-driver curl \
	slurmdbd mariadb-server libpam-slurm-adopt
STAMP := $(VENV)/.installed
# The sandbox's profile (its cluster hosts' module system): lmod, or modules (Environment Modules).
PROFILE ?= lmod

.PHONY: help deps venv lint unit test test-profile collection sandbox-up sandbox-down sandbox-status \
	sandbox-clean sandbox-shell demo chaos bench clean

help:
	@echo "make demo            install what is needed, start the sandbox cluster, run setup and a session"
	@echo "make test            install what is needed, then lint and every test"
	@echo "make sandbox-up      start the sandbox cluster (idempotent; PROFILE=modules: Environment Modules, not Lmod)"
	@echo "make test-profile PROFILE=modules   the profile_session tests on a sandbox restarted in PROFILE"
	@echo "make sandbox-status  show what runs in the sandbox"
	@echo "make sandbox-down    stop the sandbox and remove everything it made"
	@echo "make lint            yamllint, ansible-lint (production profile, offline), ruff, shellcheck"
	@echo "make collection      build the Ansible collection nodebook.jupyter into dist/"
	@echo "make bench | chaos   benchmarks and exit-path chaos loops (see bench/)"

# Debian packages, installed once; policy-rc.d keeps the daemons from starting at install time.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root (apt-get install)"; exit 1; fi; \
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d; \
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# Editable as a plain path entry (compat): setuptools' default editable mode adds an import
	# hook that every `python` start loads, which no installed nodebook has (bench: the start).
	$(VENV)/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat
	$(VENV)/bin/ansible-galaxy collection install -r requirements.yml >/dev/null
	touch $@

venv: $(STAMP)

# The Ansible collection nodebook.jupyter (galaxy.yml): dist/nodebook-jupyter-VERSION.tar.gz.
collection: venv
	$(VENV)/bin/ansible-galaxy collection build --force --output-path dist . >/dev/null
	@ls dist/nodebook-jupyter-*.tar.gz

lint: venv collection
	$(VENV)/bin/yamllint -s .
	$(VENV)/bin/ansible-lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check roles/nodebook_remote/files/bin/nodebook-jupyter
	$(VENV)/bin/ruff format --check roles/nodebook_remote/files/bin/nodebook-jupyter
	$(VENV)/bin/shellcheck sandbox/test-profile.sh tests/lanes.sh
	$(VENV)/bin/shellcheck -x -a -P roles/nodebook_remote/files/lib/nodebook-remote roles/nodebook_remote/files/bin/nodebook-remote

unit: venv
	$(VENV)/bin/pytest -m "not sandbox" tests

# Every test, in lanes side by side on one sandbox (tests/lanes.sh; a run that tests nothing is
# a failure). Then the profile_session tests again on the sandbox with Environment Modules
# (test-profile), unless the sandbox was up before (someone's: it is not restarted, and the
# tests run in one lane; in CI that is a failure).
test: deps venv lint
	@was_up=0; $(SANDBOX) status >/dev/null 2>&1 && was_up=1; \
	PYTHON=$(PYTHON) bash tests/lanes.sh --durations=25; rc=$$?; \
	if [ $$was_up -eq 0 ]; then \
		PYTHON=$(PYTHON) bash sandbox/test-profile.sh modules --durations=10 || rc=$$((rc ? rc : 1)); \
	else \
		echo "make test: the sandbox was up before; not restarting it for the modules profile: run make test-profile PROFILE=modules" >&2; \
		if [ -n "$${CI:-}" ]; then rc=$$((rc ? rc : 1)); fi; \
	fi; exit $$rc

# The profile_session tests (tests/conftest.py) on the sandbox restarted in PROFILE, then down
# again (and back up as it was, if it was up): make test-profile PROFILE=modules.
test-profile: deps venv
	@PYTHON=$(PYTHON) bash sandbox/test-profile.sh $(PROFILE) $(PYTEST_ARGS)

sandbox-up: deps venv
	$(SANDBOX) up --profile $(PROFILE)

sandbox-down:
	$(SANDBOX) down

sandbox-status:
	$(SANDBOX) status

# A root shell on the sandbox's laptop (its network namespace): try `ssh -F $$SSH_CONFIG login`.
sandbox-shell:
	SSH_CONFIG=/var/lib/nodebook-sandbox/ssh/config $(SANDBOX) exec laptop -- bash

sandbox-clean: sandbox-down
	$(SANDBOX) clean-cache

demo: deps venv
	$(PY) sandbox/demo.py

chaos: deps venv
	$(PY) -m bench.chaos

bench: deps venv
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dist
