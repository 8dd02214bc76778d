"""A VM that QEMU paused on a write error during a backup is resumed once the job has ended, and
the thaw gets through afterwards (the double stands in for libvirt; the fault matrix runs the real
`backup-storage-full` on the lab)."""

from availlab.errors import HypervisorError
from availlab.events import backup as bk


class PausedVM:
    """Paused on an I/O error with the backup job still running, as when a guest write's
    copy-before-write met a full target before the job's own copy did."""

    def __init__(self, paused=True, job=True, pauses_again=False):
        self.paused, self.job, self.pauses_again = paused, job, pauses_again
        self.calls: list[str] = []

    def paused_on_io_error(self, _vm):
        return self.paused

    def job_active(self, _vm):
        return self.job

    def abort_job(self, _vm):
        self.calls.append("abort")
        self.job = False

    def resume(self, _vm):
        assert not self.job, "resumed while the backup job still ran: the held write would fail again"
        self.calls.append("resume")
        self.paused = self.pauses_again

    def fs_thaw(self, _vm):
        if self.paused:
            raise HypervisorError("h1: thaw filesystems of VM sql1: Requested operation is not valid: "
                                  "domain is not running")
        self.calls.append("thaw")
        return 1

    def agent_command(self, _vm, _cmd, _timeout=10):
        return "thawed"


def test_the_thaw_of_a_vm_paused_on_a_write_error_ends_the_job_resumes_and_thaws():
    hv, phases = PausedVM(), []
    thawed_at, attempts, why = bk._thaw(hv, "sql1", 2, bk._IOPause(hv, "sql1", phases))
    assert thawed_at is not None and why == "" and attempts == 2
    assert hv.calls == ["abort", "resume", "thaw"]
    assert [p["phase"] for p in phases] == ["paused on a write error"]


def test_a_running_vm_is_left_alone():
    hv, phases = PausedVM(paused=False), []
    assert bk._IOPause(hv, "sql1", phases).release() is False
    assert hv.calls == [] and phases == []


def test_a_vm_that_pauses_again_is_resumed_only_once():
    hv, phases = PausedVM(pauses_again=True), []
    pause = bk._IOPause(hv, "sql1", phases)
    assert pause.release() is True and pause.release() is False
    assert hv.calls == ["abort", "resume"]
    thawed_at, _attempts, why = bk._thaw(hv, "sql1", 0.6, pause)
    assert thawed_at is None and "domain is not running" in why


def test_a_job_that_already_ended_is_not_aborted():
    hv = PausedVM(job=False)
    assert bk._IOPause(hv, "sql1", []).release() is True
    assert hv.calls == ["resume"]
