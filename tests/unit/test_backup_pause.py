"""A VM that QEMU paused on a write error during a backup is resumed once the job has ended, and
the thaw gets through afterwards; a VM that cannot be resumed is reported as paused, never left
behind silently. The double stands in for libvirt; the fault matrix runs the real
`backup-storage-full` on the lab."""

import pytest

from availlab.errors import BackupError, HypervisorError
from availlab.events import backup as bk
from availlab.events import iopause
from availlab.events.iopause import IOPause as _IOPause


def IOPause(hv, vm, phases):  # noqa: N802  (armed, as the backup does once its job exists)
    p = _IOPause(hv, vm, phases)
    p.arm()
    return p


class PausedVM:
    """Paused on an I/O error with the backup job still running, as when a guest write's
    copy-before-write met a full target before the job's own copy did."""

    guard = identity = None  # no allow-list, no identity check: the local lab's own VM

    def __init__(self, reason="ioerror", job=True, pauses_again=False, resume_fails=False, job_ends=True):
        self.reason, self.job, self.pauses_again = reason, job, pauses_again
        self.resume_fails, self.job_ends = resume_fails, job_ends
        self.calls: list[str] = []

    def pause_reason(self, _vm):
        return self.reason

    def disk_errors(self, _vm):
        return {"vda": "no space"} if self.reason == "ioerror" else {}

    def job_active(self, _vm):
        return self.job

    def abort_job(self, _vm):
        self.calls.append("abort")
        self.job = not self.job_ends

    def resume(self, _vm):
        assert not self.job, "resumed while the backup job still ran: the held write would fail again"
        if self.resume_fails:
            raise HypervisorError("h1: resume VM sql1: internal error")
        self.calls.append("resume")
        self.reason = "ioerror" if self.pauses_again else None

    def fs_thaw(self, _vm):
        if self.reason:
            raise HypervisorError("h1: thaw filesystems of VM sql1: Requested operation is not valid: "
                                  "domain is not running")
        self.calls.append("thaw")
        return 1

    def agent_command(self, _vm, _cmd, _timeout=10):
        return "thawed"


def test_the_thaw_of_a_vm_paused_on_a_write_error_ends_the_job_resumes_and_thaws():
    hv, phases = PausedVM(), []
    pause = IOPause(hv, "sql1", phases)
    thawed_at, attempts, why = bk._thaw(hv, "sql1", 2, pause)
    assert thawed_at is not None and why == "" and attempts == 2
    assert hv.calls == ["abort", "resume", "thaw"]
    assert [p["phase"] for p in phases] == ["paused on a write error"] and phases[0]["disks"] == {"vda": "no space"}
    assert "vda: No space left on device" in pause.note and "resumed" in pause.note


@pytest.mark.parametrize("reason", [None, "user", "migration", "postcopy-failed"])
def test_a_vm_not_paused_by_a_write_error_is_left_alone(reason):
    hv, phases = PausedVM(reason=reason), []
    assert IOPause(hv, "sql1", phases).release() is False
    assert hv.calls == [] and phases == []


@pytest.fixture(autouse=True)
def _short_settle(monkeypatch):
    monkeypatch.setattr(iopause, "SETTLE_S", 0.2)


def test_a_vm_that_pauses_again_right_after_the_resume_is_reported_paused():
    hv, phases = PausedVM(pauses_again=True), []
    pause = IOPause(hv, "sql1", phases)
    with pytest.raises(BackupError, match="paused again on a write error .*its own disk"):
        pause.release()
    assert pause.failed is not None and pause.release() is False  # said once, kept in `failed`
    assert hv.calls == ["abort", "resume"] and phases == []
    thawed_at, _attempts, why = bk._thaw(hv, "sql1", 0.6, pause)
    assert thawed_at is None and "paused again" in why


def test_nothing_is_resumed_before_the_backup_job_exists():
    hv = PausedVM()
    pause = _IOPause(hv, "sql1", [])
    assert pause.release() is False and hv.calls == []


def test_a_job_that_already_ended_is_not_aborted():
    hv = PausedVM(job=False)
    assert IOPause(hv, "sql1", []).release() is True
    assert hv.calls == ["resume"]


def test_a_resume_that_fails_fails_the_backup_saying_the_vm_is_paused():
    hv = PausedVM(resume_fails=True)
    pause = IOPause(hv, "sql1", [])
    with pytest.raises(BackupError, match="PAUSED on a write error .*could not be resumed.*internal error"):
        pause.release()
    assert pause.failed is not None and not pause.resumed


def test_a_job_that_does_not_end_is_never_resumed_over(monkeypatch):
    clock = iter(x * 0.5 for x in range(1000))
    monkeypatch.setattr(iopause.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(iopause.time, "sleep", lambda _s: None)
    hv = PausedVM(job_ends=False)
    pause = IOPause(hv, "sql1", [])
    with pytest.raises(BackupError, match="PAUSED on a write error .*did not end in 30 s"):
        pause.release()
    assert "resume" not in hv.calls and pause.failed is not None
    assert hv.calls.count("abort") > 1, "the abort is sent again while the job runs on"


def test_a_vm_paused_for_good_stops_the_thaw_with_the_reason(monkeypatch):
    hv = PausedVM(job_ends=False)
    real = bk.time.monotonic
    start = real()
    fast = lambda: start + (real() - start) * 1000  # noqa: E731  (1 ms = 1 s)
    for mod in (bk, iopause):
        monkeypatch.setattr(mod.time, "sleep", lambda _s: None)
        monkeypatch.setattr(mod.time, "monotonic", fast)
    thawed_at, _attempts, why = bk._thaw(hv, "sql1", 30, IOPause(hv, "sql1", []))
    assert thawed_at is None and "domain is not running" in why and "PAUSED on a write error" in why


def test_the_watcher_resumes_a_vm_that_pauses_while_the_thaw_waits_for_its_agent():
    """The pause comes while a thaw is in flight: the thaw would wait the agent's timeout for a
    guest that cannot answer. The watcher, on its own connection, resumes it meanwhile."""
    import threading
    import time

    class Conn(PausedVM):
        def __enter__(self):
            return self

        def __exit__(self, *_a):
            return False

        def another(self):  # the watcher's own connection: here the same stand-in
            return self

    vm = Conn(reason=None)
    phases = []
    pause = IOPause(vm, "sql1", phases)
    with pause.watching():
        threading.Timer(0.1, lambda: setattr(vm, "reason", "ioerror")).start()  # the CBW write fails
        deadline = time.monotonic() + 5
        while not pause.resumed and time.monotonic() < deadline:
            time.sleep(0.01)
    assert pause.resumed and vm.calls == ["abort", "resume"] and vm.reason is None
    assert phases[0]["t1"] - phases[0]["t0"] < 2e9


def test_the_watcher_leaves_a_running_vm_alone():
    import time

    class Conn(PausedVM):
        def __enter__(self):
            return self

        def __exit__(self, *_a):
            return False

        def another(self):  # the watcher's own connection: here the same stand-in
            return self

    vm = Conn(reason=None)
    pause = IOPause(vm, "sql1", [])
    with pause.watching():
        time.sleep(0.2)
    assert not pause.resumed and vm.calls == [] and pause.watch_error is None
