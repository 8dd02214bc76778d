"""The PRO-tip rule engine on synthetic series."""

import pytest

from availlab.errors import UsageError
from availlab.scenarios.tips import Engine, policy, rule

S = 1_000_000_000


def sample(t_s, h1, h2=10.0, vms=None, h3=None):
    hosts = {"h1": {"cpu": h1, "cores": 1}, "h2": {"cpu": h2, "cores": 1}}
    if h3 is not None:
        hosts["h3"] = {"cpu": h3, "cores": 1}
    vms = vms or {"sql1": {"host": "h1", "cpu": 30.0}, "hog": {"host": "h1", "cpu": 65.0}}
    return {"t": int(t_s * S), "hosts": hosts, "vms": vms}


def engine(**pol):
    return Engine([rule(threshold=60, sustained_s=5)], policy(**pol))


def test_threshold_must_be_sustained():
    e = engine()
    assert e.feed(sample(0, 95)) == []
    assert e.feed(sample(4, 95)) == []
    [tip] = e.feed(sample(5, 95))
    assert tip.host == "h1" and tip.action == "migrate" and tip.time == 5 * S


def test_a_dip_restarts_the_clock():
    e = engine()
    e.feed(sample(0, 95))
    e.feed(sample(3, 50))  # below threshold: not sustained
    assert e.feed(sample(6, 95)) == []
    assert e.feed(sample(11, 95)) != []


def test_one_tip_per_episode_until_hysteresis_rearms():
    e = engine(hysteresis=10)
    e.feed(sample(0, 95))
    assert len(e.feed(sample(5, 95))) == 1
    assert e.feed(sample(20, 95)) == []
    e.feed(sample(21, 55))  # below threshold, but not below threshold - hysteresis: still disarmed
    e.feed(sample(22, 95))
    assert e.feed(sample(30, 95)) == []
    e.feed(sample(31, 45))  # re-armed
    e.feed(sample(32, 95))
    assert len(e.feed(sample(37, 95))) == 1


def test_moves_the_biggest_vm_to_the_least_loaded_host_that_stays_under():
    vms = {"sql1": {"host": "h1", "cpu": 30.0}, "hog": {"host": "h1", "cpu": 45.0}}
    e = Engine([rule(threshold=60, sustained_s=0)], policy())
    [tip] = e.feed(sample(0, 95, h2=50, h3=5, vms=vms))
    assert (tip.vm, tip.target) == ("hog", "h3")  # 5 + 45 < 60; h2 (50 + 45) would not do
    e2 = Engine([rule(threshold=60, sustained_s=0)], policy())
    [tip] = e2.feed(sample(0, 95, h2=20, h3=40))  # a 65 % hog fits nowhere under 60 %...
    assert (tip.vm, tip.target) == ("sql1", "h2")  # ...but sql1 fits the least loaded, h2


def test_no_host_fits_is_a_clear_tip():
    e = Engine([rule(threshold=60, sustained_s=0)], policy())
    [tip] = e.feed(sample(0, 95, h2=55))
    assert tip.action == "none" and tip.target is None and "no host fits" in tip.reason


def test_cooldown_keeps_a_just_moved_vm_in_place():
    e = Engine([rule(threshold=60, sustained_s=0)], policy(cooldown_s=60))
    e.note_moved("hog", 0)
    e.note_moved("sql1", 0)
    [tip] = e.feed(sample(10, 95))
    assert tip.action == "none" and "cooldown" in tip.reason
    e2 = Engine([rule(threshold=60, sustained_s=0)], policy(cooldown_s=60))
    e2.note_moved("hog", 0)
    [tip] = e2.feed(sample(10, 95))
    assert tip.vm == "sql1"


def test_inform_and_start_vm_actions():
    e = Engine([rule(threshold=60, sustained_s=0, action="inform")], policy())
    [tip] = e.feed(sample(0, 95))
    assert tip.action == "inform" and tip.target is None
    e = Engine([rule(threshold=60, sustained_s=0, action="start-vm")], policy())
    [tip] = e.feed(sample(0, 95, h2=30, h3=10))
    assert tip.action == "start-vm" and tip.target == "h3"


def test_vm_scope_rules_name_the_vm():
    e = Engine([rule(name="vm-hot", scope="vm", threshold=60, sustained_s=0)], policy())
    [tip] = e.feed(sample(0, 40))  # the host is fine, the VM "hog" is at 65 %
    assert tip.vm == "hog" and tip.rule == "vm-hot" and tip.target == "h2"  # h2 has room


def test_bad_rule_fields_are_named():
    with pytest.raises(UsageError, match="threshold"):
        rule(threshold=150)
    with pytest.raises(UsageError, match="mode"):
        policy(mode="sometimes")


def test_a_tip_applied_by_another_process_stays_applied_and_an_old_runs_tip_does_not_count(tmp_path, monkeypatch):
    """Controller._save merges what `availlab tips apply` wrote: the same tip (id and time) stays
    applied; a tip of an earlier run with the same id (ids restart each run) changes nothing."""
    import json
    import threading

    from availlab.lab import state
    from availlab.lab.state import LabState
    from availlab.scenarios import dynamic
    from availlab.scenarios.tips import Tip

    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    state.save(LabState(lab="tp", status="up", topology={}))
    ctl = dynamic.Controller.__new__(dynamic.Controller)
    ctl.st, ctl._lock = state.load("tp"), threading.Lock()
    ctl.engine = type("E", (), {"tips": [Tip(1, 111, "r", "h1", "sql1", "migrate", "h2", 95.0, "x"),
                                         Tip(2, 222, "r", "h1", "sql1", "migrate", "h2", 95.0, "y")]})()
    on_disk = [dict(ctl.engine.tips[0].to_dict(), applied=True, applied_at=5, detail={"migration_ok": True}),
               dict(ctl.engine.tips[1].to_dict(), time=1, applied=True)]  # an older run's tip 2
    dynamic.tips_file("tp").write_text(json.dumps(on_disk))
    ctl._save()
    saved = {t["id"]: t for t in json.loads(dynamic.tips_file("tp").read_text())}
    assert saved[1]["applied"] is True and saved[1]["applied_at"] == 5
    assert saved[2]["applied"] is False


def test_a_drained_host_gets_no_vm_however_idle():
    vms = {"sql1": {"host": "h1", "cpu": 30.0}, "hog": {"host": "h1", "cpu": 45.0}}
    s = sample(0, 95, h2=50, h3=5, vms=vms)
    s["hosts"]["h3"]["drained"] = True  # in maintenance (availlab host drain h3)
    [tip] = Engine([rule(threshold=60, sustained_s=0)], policy()).feed(s)
    assert tip.target != "h3"
