"""A guest memory dirtier: shows a migration that cannot converge without auto-converge or
post-copy (a busy database's buffer pool does the same on a real host).

A perl loop in the guest, started through the guest agent (guest-exec), rewrites every byte of
an N MiB buffer with tr/// (a C loop inside perl; a loop in perl itself touches pages far too
slowly under TCG), so every page is dirty again after each pass. It survives migrations (it is a guest process) and is
stopped through the agent again.
"""

from __future__ import annotations

from ..errors import UsageError
from ..history import JsonlWriter, now_ns
from ..lab import locate_vm
from ..progress import step
from ..state import LabState
from ..virt import Hypervisor

SCRIPT = 'my $s = "a" x (shift() * 1048576); while (1) { $s =~ tr/a/b/; $s =~ tr/b/a/; }'


def _hv(st: LabState, vm: str) -> Hypervisor:
    where = locate_vm(st, vm)
    if not where or where[1] != "running":
        raise UsageError(f"vm: {vm!r} is not running")
    h = st.hosts[where[0]]
    return Hypervisor(h.name, h.uri)


class MemoryDirtier:
    def __init__(self, st: LabState, vm: str, mib: int, events: JsonlWriter | None = None):
        if not 1 <= mib <= 4096:
            raise UsageError(f"dirty_memory_mib: must be 1..4096 (got {mib})")
        self.st, self.vm, self.mib, self.events = st, vm, mib, events
        self.pid: int | None = None

    def start(self) -> "MemoryDirtier":
        with _hv(self.st, self.vm) as hv:
            ret = hv.agent_command(self.vm, {"execute": "guest-exec", "arguments": {
                "path": "/usr/bin/perl", "arg": ["-e", SCRIPT, str(self.mib)]}})
        self.pid = int(ret["pid"])
        if self.events:
            self.events.write({"type": "dirtier-start", "t": now_ns(), "vm": self.vm,
                               "mib": self.mib, "guest_pid": self.pid})
        step(f"memory dirtier: {self.mib} MiB in {self.vm} (guest pid {self.pid})")
        return self

    def stop(self) -> None:
        if self.pid is None:
            return
        with _hv(self.st, self.vm) as hv:
            hv.agent_command(self.vm, {"execute": "guest-exec", "arguments": {
                "path": "/bin/kill", "arg": [str(self.pid)]}})
        if self.events:
            self.events.write({"type": "dirtier-stop", "t": now_ns(), "vm": self.vm})
        self.pid = None
