"""A guest memory dirtier: shows a migration that cannot converge without auto-converge or
post-copy (a busy database's buffer pool does the same on a real host).

A perl loop in the guest, started through the guest agent (guest-exec), rewrites every byte of
an N MiB buffer with tr/// (a C loop inside perl; a loop in perl itself touches pages far too
slowly under TCG), so every page is dirty again after each pass. It survives migrations (it is a guest process) and is
stopped through the agent again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..errors import UsageError
from ..history import RecordSink, now_ns
from ..lab.state import LabState
from ..progress import step
from ..records import Rec
from ..vm.guest import GuestProcess

SCRIPT = 'my $s = "a" x (shift() * 1048576); while (1) { $s =~ tr/a/b/; $s =~ tr/b/a/; }'


class MemoryDirtier:
    def __init__(self, st: LabState, vm: str, mib: int, events: RecordSink | None = None):
        if not 1 <= mib <= 4096:
            raise UsageError(f"dirty_memory_mib: must be 1..4096 (got {mib})")
        self.vm, self.mib, self.events = vm, mib, events
        self.proc = GuestProcess(st, vm, "/usr/bin/perl", ["-e", SCRIPT, str(mib)])

    def start(self) -> MemoryDirtier:
        pid = self.proc.start()
        if self.events:
            self.events.write({"type": Rec.DIRTIER_START, "t": now_ns(), "vm": self.vm,
                               "mib": self.mib, "guest_pid": pid})
        step(f"memory dirtier: {self.mib} MiB in {self.vm} (guest pid {pid})")
        return self

    def stop(self) -> None:
        if self.proc.pid is None:
            return
        self.proc.stop()
        if self.events:
            self.events.write({"type": Rec.DIRTIER_STOP, "t": now_ns(), "vm": self.vm})


@contextlib.contextmanager
def dirtying(st: LabState, vm: str, mib: int, events: RecordSink | None = None) -> Iterator[MemoryDirtier | None]:
    """The dirtier running for the block (none for 0 MiB), stopped whatever happens in it."""
    if not mib:
        yield None
        return
    d = MemoryDirtier(st, vm, mib, events)
    try:
        d.start()  # inside: a start that fails after the guest process began still stops it
        yield d
    finally:
        d.stop()
