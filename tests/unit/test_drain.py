"""Which hosts a drain may move VMs to, and how many move at once (events/drain.py); the moves
themselves run on the lab in tests/integration/test_lab_lifecycle.py and
test_rolling_maintenance.py."""

import threading
from types import SimpleNamespace

import pytest

from availlab.errors import UsageError
from availlab.events import drain


def lab(drained=None, lost=()):
    hosts = {h: SimpleNamespace(name=h) for h in ("h1", "h2", "h3", "dr1")}
    topo = {"hosts": [{"name": "h1"}, {"name": "h2", "site": "primary"}, {"name": "h3"},
                      {"name": "dr1", "site": "dr"}]}
    return SimpleNamespace(hosts=hosts, topology=topo, lost_hosts=list(lost), drained=drained or {}, lab="x")


def test_targets_are_the_sites_other_hosts_that_are_up_and_not_drained(monkeypatch):
    monkeypatch.setattr(drain, "provider", lambda st: SimpleNamespace(reachable=lambda h: h.name != "h3"))
    assert drain.targets(lab(), "h1") == ["h2"]  # not the DR site's host, not h3 (daemon down)
    assert drain.targets(lab(drained={"h2": []}), "h1") == []
    assert drain.targets(lab(), "dr1") == []


def test_unknown_lost_and_undrained_hosts_are_refused():
    with pytest.raises(UsageError, match="unknown host 'h9'"):
        drain._check_host(lab(), "h9")
    with pytest.raises(UsageError, match="h2 was lost"):
        drain._check_host(lab(lost=["h2"]), "h2")
    with pytest.raises(UsageError, match="h1: it is not drained"):
        drain.resume(lab(), "h1")


def _record(vm, ok=True):
    return SimpleNamespace(vm=vm, source="h1", ok=ok)


def test_at_most_max_concurrent_migrations_run_at_once_and_all_of_them_do():
    together = threading.Barrier(2, timeout=10)  # broken unless two really run at the same time
    active, peak, lock, ended = [0], [0], threading.Lock(), []

    def start(vm):
        def move():
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            if vm in ("a", "b"):
                together.wait()
            with lock:
                active[0] -= 1
            return _record(vm)
        return move

    records = drain.bounded(["a", "b", "c", "d"], 2, start, lambda r: ended.append(r.vm))
    assert [r.vm for r in records] == ["a", "b", "c", "d"] and sorted(ended) == ["a", "b", "c", "d"]
    assert peak[0] == 2


def test_after_a_failed_migration_no_other_starts():
    started = []

    def start(vm):
        started.append(vm)
        return lambda: _record(vm, ok=vm != "b")

    records = drain.bounded(["a", "b", "c"], 1, start, lambda r: None)
    assert [(r.vm, r.ok) for r in records] == [("a", True), ("b", False)] and started == ["a", "b"]
    with pytest.raises(UsageError, match="max_concurrent: 0"):
        drain.bounded(["a"], 0, start, lambda r: None)


def test_a_rebalance_fills_the_host_from_the_busiest_until_no_host_runs_two_more():
    placed = {"a": "h2", "b": "h2", "c": "h2", "d": "h3", "e": "h3"}
    assert drain.balance_plan(placed, ["h1", "h2", "h3"], "h1") == [("a", "h2")]  # then 1, 2, 2
    four = {v: "h2" for v in "abcd"}
    assert drain.balance_plan(four, ["h1", "h2"], "h1") == [("a", "h2"), ("b", "h2")]
    assert drain.balance_plan({"a": "h2", "b": "h3"}, ["h1", "h2", "h3"], "h1") == []  # 0 vs 1: balanced
    assert drain.balance_plan({}, ["h1", "h2"], "h1") == []
