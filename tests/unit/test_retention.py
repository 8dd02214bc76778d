"""Retention keeps each VM's newest N restore points and every set they build on; the rest goes
only when asked. Crafted catalogues (sets are files on disk: the real thing, minus the VM)."""

from types import SimpleNamespace

import pytest

from availlab.errors import UsageError
from availlab.events import catalog, retention
from availlab.events.catalog import BackupSet, describe_files, list_sets, write_set


@pytest.fixture
def st(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path / "state"))
    st = SimpleNamespace(lab="t", dr_dir=str(tmp_path / "dr"), provider="local", vms={}, hosts={}, lost_hosts=[])
    monkeypatch.setattr(retention.state, "require_up", lambda lab: st)  # prune reads it afresh under the lock
    return st


def make(st, set_id, kind="full", parent=None, vm="sql1", t=0.0):
    d = catalog.site_dir(st, "primary") / set_id
    d.mkdir(parents=True)
    (d / "vda.qcow2").write_bytes(b"x" * 1000)
    (d / "domain.xml").write_text("<domain/>")
    write_set(d, BackupSet(id=set_id, vm=vm, type=kind, parent=parent, checkpoint=f"ck-{set_id}", time=t,
                           consistency="application", files=describe_files(d, ["vda.qcow2", "domain.xml"])))


def ids(sets):
    return sorted(b.id for b in sets)


def test_a_kept_incremental_keeps_its_chain_and_a_kept_differential_its_full(st):
    make(st, "f1", t=1)
    make(st, "i1", "incremental", "f1", t=2)
    make(st, "i2", "incremental", "i1", t=3)
    make(st, "f2", t=4)
    make(st, "d1", "differential", "f2", t=5)
    make(st, "d2", "differential", "f2", t=6)
    make(st, "other-f", vm="sql2", t=7)
    kept, removed = retention.plan(list_sets(st, "primary"), 1)
    assert ids(kept) == ["d2", "f2", "other-f"] and ids(removed) == ["d1", "f1", "i1", "i2"]
    kept, removed = retention.plan(list_sets(st, "primary"), 4)  # i2 is kept: so are i1 and f1
    assert ids(removed) == []
    kept, removed = retention.plan(list_sets(st, "primary"), 3)
    assert ids(kept) == ["d1", "d2", "f2", "other-f"] and ids(removed) == ["f1", "i1", "i2"]


def test_a_set_a_vm_still_boots_from_is_kept_with_its_chain(st):
    make(st, "f1", t=1)
    make(st, "i1", "incremental", "f1", t=2)
    make(st, "f2", t=3)
    # an instant restore of i1 not yet moved off reads i1 and f1: both stay, whatever `keep` says
    kept, removed = retention.plan(list_sets(st, "primary"), 1, frozenset({"i1"}))
    assert ids(kept) == ["f1", "f2", "i1"] and removed == []
    kept, removed = retention.plan(list_sets(st, "primary"), 1, frozenset({"gone"}))  # not at this site
    assert ids(removed) == ["f1", "i1"]


def test_dry_run_by_default_then_apply_removes_only_the_planned_sets(st):
    make(st, "f1", t=1)
    make(st, "i1", "incremental", "f1", t=2)
    make(st, "f2", t=3)
    plan = retention.prune(st, "primary", 1)
    assert not plan.applied and ids(plan.removed) == ["f1", "i1"] and plan.freed_bytes > 0
    assert ids(list_sets(st, "primary")) == ["f1", "f2", "i1"]  # nothing went
    done = retention.prune(st, "primary", 1, apply=True)
    assert done.applied and ids(list_sets(st, "primary")) == ["f2"]
    assert sorted(p.name for p in catalog.site_dir(st, "primary").iterdir()) == ["f2"]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_keep_must_be_a_whole_number_of_at_least_one(st, bad):
    make(st, "f1", t=1)
    with pytest.raises(UsageError, match="keep: must be"):
        retention.prune(st, "primary", bad, apply=True)
    assert ids(list_sets(st, "primary")) == ["f1"]


def test_a_set_a_restore_is_reading_is_kept_by_an_applied_prune(st):
    make(st, "f1", t=1)
    make(st, "i1", "incremental", "f1", t=2)
    make(st, "f2", t=3)
    # recorded in the lab's state, under its lock, before the restore reads the first byte: the
    # window in which no domain names the set yet (a copy running, an overlay not yet defined)
    st.vms["r1"] = SimpleNamespace(reads_sets=["i1"])
    done = retention.prune(st, "primary", 1, apply=True)
    assert done.applied and ids(done.removed) == [] and ids(list_sets(st, "primary")) == ["f1", "f2", "i1"]
    st.vms["r1"].reads_sets = []  # the disk built (or moved off): the chain may go
    assert ids(retention.prune(st, "primary", 1, apply=True).removed) == ["f1", "i1"]
