"""Faults injected while clients run, each recorded like any event.

During a live migration:
  abort-migration      the operator cancels the job mid-way (virDomainAbortJob)
  kill-dest-libvirtd   the target host's libvirtd dies (SIGKILL, by its PID); restarted after
  kill-dest-qemu       the target's incoming QEMU dies (SIGKILL, by its PID)
  cut-migration-link   the target host's cable to the switch is pulled for `cut_s` seconds
Expected: the VM keeps running on the source (or on the target if the switchover had already
happened) and no acknowledged write is lost.

During a full, application-consistent backup:
  agent-hang-during-freeze  the guest's freeze callback (the VSS-writer stand-in) hangs
                            AGENT_HANG_S, longer than the host waits for the freeze
  backup-storage-full       the set's directory sits on a volume far smaller than the disk
Expected: the backup fails with a clear error, nothing is catalogued and no partial set is left,
the guest is thawed (never left frozen), the VM keeps running and no acknowledged write is lost.

In the database:
  kill-db-sessions          the server ends every workload connection at once (what a DBA's KILL,
                            a failover or a restart does to clients)
Expected: clients see it (that is the point), but every error they get is recognised as a lost
connection by the database's profile, so an interrupted write is indeterminate, never "failed";
every client reconnects and goes on; no acknowledged write is lost. This is the fault that checks
the dialect's SQLSTATE mapping against the real ODBC driver.

Each fault is a small class in REGISTRY (setup / invoke / teardown, as Jepsen's nemeses); its
family's frame (FRAMES) decides when it strikes. The teardown always runs, also when setup or
invoke failed or the run was interrupted, and with the frame's own repairs (a half-created VM on
the target removed) puts the lab right; every repair, and every repair that failed, is recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from ..vm import guest
from ..lab import hostd, local, providers as lab, netns
from .catalog import site_dir
from ..dialects import dialect
from ..errors import AvailLabError, LabError, UsageError
from ..history import JsonlWriter, now_ns
from ..progress import step
from ..lab.providers import provider
from ..clients.sql import run_sql
from ..lab.state import LabState
from .backup import AGENT_TIMEOUT_S, backup
from .migration import MigrationRecord, MigrationTuning, live_migrate
from ..waiting import wait_until

AGENT_HANG_S = AGENT_TIMEOUT_S + 3  # the host gives up on the freeze; the agent then freezes late
SMALL_VOLUME = "48M"  # a full set is ~600 MiB: the copy runs out of room mid-way


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

    def to_event(self) -> dict:
        return {"type": "fault", "t": self.t1, "family": FAMILY[self.fault], **asdict(self),
                "phases": [{"phase": f"fault: {self.fault}", "t0": self.injected_at or self.t0, "t1": self.t1}]}


@dataclass
class Scene:
    """What one fault acts on, and what it leaves behind: the repairs it made and what it saw."""
    st: LabState
    vm: str
    target: str
    source: str
    cut_s: float = 5.0
    timeout_s: float = 30.0
    events: JsonlWriter | None = None
    repairs: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # setups undone at teardown
    before_copy: Callable[[Path], None] | None = None


class Fault:
    """A nemesis, as in Jepsen: `setup` prepares, `invoke` strikes (the family's frame decides
    when: mid-migration, inside a backup, at once), `teardown` repairs and always runs, even when
    setup or invoke failed, like chaostoolkit's rollbacks."""
    name: ClassVar[str]
    family: ClassVar[str]  # migration | backup | db: the frame it runs in and what is expected of it

    def setup(self, sc: Scene) -> None:
        pass

    def invoke(self, sc: Scene) -> None:
        pass

    def teardown(self, sc: Scene) -> None:
        pass


REGISTRY: dict[str, Fault] = {}


def registered(cls: type[Fault]) -> type[Fault]:
    REGISTRY[cls.name] = cls()
    return cls


