"""A VM that QEMU paused on a failed write during our backup is resumed, and soon.

When the backup target fills up, a guest write whose old data copy-before-write cannot save fails
with ENOSPC, and QEMU's default write-error policy (werror=enospc) pauses the VM with that write
held; QEMU 7.2's push-mode backup offers no `on-cbw-error=break-snapshot` to spare the guest. The
job is ended first, so that the held write, retried on resume, goes to the disk alone. If the job
had already failed, the set is lost anyway; if it had completed, the refused write never reached
the disk and the set still holds its point in time. A VM that pauses again after the resume has a
problem of its own (its own disk full) that is not ours to hide: it is resumed once per backup.

A watcher thread resumes within WATCH_S of the pause. Without it, a thaw sent just before the
pause waited the agent's 5 s timeout for a guest that could not answer: clients saw 5.1 s gaps.
After a resume the VM is watched for SETTLE_S: QEMU replays the held write, and a VM whose own
disk is full pauses again at once. Whenever the VM stays paused, `failed` says so and the backup
fails with it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from ..errors import AvailLabError, BackupError
from ..history import now_ns
from ..lab.hypervisor import HypervisorAPI
from ..progress import step

WATCH_S = 0.05
JOB_END_S = 30
SETTLE_S = 1.5


class IOPause:
    """Armed once the backup job exists (before that, no write of ours can fail); `failed` is set
    when the VM stays paused (its job would not end, or it paused again after the resume): the
    backup must then fail and say so, whoever noticed it first."""

    def __init__(self, hv: HypervisorAPI, vm: str, phases: list[dict]):
        self.hv, self.vm, self.phases = hv, vm, phases
        self.armed = self.resumed = False
        self.note = ""
        self.failed: BackupError | None = None
        self.watch_error: AvailLabError | None = None
        self._lock = threading.Lock()

    def arm(self) -> None:
        self.armed = True

    def release(self, hv: HypervisorAPI | None = None) -> bool:
        """True if the VM was paused on a write error and is running again; False if it was not
        paused so, or the pause was dealt with already. Raises when it stays paused, and sets
        `failed`, whatever the cause. `hv`: another connection to the same host (the watcher's)."""
        hv = hv or self.hv
        with self._lock:
            if not self.armed or self.failed:
                return False
            try:
                if hv.pause_reason(self.vm) != "ioerror":
                    return False
                disks = hv.disk_errors(self.vm)
            except AvailLabError:
                return False
            what = ", ".join(f"{d}: {'No space left on device' if e == 'no space' else e}"
                             for d, e in disks.items()) or "disk error"
            if self.resumed:
                raise self._fail(f"the VM is PAUSED again on a write error ({what}) after it was resumed: its "
                                 "own disk is failing writes, not the backup; it stays paused")
            seen = now_ns()
            try:
                self._end_job(hv, what)
                hv.resume(self.vm)
                self._settle(hv, what)
            except BackupError:
                raise
            except AvailLabError as exc:
                raise self._fail(f"the VM is PAUSED on a write error ({what}) and could not be resumed: {exc}") from exc
            self.resumed = True
            self.note = (f"a guest write failed during the backup ({what}): the VM was paused, then "
                         "resumed once the backup job had ended")
            self.phases.append({"phase": "paused on a write error", "t0": seen, "t1": now_ns(), "disks": disks})
        step(f"{self.vm}: {self.note}")
        return True

    def _fail(self, why: str) -> BackupError:
        self.failed = BackupError(f"backup of {self.vm}: {why}")
        step(str(self.failed))  # said at once: a caller may be waiting on something else
        return self.failed

    def _end_job(self, hv: HypervisorAPI, what: str) -> None:
        """Abort the backup job and wait for it to end: the held write must not meet the filter again."""
        end, next_abort = time.monotonic() + JOB_END_S, 0.0
        while hv.job_active(self.vm):
            if time.monotonic() > end:
                raise self._fail(f"the VM is PAUSED on a write error ({what}) and its backup job did not end "
                                 f"in {JOB_END_S} s; resume it once the job has ended")
            if time.monotonic() >= next_abort:  # again if the job was still starting up
                with contextlib.suppress(AvailLabError):
                    hv.abort_job(self.vm)
                next_abort = time.monotonic() + 1.0
            time.sleep(0.05)

    def _settle(self, hv: HypervisorAPI, what: str) -> None:
        """QEMU replays the held write after the resume, and libvirt hears of a new pause a moment
        later: a VM whose own disk is full pauses again within SETTLE_S."""
        end = time.monotonic() + SETTLE_S
        while time.monotonic() < end:
            if hv.pause_reason(self.vm) == "ioerror":
                raise self._fail(f"the VM paused again on a write error ({what}) right after the resume: its "
                                 "own disk is failing writes, not the backup; it stays paused")
            time.sleep(0.1)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Poll for the pause on a connection of its own while the backup's job may run."""
        stop = threading.Event()

        def watch() -> None:
            try:
                with self.hv.another() as own:
                    while not stop.wait(WATCH_S):
                        self.release(own)
            except AvailLabError as exc:
                self.watch_error = exc
                if not self.failed:  # said here: a silent watcher would bring the 5 s gaps back
                    step(f"{self.vm}: the backup's pause watcher stopped: {exc}")

        t = threading.Thread(target=watch, name=f"iopause-{self.vm}", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=JOB_END_S + 10)
