"""Shared test plumbing: figures measured by integration tests, and the key durations of every
lab up, VM start and migration of the run (from this process and every `availlab` command the
tests start, through AVAILLAB_DURATIONS), are printed at the end of the run. Timings are
reported, never asserted against a clock (these machines are shared and noisy); the guards
against gross regressions are ratios measured beside each other in one test."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from availlab import durations

FIGURES: dict[str, object] = {}
DURATIONS = Path("reports").resolve() / "durations.jsonl"


STARTED = time.time()
SCHEMA_CHECKED: list[str] = []  # results.json files of this run, each validated at the end


def pytest_configure(config):  # noqa: ARG001
    DURATIONS.parent.mkdir(exist_ok=True)
    DURATIONS.write_text("")  # this run's only
    os.environ[durations.ENV] = str(DURATIONS)


def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001
    """Every results.json the run's runbooks wrote must validate against the published schema."""
    import jsonschema

    from availlab import paths
    from availlab.report import SCHEMA_FILE

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    bad = []
    for f in sorted((paths.project_root() / "runs").glob("*/*/results.json")):
        if f.stat().st_mtime < STARTED or f.parent.is_symlink():  # runs/<runbook>/latest: a run seen already
            continue
        SCHEMA_CHECKED.append(str(f))
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(json.loads(f.read_text()))]
        if errors:
            bad.append(f"{f}: {'; '.join(errors[:3])}")
    if bad:
        print("\nresults.json not valid against " + str(SCHEMA_FILE) + ":\n  " + "\n  ".join(bad))
        session.exitstatus = 1


@pytest.fixture
def figures() -> dict[str, object]:
    return FIGURES


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    lines = durations.summary(DURATIONS.read_text().splitlines()) if DURATIONS.exists() else []
    if lines:
        terminalreporter.section("availlab key durations (every lab up, VM start and migration of this run)")
        for line in lines:
            terminalreporter.write_line(line)
    if SCHEMA_CHECKED:
        terminalreporter.write_line(f"{len(SCHEMA_CHECKED)} results.json written by this run validated against "
                                    "lib/availlab/report/results.schema.json")
    if not FIGURES:
        return
    terminalreporter.section("availlab figures (measured in this run)")
    for k, v in FIGURES.items():
        terminalreporter.write_line(f"{k}: {v}")
    out = Path("reports")
    out.mkdir(exist_ok=True)
    (out / "figures.json").write_text(json.dumps(FIGURES, indent=2, default=str) + "\n")