@contextlib.contextmanager
def _repairing(fault: Fault, sc: Scene) -> Iterator[None]:
    """setup ... teardown, the teardown (and whatever setup entered into sc.stack) guaranteed; a
    failing repair is recorded, never hides the fault's own error."""
    try:
        fault.setup(sc)
        yield
    finally:
        for undo in (lambda: fault.teardown(sc), sc.stack.close):
            try:
                undo()
            except Exception as exc:  # noqa: BLE001 - a repair that failed is evidence, not a crash
                sc.repairs.append(f"repair FAILED: {type(exc).__name__}: {exc}")


# --- during a live migration ----------------------------------------------------------------------

@registered
class AbortMigration(Fault):
    name, family = "abort-migration", "migration"

    def invoke(self, sc: Scene) -> None:
        with provider(sc.st).connect(sc.source) as hv:
            hv.abort_job(sc.vm)


@registered
class KillDestLibvirtd(Fault):
    name, family = "kill-dest-libvirtd", "migration"

    def invoke(self, sc: Scene) -> None:
        pid = local.host_daemon(sc.st.hosts[sc.target]).pid()
        if pid:
            os.kill(pid, signal.SIGKILL)  # the daemon we started for this host, by its PID

    def teardown(self, sc: Scene) -> None:
        local.restart_daemons(sc.st)
        sc.repairs.append(f"libvirtd of {sc.target} restarted")


def _qemu_pid(st: LabState, host: str, vm: str) -> int | None:
    for pid in netns.pids_in(st.hosts[host].namespace):
        cmd = hostd.cmdline(pid)
        if cmd.startswith("/usr/bin/qemu-system") and f"guest={vm}," in cmd:
            return pid
    return None


@registered
class KillDestQemu(Fault):
    name, family = "kill-dest-qemu", "migration"

    def invoke(self, sc: Scene) -> None:
        pid = _qemu_pid(sc.st, sc.target, sc.vm)
        if pid:
            os.kill(pid, signal.SIGKILL)  # the incoming QEMU of this VM on the target, by its PID


@registered
class CutMigrationLink(Fault):
    name, family = "cut-migration-link", "migration"

    def invoke(self, sc: Scene) -> None:
        netns.set_link(sc.st.switch_namespace, f"p-{sc.target}", up=False)
        try:
            time.sleep(sc.cut_s)
        finally:  # at once, also on an interrupt: not after the migration thread is joined
            netns.set_link(sc.st.switch_namespace, f"p-{sc.target}", up=True)

    def teardown(self, sc: Scene) -> None:  # and again, whatever happened before
        netns.set_link(sc.st.switch_namespace, f"p-{sc.target}", up=True)
        sc.repairs.append(f"link p-{sc.target} up again after {sc.cut_s:g} s")


def _wait_until_copying(sc: Scene, timeout_s: float = 20) -> None:
    """Inject while memory is being copied: after the job has sent something."""
    def copying() -> bool:
        try:
            return hv.job_stats(sc.vm).get("memory_processed", 0) > 0
        except AvailLabError:  # the job is gone already: nothing to wait for
            return True

    with provider(sc.st).connect(sc.source) as hv:
        wait_until(copying, timeout_s, 0.02)


def _remove_half_created(sc: Scene) -> None:
    """A VM left defined but not running on the host that did not win must not linger."""
    where = lab.locate_vm(sc.st, sc.vm)
    for h in sc.st.hosts.values():
        if where and h.name == where[0]:
            continue
        try:
            with provider(sc.st).connect(h) as hv:
                if hv.has_domain(sc.vm):
                    hv.destroy(sc.vm)
                    hv.undefine(sc.vm)
                    sc.repairs.append(f"removed the half-created {sc.vm} on {h.name}")
        except AvailLabError as exc:
            sc.repairs.append(f"could not check {h.name}: {exc}")


