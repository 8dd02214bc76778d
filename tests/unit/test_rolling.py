"""A rolling maintenance (runbook 60) judged on crafted events: every host drained, empty while
maintained, resumed, every VM back; a VM that arrived on a host during its maintenance, a round
that failed and the hosts not reached are named. The order of hosts, the CLI's flags. The real
lab runs it in tests/integration/test_rolling_maintenance.py."""

from __future__ import annotations

import argparse

import pytest

from availlab.checks import SLO
from availlab.checks.rolling import check_rolling, host_rows
from availlab.cli_maintenance import _vms, maintenance_params
from availlab.errors import UsageError
from availlab.scenarios.params import RUNBOOKS
from availlab.scenarios.rolling import host_order

from .test_checker import final, keys_of, steady

S = 1_000_000_000
PLANNED = {"sql1": "h1", "sql2": "h2"}


def _mig(vm, source, target, t0, t1, ok=True):
    return {"type": "migration", "t": t1 * S, "t0": t0 * S, "t1": t1 * S, "vm": vm, "source": source,
            "target": target, "ok": ok, "downtime_ms": 50}


def _round(host, vm, other, t):
    """host drained (its vm to other) at t, empty, its daemon restarted, resumed."""
    return [_mig(vm, host, other, t, t + 2),
            {"type": "host-drain", "t": (t + 2) * S, "t0": t * S, "t1": (t + 2) * S, "host": host, "ok": True,
             "moves": [{"vm": vm, "source": host, "target": other, "ok": True}]},
            {"type": "host-empty", "t": (t + 2) * S, "host": host, "running": []},
            {"type": "maintenance", "t": (t + 3) * S, "t0": (t + 2) * S, "t1": (t + 3) * S, "host": host,
             "action": "restart-daemon", "ok": True, "done": "libvirtd restarted"},
            _mig(vm, other, host, t + 3, t + 5),
            {"type": "host-resume", "t": (t + 5) * S, "t0": (t + 3) * S, "t1": (t + 5) * S, "host": host, "ok": True,
             "moves": [{"vm": vm, "source": other, "target": host, "ok": True}]}]


def _rollout(**over):
    return {"type": "rollout", "t": 20 * S, "order": ["h1", "h2"], "action": "restart-daemon", "done": ["h1", "h2"],
            "failed": {}, "not_done": [], "planned": PLANNED, "where": dict(PLANNED), **over}


def _vm_evidence():
    h = [{"type": "warm", "t": 0}] + steady(until_ms=20000, step_ms=50)
    return h + [final(keys_of(h))], []


def _judge(events):
    """Each VM's evidence: steady clients, and its own migrations (as its folder's events.jsonl has them)."""
    return check_rolling(events, {vm: (_vm_evidence()[0], [e for e in events if e.get("vm") == vm])
                                  for vm in PLANNED}, SLO())


def test_every_host_drained_empty_maintained_and_resumed_passes_with_every_vms_checks_named():
    r, mine = _judge(_round("h1", "sql1", "h2", 1) + _round("h2", "sql2", "h1", 10) + [_rollout()])
    by = {c.name: c for c in r.checks}
    assert r.verdict == "PASS", [(c.name, c.valid, c.message) for c in r.checks if c.valid is not True]
    assert {"rollout", "empty", "placement", "sql1: lost-writes", "sql2: outcomes"} <= set(by)
    assert set(mine) == {"sql1", "sql2"} and r.figures["vms"]["sql1"]["verdict"] == "PASS"
    assert r.figures["rollout_s"] == 14.0 and [h["host"] for h in r.figures["hosts"]] == ["h1", "h2"]
    assert r.figures["hosts"][0]["empty_s"] == 1.0 and r.figures["hosts"][0]["moved"] == ["sql1"]


def test_a_vm_that_arrived_on_a_host_during_its_maintenance_fails_the_empty_check():
    events = _round("h1", "sql1", "h2", 1) + [_mig("sql2", "h2", "h1", 0, 3.5)] + [_rollout()]
    c = {c.name: c for c in _judge(events)[0].checks}["empty"]
    assert c.valid is False and "h1: sql2 arrived during its maintenance" in c.message


