"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def state_root(tmp_path, monkeypatch):
    """A throw-away AVAILLAB_STATE: no unit test may point a lab at a real directory. A sentinel
    beside it must be untouched when the test ends."""
    root = tmp_path / "state"
    root.mkdir()
    monkeypatch.setenv("AVAILLAB_STATE", str(root))
    monkeypatch.delenv("AVAILLAB_LAB", raising=False)
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("before")
    yield root
    assert sentinel.read_text() == "before"


@pytest.fixture(autouse=True)
def _cli_log_in_tmp(tmp_path_factory, monkeypatch):
    """The command line's log file (clilog.py) of a unit test's `main()` stays out of the real state root."""
    monkeypatch.setenv("AVAILLAB_LOG", str(tmp_path_factory.getbasetemp() / "availlab.log"))
