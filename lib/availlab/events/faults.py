"""Faults injected while clients run, each recorded like any event, with its evidence that it struck.

During a live migration (faults_migration):
  abort-migration      the operator cancels the job mid-way (virDomainAbortJob)
  kill-dest-libvirtd   the target host's libvirtd dies (SIGKILL, by its PID); restarted after
  kill-dest-qemu       the target's incoming QEMU dies (SIGKILL, by its PID)
  cut-migration-link   the target host's cable to the switch is pulled for `cut_s` seconds
During a full, application-consistent backup (faults_backup):
  agent-hang-during-freeze  the guest's freeze callback (the VSS-writer stand-in) hangs
  backup-storage-full       the set's directory sits on a volume far smaller than the disk
In the database (faults_db):
  kill-db-sessions          the server ends every workload connection at once
What each family must leave behind is in its module and in checks.faults (EXPECTED).

Each fault is a small class in REGISTRY (setup / invoke / teardown / struck, as Jepsen's
nemeses, events.nemesis); its family's frame (FRAMES) decides when it strikes. The teardown
always runs, also when setup or invoke failed or the run was interrupted, and with the frame's
own repairs (a half-created VM on the target removed) puts the lab right; every repair, and every
repair that failed, is recorded. A fault that did not strike says why, and its row is UNKNOWN.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field

from ..errors import AvailLabError, UsageError
from ..history import RecordSink, now_ns
from ..lab import providers as lab
from ..lab.providers import provider
from ..lab.state import LabState
from ..progress import step
from ..records import Rec

# each registers its faults, in this order (the matrix runs them so: migration, backup, database)
# isort: off
from . import faults_migration  # noqa: F401
from . import faults_backup  # noqa: F401
from . import faults_db  # noqa: F401
# isort: on
from .nemesis import FRAMES, REGISTRY, Fault, Scene, _repairing  # noqa: F401 - the protocol, for callers and tests


@dataclass
class FaultRecord:
    fault: str
    vm: str
    action: str  # what the fault hit: "migration h1 -> h2", "full backup on h1"
    source: str
    target: str | None
    t0: int
    t1: int
    injected_at: int | None
    action_ok: bool
    action_error: str
    vm_host_after: str | None
    vm_state_after: str | None
    repairs: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    struck: bool | None = None  # the fault's own evidence that it acted (None: it broke before it could)
    evidence: str = ""  # what shows it struck, or why it did not

    def to_event(self) -> dict:
        return {"type": Rec.FAULT, "t": self.t1, "family": FAMILY[self.fault], **asdict(self),
                "phases": [{"phase": f"fault: {self.fault}", "t0": self.injected_at or self.t0, "t1": self.t1}]}


FAULTS = tuple(REGISTRY)
FAMILY = {name: f.family for name, f in REGISTRY.items()}  # recorded with each fault (availlab.checks.faults)


def inject(st: LabState, vm: str, target: str, fault: str, events: RecordSink | None = None,
           cut_s: float = 5.0, timeout_s: float = 30.0) -> FaultRecord:
    """Run one fault in its family's frame and record what it hit and what it left behind."""
    provider(st).require("fault")
    f = REGISTRY.get(fault)
    if f is None:
        raise UsageError(f"fault: unknown fault {fault!r} (faults: {', '.join(FAULTS)})")
    sc = Scene(st=st, vm=vm, target=target, source=lab.running_host(st, vm), cut_s=cut_s, timeout_s=timeout_s,
               events=events)
    t0 = now_ns()
    try:
        action, injected, ok, err = FRAMES[f.family](f, sc)
    except BaseException as exc:  # the fault itself broke (or the run was interrupted): recorded, then raised
        with contextlib.suppress(Exception):  # the record must not hide why the fault broke
            _record(f, sc, t0, f"{f.family}: {fault}", None, False, f"{type(exc).__name__}: {exc}")
        raise
    return _record(f, sc, t0, action, injected, ok, err, f.struck(sc, ok, err))


def _record(f: Fault, sc: Scene, t0: int, action: str, injected: int | None, ok: bool, err: str,
            struck: tuple[bool, str] | None = None) -> FaultRecord:
    """The fault's event, with what it hit, where the VM runs now, and every repair."""
    try:
        where = lab.locate_vm(sc.st, sc.vm)
    except AvailLabError as exc:
        where, err = None, err or f"VM not found afterwards: {exc}"
    fr = FaultRecord(f.name, sc.vm, action, sc.source, sc.target if f.family == "migration" else None, t0,
                     now_ns(), injected, ok, err, where[0] if where else None, where[1] if where else None,
                     sc.repairs, sc.details, *(struck or (None, "the fault broke before it could strike")))
    if sc.events:
        sc.events.write(fr.to_event())
    step(f"fault {fr.fault}: {fr.action} {'completed' if fr.action_ok else 'failed'}; {fr.vm} "
         f"{fr.vm_state_after} on {fr.vm_host_after}" + (f"; {'; '.join(fr.repairs)}" if fr.repairs else "")
         + f"; {'struck' if fr.struck else 'DID NOT STRIKE'}: {fr.evidence}")
    return fr
