# Two commands set everything up on a fresh Debian 12 machine: `make demo` and `make test`.
.PHONY: setup setup-test demo test test-fast lint test-integration bench bench-defaults lab-down clean

PYTEST := .venv/bin/python -m pytest

setup:
	@bash lab/setup.sh

# what the tests need besides (a browser for the report check, sshd for the qemu+ssh test)
setup-test:
	@bash lab/setup.sh --test

demo: setup
	@bash lab/demo.sh

# The whole suite, lab included (needs root; CI runs it via .ci/run). A test fails at once on any
# broken outcome, except one whose run saw the guest kernel crash (its console names it, e.g. list
# corruption at a TCG migration, docs/lab.md): that test runs once more, and the crash is printed
# with the figures, so an emulator's rare fault neither hides nor fails the suite alone.
test: setup-test lint
	$(PYTEST) -v -ra --durations=25 --junitxml=reports/junit.xml --reruns 1 \
	  --only-rerun "the guest kernel crashed" tests

# Unit tests only: seconds, no root, no lab.
test-fast: setup lint
	$(PYTEST) -q -m "not integration" tests/unit

# pyflakes-level lint everywhere, the import contracts (the pipeline's layers; checks/ and report/
# touch no lab), and mypy over the whole package, strict on the pure modules (pyproject.toml lists them)
lint: setup
	.venv/bin/ruff check lib tests bench
	.venv/bin/lint-imports
	.venv/bin/mypy

test-integration: setup-test
	$(PYTEST) -v -ra tests/integration

bench: setup
	.venv/bin/python bench/lab_timings.py
	.venv/bin/python bench/migration.py 4
	.venv/bin/python bench/backup.py
	.venv/bin/python bench/probe.py 3
	.venv/bin/python bench/restore.py 3 512
	.venv/bin/python bench/soak.py 50 5

# Each runbook 5 times with its defaults: the figures its default SLOs are chosen from (docs/slo.md).
bench-defaults: setup
	.venv/bin/python bench/defaults.py 5

lab-down:
	.venv/bin/availlab lab down

# Not runs/: each run folder is evidence (a report attached to a change request); remove it by hand.
clean: lab-down
	rm -rf reports .pytest_cache