def _during_migration(fault: Fault, sc: Scene) -> tuple[str, int | None, bool, str]:
    if sc.source == sc.target:
        raise UsageError(f"target: {sc.vm} already runs on {sc.target}")
    # a slower link keeps the copy going long enough to hit it mid-way on this fast local network
    tuning = MigrationTuning(bandwidth_mib_s=64, timeout_s=sc.timeout_s)
    result: dict[str, MigrationRecord] = {}
    th = threading.Thread(target=lambda: result.setdefault("rec", live_migrate(sc.st, sc.vm, sc.target, tuning,
                                                                               sc.events)))
    injected = None
    try:
        with _repairing(fault, sc):
            th.start()
            try:
                _wait_until_copying(sc)
                injected = now_ns()
                step(f"fault {fault.name} during the migration of {sc.vm} {sc.source} -> {sc.target}")
                fault.invoke(sc)
            finally:  # repairs come after the migration ended, whichever way
                th.join(timeout=sc.timeout_s + 120)
    finally:
        _remove_half_created(sc)
    rec = result.get("rec")
    return (f"migration {sc.source} -> {sc.target}", injected, bool(rec and rec.ok),
            rec.error if rec else "migration thread did not return")


# --- during a full backup -------------------------------------------------------------------------

@registered
class AgentHangDuringFreeze(Fault):
    name, family = "agent-hang-during-freeze", "backup"

    def setup(self, sc: Scene) -> None:
        guest.restart_agent(sc.st, sc.vm, writer=True)  # the agent normally runs without the callback
        guest.run(sc.st, sc.vm, "/bin/sh", ["-c", f"mkdir -p /run/availlab && echo {AGENT_HANG_S} > /run/availlab/agent-hang"])

    def teardown(self, sc: Scene) -> None:  # the hook removes it when it runs; a backup refused earlier did not
        try:
            guest.run(sc.st, sc.vm, "/bin/rm", ["-f", "/run/availlab/agent-hang"])
        finally:  # whatever happened to that: the agent must not keep the callback
            guest.restart_agent(sc.st, sc.vm, writer=False)


@registered
class BackupStorageFull(Fault):
    name, family = "backup-storage-full", "backup"

    def setup(self, sc: Scene) -> None:
        sc.before_copy = sc.stack.enter_context(_small_volume(sc, SMALL_VOLUME))