def test_a_failed_round_and_the_hosts_not_reached_fail_the_rollout_by_name():
    events = [_mig("sql1", "h1", "h2", 1, 2, ok=False),
              _rollout(done=[], failed={"h1": "drain of h1 stopped: boom"}, not_done=["h2"])]
    r, _ = _judge(events)
    by = {c.name: c for c in r.checks}
    assert r.verdict == "FAIL" and "failed: h1: drain of h1 stopped: boom; not done: h2" in by["rollout"].message
    assert by["empty"].valid == "unknown"  # no host was maintained: nothing to vouch for


def test_a_run_cut_short_is_unknown_never_a_pass():
    r, _ = _judge(_round("h1", "sql1", "h2", 1))
    by = {c.name: c for c in r.checks}
    assert by["rollout"].valid == "unknown" and by["placement"].valid == "unknown" and r.verdict != "PASS"


def test_a_vm_not_back_where_it_ran_fails_the_placement():
    r, _ = _judge(_round("h1", "sql1", "h2", 1) + [_rollout(where={"sql1": "h2", "sql2": "h2"})])
    assert {c.name: c for c in r.checks}["placement"].message == "not back where it ran: sql1 on h2, not h1"


def test_a_rebalance_resume_passes_when_the_vms_are_spread_evenly_not_where_they_ran():
    from availlab.checks.rolling import placement_check

    swapped = _rollout(resume="rebalance", where={"sql1": "h2", "sql2": "h1"})
    assert placement_check([swapped]).valid is True and "spread evenly" in placement_check([swapped]).message
    piled = placement_check([_rollout(resume="rebalance", where={"sql1": "h2", "sql2": "h2"})])
    assert piled.valid is False and "h1 0, h2 2" in piled.message
    lost = placement_check([_rollout(resume="rebalance", where={"sql1": "h2"})])
    assert lost.valid is False and "not running: sql2" in lost.message
    assert placement_check([_rollout(where={"sql1": "h2", "sql2": "h1"})]).valid is False  # back: where it ran


def test_hosts_go_fewest_vms_first_unless_ordered():
    placed = {"a": "h1", "b": "h1", "c": "h2"}
    assert host_order(placed, ["h1", "h2", "h3"], []) == ["h3", "h2", "h1"]
    assert host_order(placed, ["h1", "h2", "h3"], ["h2", "h1"]) == ["h2", "h1"]
    with pytest.raises(UsageError, match="at most once"):
        host_order(placed, ["h1", "h2"], ["h1", "h1"])
    assert host_rows([]) == []


def test_the_cli_hands_its_flags_to_runbook_60_and_the_model_checks_them():
    assert _vms("sql1=postgresql, sql9") == {"sql1": "postgresql", "sql9": "postgresql"}
    with pytest.raises(argparse.ArgumentTypeError):
        _vms("a,a")
    ns = argparse.Namespace(create_hosts=None, vms={"x1": "mariadb"}, hosts="h2,h1", action="none",
                            on_failure=None, clients=None, rate=None, max_blackout_ms=None, max_concurrent=2,
                            resume="rebalance")
    params = dict(maintenance_params(ns))
    assert params == {"vms": '{"x1": "mariadb"}', "order": '["h2", "h1"]', "action": "'none'",
                      "max_concurrent": "2", "resume": "'rebalance'"}
    with pytest.raises(UsageError, match="max_concurrent"):
        RUNBOOKS["60-rolling-maintenance"].parse({"max_concurrent": 0})
    model = RUNBOOKS["60-rolling-maintenance"]
    assert model.parse({"vms": {"x1": "mariadb"}, "order": ["h2", "h1"]}).placements(["h1", "h2"]) == {"x1": "h1"}
    with pytest.raises(UsageError, match="vms: x1: database: 'oracle'"):
        model.parse({"vms": {"x1": "oracle"}})
    with pytest.raises(UsageError, match="parameter 'order'"):
        model.parse({"order": ["h9"]}).preflight(["h1", "h2"])
