"""Shared test plumbing: figures measured by integration tests are printed at the end of the run
(timings are reported, never asserted: these machines are shared and noisy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIGURES: dict[str, object] = {}


@pytest.fixture
def figures() -> dict[str, object]:
    return FIGURES


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if not FIGURES:
        return
    terminalreporter.section("availlab figures (measured in this run)")
    for k, v in FIGURES.items():
        terminalreporter.write_line(f"{k}: {v}")
    out = Path("reports")
    out.mkdir(exist_ok=True)
    (out / "figures.json").write_text(json.dumps(FIGURES, indent=2, default=str) + "\n")
