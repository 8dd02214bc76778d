"""under_load, every scenario's frame: the clients stop whatever the block did, and the final
read is recorded only after a block that completed (the real clients: tests/integration)."""

from __future__ import annotations

import contextlib

import pytest

from availlab.clients import workload as clients
from availlab.errors import UsageError

RealWorkload = clients.Workload  # before the fixture below swaps it


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

    def wait_all_succeeded(self):
        self.calls.append("every client succeeded")
        return []

    def final_read(self):
        self.calls.append("final read")


class History:
    def __init__(self):
        self.records = []

    def write(self, r):
        self.records.append(r)


@contextlib.contextmanager
def dirtier():
    FakeWorkload.calls.append("nemeses set up")
    try:
        yield
    finally:
        FakeWorkload.calls.append("nemeses torn down")


@pytest.fixture(autouse=True)
def fake(monkeypatch):
    FakeWorkload.calls = []
    monkeypatch.setattr(clients, "Workload", FakeWorkload)
    monkeypatch.setattr(clients, "lab_environment", lambda st: {"lab": "fake"})  # no lab to ask


def test_a_completed_block_is_warmed_up_cooled_down_stopped_and_read():
    h = History()
    with clients.under_load(None, "sql1", None, h, warmup_s=0, nemeses=dirtier()):
        FakeWorkload.calls.append("act")
    assert FakeWorkload.calls == ["start", "nemeses set up", "every client succeeded", "calibrate 0", "act", "nemeses torn down", "stop", "final read"]
    assert [r["type"] for r in h.records] == ["environment", "warm"]  # what measured it, first


def test_the_probe_calibrates_in_the_last_two_seconds_of_the_warm_up(monkeypatch):
    slept = []
    monkeypatch.setattr(clients.time, "sleep", slept.append)
    with clients.under_load(None, "sql1", None, History(), warmup_s=3):
        pass
    assert "calibrate 2" in FakeWorkload.calls and slept[:2] == [1.0, 2.0]


def test_a_failed_block_stops_everything_and_reads_nothing():
    with pytest.raises(KeyboardInterrupt):
        with clients.under_load(None, "sql1", None, History(), warmup_s=0, nemeses=dirtier()):
            raise KeyboardInterrupt
    assert FakeWorkload.calls == ["start", "nemeses set up", "every client succeeded", "calibrate 0", "nemeses torn down", "stop"]


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


def test_the_workload_knows_which_clients_have_completed_an_operation(tmp_path):
    """The warm mark waits for every client's first success (checks.client measures from it)."""
    import threading
    import types

    from availlab.history import JsonlWriter

    wl = RealWorkload.__new__(RealWorkload)
    wl.spec = clients.WorkloadSpec(clients=2)
    wl._succeeded, wl._all_succeeded = set(), threading.Event()
    with JsonlWriter(tmp_path / "h.jsonl") as wl.history:
        lines = ['{"type":"invoke","client":0,"op":1}\n', '{"type":"fail","client":0,"op":1}\n',
                 '{"type":"ok","client":0,"op":2}\n', '{"type":"ok","client":0,"op":3}\n']
        wl._pump(types.SimpleNamespace(stdout=iter(lines)), 0)
        assert wl.wait_all_succeeded(timeout_s=0.01) == [1]
        wl._pump(types.SimpleNamespace(stdout=iter(['{"type":"ok","client":1,"op":1}\n'])), 1)
        assert wl.wait_all_succeeded(timeout_s=0.01) == []
    assert len((tmp_path / "h.jsonl").read_text().splitlines()) == 5  # every line kept, parsed or not
