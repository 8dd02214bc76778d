"""under_load, every scenario's frame: the clients stop whatever the block did, and the final
read is recorded only after a block that completed (the real clients: tests/integration)."""

from __future__ import annotations

import contextlib

import pytest

from availlab.clients import workload as clients
from availlab.errors import UsageError


class FakeWorkload:
    calls: list[str] = []

    def __init__(self, *a, **k):
        pass

    def start(self):
        self.calls.append("start")

    def stop(self):
        self.calls.append("stop")

    def calibrate(self, seconds):
        self.calls.append(f"calibrate {seconds:g}")

    def final_read(self):
        self.calls.append("final read")


class History:
    def __init__(self):
        self.records = []

    def write(self, r):
        self.records.append(r)


@contextlib.contextmanager
def dirtier():
    FakeWorkload.calls.append("alongside on")
    try:
        yield
    finally:
        FakeWorkload.calls.append("alongside off")


@pytest.fixture(autouse=True)
def fake(monkeypatch):
    FakeWorkload.calls = []
    monkeypatch.setattr(clients, "Workload", FakeWorkload)


def test_a_completed_block_is_warmed_up_cooled_down_stopped_and_read():
    h = History()
    with clients.under_load(None, "sql1", None, h, warmup_s=0, alongside=dirtier()):
        FakeWorkload.calls.append("act")
    assert FakeWorkload.calls == ["start", "alongside on", "calibrate 0", "act", "alongside off", "stop", "final read"]
    assert [r["type"] for r in h.records] == ["warm"]


def test_the_probe_calibrates_in_the_last_two_seconds_of_the_warm_up(monkeypatch):
    slept = []
    monkeypatch.setattr(clients.time, "sleep", slept.append)
    with clients.under_load(None, "sql1", None, History(), warmup_s=3):
        pass
    assert "calibrate 2" in FakeWorkload.calls and slept[:2] == [1.0, 2.0]


def test_a_failed_block_stops_everything_and_reads_nothing():
    with pytest.raises(KeyboardInterrupt):
        with clients.under_load(None, "sql1", None, History(), warmup_s=0, alongside=dirtier()):
            raise KeyboardInterrupt
    assert FakeWorkload.calls == ["start", "alongside on", "calibrate 0", "alongside off", "stop"]


def test_a_start_that_fails_half_way_still_stops_the_clients(monkeypatch):
    def bad_start(self):
        FakeWorkload.calls.append("start")
        raise RuntimeError("client 3 of 4 did not start")

    monkeypatch.setattr(FakeWorkload, "start", bad_start)
    with pytest.raises(RuntimeError):
        with clients.under_load(None, "sql1", None, History(), warmup_s=0):
            pass
    assert FakeWorkload.calls == ["start", "stop"]


def test_negative_durations_are_refused_before_any_client_starts():
    with pytest.raises(UsageError, match="warmup_s/cooldown_s"):
        with clients.under_load(None, "sql1", None, History(), warmup_s=-1):
            pass
    assert FakeWorkload.calls == []