@contextlib.contextmanager
def _small_volume(sc: Scene, size: str) -> Iterator[Callable[[Path], None]]:
    """Yields put(directory): mount a `size` tmpfs on directory inside the VM's host's mount
    namespace, where its libvirtd and QEMU write the backup. Unmounted on the way out (the failed
    backup may already have removed the directory, which detaches the mount with it)."""
    host = sc.source
    pid = local.host_daemon(sc.st.hosts[host]).pid()
    if not pid:
        raise LabError(f"{host}: libvirtd is not running")
    mounted: list[Path] = []

    def in_host(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", f"--target={pid}", "--mount", *cmd], capture_output=True, text=True)

    def put(directory: Path) -> None:
        r = in_host("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "availlab-small", str(directory))
        if r.returncode:
            raise LabError(f"{host}: could not mount a {size} volume on {directory}: {r.stderr.strip()}")
        mounted.append(directory)

    try:
        yield put
    finally:
        for d in mounted:
            in_host("umount", str(d))
        left = [line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if "availlab-small" in line]
        sc.repairs.append(f"{size} volume removed from {host}" if not left else f"{size} volume STILL mounted on {host}")


def _during_backup(fault: Fault, sc: Scene) -> tuple[str, int | None, bool, str]:
    step(f"fault {fault.name} during a full backup of {sc.vm} on {sc.source}")
    err, injected = "", None
    try:
        with _repairing(fault, sc):
            injected = now_ns()
            bset = backup(sc.st, sc.vm, events=sc.events, before_copy=sc.before_copy)
            sc.details["catalogued"] = bset.id
    except AvailLabError as exc:
        err = str(exc)
    with provider(sc.st).connect(sc.source) as hv:  # what the failed backup left: a frozen guest? half a set?
        try:
            sc.details["guest_freeze_status"] = hv.agent_command(sc.vm, {"execute": "guest-fsfreeze-status"})
        except AvailLabError as exc:
            sc.details["guest_freeze_status"] = f"unknown: {exc}"
    sc.details["guest_thawed"] = sc.details["guest_freeze_status"] == "thawed"
    sc.details["partial_sets_left"] = sorted(p.name for p in site_dir(sc.st, "primary").glob("*.partial"))
    return f"full backup on {sc.source}", injected, not err, err


# --- in the database ------------------------------------------------------------------------------

@registered
class KillDbSessions(Fault):
    name, family = "kill-db-sessions", "db"

    def invoke(self, sc: Scene) -> None:
        d = dialect(sc.st.vms[sc.vm].database)
        ids = [int(r[0]) for r in run_sql(sc.st, sc.vm, d.other_sessions)]
        errors: list[str] = []
        killed = 0
        for i in ids:
            try:
                run_sql(sc.st, sc.vm, d.kill_session.format(id=i))
                killed += 1
            except AvailLabError as exc:  # a session that ended by itself meanwhile
                errors.append(str(exc))
        sc.details.update(database=d.name, sessions=len(ids), killed=killed, errors=errors[:3])


def _in_the_database(fault: Fault, sc: Scene) -> tuple[str, int | None, bool, str]:
    d = dialect(sc.st.vms[sc.vm].database)
    step(f"fault {fault.name}: {d.name} on {sc.vm} ends every workload session")
    with _repairing(fault, sc):
        injected = now_ns()
        fault.invoke(sc)
    killed, errors = sc.details["killed"], sc.details.pop("errors")
    return (f"{d.name}: kill {sc.details['sessions']} sessions", injected, killed > 0,
            "; ".join(errors) if not killed else "")


FRAMES: dict[str, Callable[[Fault, Scene], tuple[str, int | None, bool, str]]] = {
    "migration": _during_migration, "backup": _during_backup, "db": _in_the_database}
FAULTS = tuple(REGISTRY)
FAMILY = {name: f.family for name, f in REGISTRY.items()}  # recorded with each fault (availlab.checks.faults)


def inject(st: LabState, vm: str, target: str, fault: str, events: JsonlWriter | None = None,
           cut_s: float = 5.0, timeout_s: float = 30.0) -> FaultRecord:
    """Run one fault in its family's frame and record what it hit and what it left behind."""
    provider(st).require("fault")
    f = REGISTRY.get(fault)
    if f is None:
        raise UsageError(f"fault: unknown fault {fault!r} (faults: {', '.join(FAULTS)})")
    sc = Scene(st, vm, target, lab.running_host(st, vm), cut_s, timeout_s, events)
    t0 = now_ns()
    try:
        action, injected, ok, err = FRAMES[f.family](f, sc)
    except BaseException as exc:  # the fault itself broke (or the run was interrupted): recorded, then raised
        with contextlib.suppress(Exception):  # the record must not hide why the fault broke
            _record(f, sc, t0, f"{f.family}: {fault}", None, False, f"{type(exc).__name__}: {exc}")
        raise
    return _record(f, sc, t0, action, injected, ok, err)


def _record(f: Fault, sc: Scene, t0: int, action: str, injected: int | None, ok: bool, err: str) -> FaultRecord:
    """The fault's event, with what it hit, where the VM runs now, and every repair."""
    try:
        where = lab.locate_vm(sc.st, sc.vm)
    except AvailLabError as exc:
        where, err = None, err or f"VM not found afterwards: {exc}"
    fr = FaultRecord(f.name, sc.vm, action, sc.source, sc.target if f.family == "migration" else None, t0,
                     now_ns(), injected, ok, err, where[0] if where else None, where[1] if where else None,
                     sc.repairs, sc.details)
    if sc.events:
        sc.events.write(fr.to_event())
    step(f"fault {fr.fault}: {fr.action} {'completed' if fr.action_ok else 'failed'}; {fr.vm} "
         f"{fr.vm_state_after} on {fr.vm_host_after}" + (f"; {'; '.join(fr.repairs)}" if fr.repairs else ""))
    return fr
