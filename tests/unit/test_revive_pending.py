"""A rebuilt lab lists its VMs in `to_revive`; each leaves the list once tried, so a run killed
half-way leaves the untried ones for the next `lab up`, and one that cannot come back is reported
once and never keeps the rest down. The real
rebuild (every lab process killed, namespaces gone) is tested in
tests/integration/test_backup_restore.py::test_a_reboot_keeps_the_vm_every_acknowledged_write_and_every_backup."""

import pytest

from availlab.errors import LabError, VMError
from availlab.lab import state
from availlab.lab.state import LabState, VMState
from availlab.vm import create


def _lab(tmp_path, monkeypatch, pending):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    st = LabState(lab="rv", status="up", topology={}, to_revive=list(pending))
    for n in ("sql1", "sql2"):
        st.vms[n] = VMState(n, "10.213.0.100", "h1", "/x/disk", "/x/config", "/x/log", "u", 0.0)
    state.save(st)
    return st


def test_each_vm_is_tried_once_and_a_failure_is_reported_not_kept(tmp_path, monkeypatch):
    st = _lab(tmp_path, monkeypatch, ["gone", "sql1", "sql2"])
    tried = []

    def revive(lab, name):
        tried.append(name)
        if name == "sql1":
            raise VMError("its disk is missing")
        return f"{name} was shut off on h1: started"

    monkeypatch.setattr(create, "revive", revive)
    with pytest.raises(LabError, match="sql1: its disk is missing"):
        create.revive_pending(st)
    assert tried == ["sql1", "sql2"]  # "gone" was deleted since the rebuild: nothing to start
    assert state.load("rv").to_revive == []  # reported once: the next `lab up` is not blocked by it


def test_a_run_killed_half_way_leaves_the_untried_vms(tmp_path, monkeypatch):
    st = _lab(tmp_path, monkeypatch, ["sql1", "sql2"])

    def revive(lab, name):
        if name == "sql2":
            raise KeyboardInterrupt  # Ctrl-C while sql2 boots
        return f"{name} was shut off on h1: started"

    monkeypatch.setattr(create, "revive", revive)
    with pytest.raises(KeyboardInterrupt):
        create.revive_pending(st)
    assert state.load("rv").to_revive == ["sql2"]


def test_nothing_pending_touches_nothing(tmp_path, monkeypatch):
    st = _lab(tmp_path, monkeypatch, [])
    monkeypatch.setattr(create, "revive", lambda *a: pytest.fail("revived with nothing pending"))
    assert create.revive_pending(st) is st
