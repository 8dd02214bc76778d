"""Processes of ours inside a guest, as nemeses (events.nemesis): a memory dirtier and a noisy
neighbour.

The memory dirtier shows a migration that cannot converge without auto-converge or post-copy (a
busy database's buffer pool does the same on a real host). A perl loop in the guest, started
through the guest agent (guest-exec), rewrites every byte of an N MiB buffer with tr/// (a C loop
inside perl; a loop in perl itself touches pages far too slowly under TCG), so every page is dirty
again after each pass. It starts at setup, before the warm-up, survives migrations (it is a guest
process) and is stopped through the agent again at teardown.

The noisy neighbour burns one vCPU of another VM on the same host (runbook 30's overload): it
starts when invoked, after the baseline, and stops at teardown.
"""

from __future__ import annotations

from ..errors import UsageError
from ..history import now_ns
from ..progress import step
from ..records import Rec
from ..vm.guest import GuestProcess
from .nemesis import Nemesis, Stage

SCRIPT = 'my $s = "a" x (shift() * 1048576); while (1) { $s =~ tr/a/b/; $s =~ tr/b/a/; }'
HOG_SCRIPT = "1 while 1"  # one busy vCPU


class _GuestLoad(Nemesis[Stage]):
    """A guest process started once and stopped at teardown (a no-op when it never started)."""
    started: str  # its record types
    stopped: str
    what: str  # the parameter or scenario that asked for it, named when a provider refuses it

    def __init__(self, vm: str | None = None):
        self.vm = vm  # None: the stage's VM
        self.proc: GuestProcess | None = None

    def args(self) -> list[str]:
        raise NotImplementedError

    def require(self, stage: Stage) -> None:
        """Refused (a production VM gets no process of ours) before any client starts."""
        self.proc = GuestProcess(stage.st, self.vm or stage.vm, "/usr/bin/perl", self.args(), what=self.what)

    def start(self, stage: Stage, **record: object) -> int:
        assert self.proc is not None, "require() comes first (Nemeses does it)"
        pid = self.proc.start()
        if stage.events:
            stage.events.write({"type": self.started, "t": now_ns(), "vm": self.proc.vm, **record, "guest_pid": pid})
        return pid

    def teardown(self, stage: Stage) -> None:
        if self.proc is None or self.proc.pid is None:
            return
        self.proc.stop()
        if stage.events:
            stage.events.write({"type": self.stopped, "t": now_ns(), "vm": self.proc.vm})


class MemoryDirtier(_GuestLoad):
    started, stopped, what = Rec.DIRTIER_START, Rec.DIRTIER_STOP, "dirty_memory_mib"

    def __init__(self, mib: int, vm: str | None = None):
        if not 1 <= mib <= 4096:
            raise UsageError(f"dirty_memory_mib: must be 1..4096 (got {mib})")
        super().__init__(vm)
        self.mib = mib

    def args(self) -> list[str]:
        return ["-e", SCRIPT, str(self.mib)]

    def setup(self, stage: Stage) -> None:
        pid = self.start(stage, mib=self.mib)
        step(f"memory dirtier: {self.mib} MiB in {self.vm or stage.vm} (guest pid {pid})")


class NoisyNeighbour(_GuestLoad):
    started, stopped, what = Rec.OVERLOAD_START, Rec.OVERLOAD_STOP, "the overload scenario"

    def args(self) -> list[str]:
        return ["-e", HOG_SCRIPT]

    def invoke(self, stage: Stage) -> int:
        pid = self.start(stage)
        step(f"noisy neighbour: {self.vm or stage.vm} burns a CPU (guest pid {pid})")
        return pid
