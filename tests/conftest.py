"""Shared test plumbing: figures measured by integration tests, and the key durations of every
lab up, VM start and migration of the run (from this process and every `availlab` command the
tests start, through AVAILLAB_DURATIONS), are printed at the end of the run. Timings are
reported, never asserted against a clock (these machines are shared and noisy); the guards
against gross regressions are ratios measured beside each other in one test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from availlab import durations

FIGURES: dict[str, object] = {}
DURATIONS = Path("reports").resolve() / "durations.jsonl"


def pytest_configure(config):  # noqa: ARG001
    DURATIONS.parent.mkdir(exist_ok=True)
    DURATIONS.write_text("")  # this run's only
    os.environ[durations.ENV] = str(DURATIONS)


@pytest.fixture
def figures() -> dict[str, object]:
    return FIGURES


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    lines = durations.summary(DURATIONS.read_text().splitlines()) if DURATIONS.exists() else []
    if lines:
        terminalreporter.section("availlab key durations (every lab up, VM start and migration of this run)")
        for line in lines:
            terminalreporter.write_line(line)
    if not FIGURES:
        return
    terminalreporter.section("availlab figures (measured in this run)")
    for k, v in FIGURES.items():
        terminalreporter.write_line(f"{k}: {v}")
    out = Path("reports")
    out.mkdir(exist_ok=True)
    (out / "figures.json").write_text(json.dumps(FIGURES, indent=2, default=str) + "\n")
