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
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

from ..errors import AvailLabError, BackupError
from ..history import now_ns
from ..progress import step
from ..virt import Hypervisor

WATCH_S = 0.05
JOB_END_S = 30


class IOPause:
    def __init__(self, hv: Hypervisor, vm: str, phases: list[dict]):
        self.hv, self.vm, self.phases = hv, vm, phases
        self.resumed, self.note = False, ""
        self.watch_error: AvailLabError | None = None
        self._lock = threading.Lock()

    def release(self, hv: Hypervisor | None = None) -> bool:
        """True if the VM was paused on a write error and is running again; False if it was not
        paused so (or was resumed once already). Raises if it stays paused: a caller must then
        say so, not carry on. `hv`: another connection to the same host (the watcher's)."""
        hv = hv or self.hv
        with self._lock:
            if self.resumed:
                return False
            try:
                if hv.pause_reason(self.vm) != "ioerror":
                    return False
                disks = hv.disk_errors(self.vm)
            except AvailLabError:
                return False
            seen = now_ns()
            what = ", ".join(f"{d}: {'No space left on device' if e == 'no space' else e}" for d, e in disks.items())
            with contextlib.suppress(AvailLabError):  # it may end between the check and the call
                if hv.job_active(self.vm):
                    hv.abort_job(self.vm)
            end = time.monotonic() + JOB_END_S
            while hv.job_active(self.vm):
                if time.monotonic() > end:
                    raise BackupError(f"backup of {self.vm}: the VM is PAUSED on a write error ({what or 'disk'}) "
                                      f"and its backup job did not end in {JOB_END_S} s; resume it once the job "
                                      "has ended")
                time.sleep(0.05)
            hv.resume(self.vm)
            self.resumed = True
            self.note = (f"a guest write failed on the backup target first ({what or 'disk error'}): the VM was "
                         "paused, then resumed once the backup job had ended")
            self.phases.append({"phase": "paused on a write error", "t0": seen, "t1": now_ns(), "disks": disks})
        step(f"{self.vm}: {self.note}")
        return True

    @contextlib.contextmanager
    def watching(self, host: str, uri: str) -> Iterator[None]:
        """Poll for the pause on a connection of its own while the backup's job may run."""
        stop = threading.Event()

        def watch() -> None:
            try:
                with Hypervisor(host, uri) as own:
                    while not stop.wait(WATCH_S):
                        if self.release(own):
                            return
            except AvailLabError as exc:  # the caller's own release() will meet it again, and say so
                self.watch_error = exc

        t = threading.Thread(target=watch, name=f"iopause-{self.vm}", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=JOB_END_S + 10)
