"""The fault registry: every fault has a family the checks know, and its repairs always run."""

from __future__ import annotations

import contextlib

import pytest

from availlab.checks.faults import EXPECTED
from availlab.events import faults
from availlab.events.faults import FAMILY, FRAMES, REGISTRY, Fault, Scene, _repairing


def test_every_fault_is_registered_with_a_family_that_has_a_frame_and_an_expectation():
    assert set(REGISTRY) == set(faults.FAULTS) == set(FAMILY)
    assert {f.family for f in REGISTRY.values()} == set(FRAMES) == set(EXPECTED)
    assert all(REGISTRY[name].name == name for name in REGISTRY)


class Recorder(Fault):
    name, family = "test-fault", "db"

    def __init__(self, fail_in: str = "", teardown_fails: bool = False):
        self.fail_in, self.teardown_fails, self.calls = fail_in, teardown_fails, []

    def setup(self, sc):
        self.calls.append("setup")
        sc.stack.callback(lambda: self.calls.append("undo setup"))
        if self.fail_in == "setup":
            raise RuntimeError("setup broke")

    def invoke(self, sc):
        self.calls.append("invoke")
        if self.fail_in == "invoke":
            raise KeyboardInterrupt  # an interrupted run too

    def teardown(self, sc):
        self.calls.append("teardown")
        if self.teardown_fails:
            raise OSError("link would not come up")


def _strike(f: Fault) -> Scene:
    sc = Scene(st=None, vm="sql1", target="h2", source="h1")  # type: ignore[arg-type]  # no lab: the frame's logic only
    with _repairing(f, sc):
        f.invoke(sc)
    return sc


@pytest.mark.parametrize("fail_in, raised", [("", None), ("setup", RuntimeError), ("invoke", KeyboardInterrupt)])
def test_teardown_and_the_setups_undo_run_whatever_happened(fail_in, raised):
    f = Recorder(fail_in)
    with pytest.raises(raised) if raised else contextlib.nullcontext():
        _strike(f)
    assert f.calls[-2:] == ["teardown", "undo setup"]


def test_a_failing_repair_is_recorded_and_does_not_hide_the_faults_own_error():
    f = Recorder("invoke", teardown_fails=True)
    sc = Scene(st=None, vm="sql1", target="h2", source="h1")  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        with _repairing(f, sc):
            f.invoke(sc)
    assert sc.repairs == ["repair FAILED: OSError: link would not come up"]
    assert f.calls[-1] == "undo setup"


def test_an_unknown_fault_is_a_usage_error_naming_the_known_ones(monkeypatch):
    from availlab.errors import UsageError

    class P:
        def require(self, *a, **k):
            return None

    monkeypatch.setattr(faults, "provider", lambda st: P())
    with pytest.raises(UsageError, match="fault: unknown fault 'meteor'.*abort-migration"):
        faults.inject(None, "sql1", "h2", "meteor")  # type: ignore[arg-type]


def test_a_fault_that_breaks_is_still_recorded_with_its_repairs(monkeypatch):
    """The fault event (what broke, every repair made) is written before the error goes on."""
    written = []

    class Events:
        def write(self, r):
            written.append(r)

    class P:
        def require(self, *a, **k):
            return None

    class Breaks(Recorder):
        name, family = "abort-migration", "migration"

    def frame(fault, sc):
        with _repairing(fault, sc):
            sc.repairs.append("link up again")
            raise RuntimeError("agent went away")

    monkeypatch.setattr(faults, "provider", lambda st: P())
    monkeypatch.setattr(faults.lab, "running_host", lambda st, vm: "h1")
    monkeypatch.setattr(faults.lab, "locate_vm", lambda st, vm: ("h1", "running"))
    monkeypatch.setitem(faults.REGISTRY, "abort-migration", Breaks())
    monkeypatch.setitem(faults.FRAMES, "migration", frame)
    with pytest.raises(RuntimeError):
        faults.inject(None, "sql1", "h2", "abort-migration", Events())  # type: ignore[arg-type]
    assert len(written) == 1 and written[0]["action_ok"] is False
    assert "RuntimeError: agent went away" in written[0]["action_error"]
    assert written[0]["repairs"] == ["link up again"] and written[0]["vm_host_after"] == "h1"


# --- each fault states its evidence that it struck (issue 27, item 2) -----------------------------

def _scene(**details) -> Scene:
    sc = Scene(st=None, vm="sql1", target="h2", source="h1")  # type: ignore[arg-type]
    sc.details.update(details)
    return sc


def test_every_registered_fault_states_its_own_evidence():
    assert [n for n, f in REGISTRY.items() if type(f).struck is Fault.struck] == []


@pytest.mark.parametrize("fault, details, ok, err, struck, says", [
    ("abort-migration", {"abort": "accepted"}, False, "operation aborted", True, "accepted the abort"),
    ("abort-migration", {"abort": "accepted"}, True, "", False, "completed although"),
    ("abort-migration", {"abort": "refused: no job"}, True, "", False, "did not take the abort"),
    ("kill-dest-qemu", {"killed_pid": None}, True, "", False, "nothing was killed"),
    ("kill-dest-qemu", {"killed_pid": 42}, True, "", False, "came too late"),
    ("kill-dest-qemu", {"killed_pid": 42}, False, "qemu died", True, "pid 42) was killed mid-copy"),
    ("kill-dest-libvirtd", {"killed_pid": 7}, False, "end of file", True, "libvirtd of h2 (pid 7)"),
    ("cut-migration-link", {}, True, "", False, "never cut"),
    ("cut-migration-link", {"cut_at": 200, "migration_ended_at": 100}, True, "", False, "ended before"),
    ("cut-migration-link", {"cut_at": 100, "migration_ended_at": 900}, True, "", True, "completed after the link"),
    ("agent-hang-during-freeze", {}, True, "", False, "answered the freeze in time"),
    ("agent-hang-during-freeze", {}, False, "copy failed", False, "not at the freeze"),
    ("agent-hang-during-freeze", {}, False, "the guest agent did not freeze the filesystems", True, "failed at the freeze"),
    ("backup-storage-full", {}, True, "", False, "fitted on a 48M volume"),
    ("backup-storage-full", {}, False, "job failed: No space left on device", True, "want of space"),
    ("backup-storage-full", {}, False, "agent timeout", False, "not for want of space"),
    ("kill-db-sessions", {"killed": 0, "sessions": 0}, False, "", False, "no session was ended (0 found)"),
    ("kill-db-sessions", {"killed": 3, "sessions": 4}, True, "", True, "3 of 4 workload sessions"),
])
def test_a_fault_struck_only_with_its_evidence(fault, details, ok, err, struck, says):
    got, why = REGISTRY[fault].struck(_scene(**details), ok, err)
    assert got is struck and says in why, why
