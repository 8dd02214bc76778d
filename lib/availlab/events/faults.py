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

After each fault the lab is put right (daemon restarted, link restored, a half-created VM on the
target removed, the small volume unmounted) and that is recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .. import guest, hostd, lab, netns
from ..catalog import site_dir
from ..dialects import dialect
from ..errors import AvailLabError, LabError, UsageError
from ..history import JsonlWriter, now_ns
from ..progress import step
from ..provider import provider
from ..sql import run_sql
from ..state import LabState
from .backup import AGENT_TIMEOUT_S, backup
from .migration import MigrationRecord, MigrationTuning, live_migrate

MIGRATION_FAULTS = ("abort-migration", "kill-dest-libvirtd", "kill-dest-qemu", "cut-migration-link")
BACKUP_FAULTS = ("agent-hang-during-freeze", "backup-storage-full")
DB_FAULTS = ("kill-db-sessions",)
FAULTS = MIGRATION_FAULTS + BACKUP_FAULTS + DB_FAULTS
# recorded with each fault: what is expected of it is decided by its family (availlab.checks.faults)
FAMILY = {**dict.fromkeys(MIGRATION_FAULTS, "migration"), **dict.fromkeys(BACKUP_FAULTS, "backup"),
          **dict.fromkeys(DB_FAULTS, "db")}
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


def _qemu_pid(st: LabState, host: str, vm: str) -> int | None:
    for pid in netns.pids_in(st.hosts[host].namespace):
        cmd = hostd.cmdline(pid)
        if cmd.startswith("/usr/bin/qemu-system") and f"guest={vm}," in cmd:
            return pid
    return None


def _wait_until_copying(st: LabState, vm: str, source: str, timeout_s: float = 20) -> None:
    """Inject while memory is being copied: after the job has sent something."""
    h = st.hosts[source]
    with provider(st).connect(h) as hv:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if hv.job_stats(vm).get("memory_processed", 0) > 0:
                    return
            except AvailLabError:
                return
            time.sleep(0.02)


def inject(st: LabState, vm: str, target: str, fault: str, events: JsonlWriter | None = None,
           cut_s: float = 5.0, timeout_s: float = 30.0) -> FaultRecord:
    provider(st).require("fault")
    if fault in BACKUP_FAULTS:
        return inject_backup(st, vm, fault, events)
    if fault in DB_FAULTS:
        return inject_db(st, vm, fault, events)
    if fault not in MIGRATION_FAULTS:
        raise UsageError(f"fault: unknown fault {fault!r} (faults: {', '.join(FAULTS)})")
    source = lab.running_host(st, vm)
    if source == target:
        raise UsageError(f"target: {vm} already runs on {target}")
    # a slower link keeps the copy going long enough to hit it mid-way on this fast local network
    tuning = MigrationTuning(bandwidth_mib_s=64, timeout_s=timeout_s)
    result: dict = {}
    t0 = now_ns()
    th = threading.Thread(target=lambda: result.setdefault("rec", live_migrate(st, vm, target, tuning, events)))
    th.start()
    _wait_until_copying(st, vm, source)
    injected, repairs = now_ns(), []
    dst = st.hosts[target]
    step(f"fault {fault} during the migration of {vm} {source} -> {target}")
    if fault == "abort-migration":
        with provider(st).connect(source) as hv:
            hv.abort_job(vm)
    elif fault == "kill-dest-libvirtd":
        pid = lab.host_daemon(dst).pid()
        if pid:
            os.kill(pid, signal.SIGKILL)  # the daemon we started for this host, by its PID
    elif fault == "kill-dest-qemu":
        pid = _qemu_pid(st, target, vm)
        if pid:
            os.kill(pid, signal.SIGKILL)  # the incoming QEMU of this VM on the target, by its PID
    elif fault == "cut-migration-link":
        netns.set_link(st.switch_namespace, f"p-{target}", up=False)
        time.sleep(cut_s)
        netns.set_link(st.switch_namespace, f"p-{target}", up=True)
        repairs.append(f"link p-{target} up again after {cut_s:g} s")
    th.join(timeout=timeout_s + 120)
    rec: MigrationRecord | None = result.get("rec")
    if fault == "kill-dest-libvirtd":
        lab.restart_daemons(st)
        repairs.append(f"libvirtd of {target} restarted")
    where_after = lab.locate_vm(st, vm)
    # a VM left defined but not running on the host that did not win must not linger
    for h in st.hosts.values():
        if where_after and h.name == where_after[0]:
            continue
        try:
            with provider(st).connect(h) as hv:
                if hv.has_domain(vm):
                    hv.destroy(vm)
                    hv.undefine(vm)
                    repairs.append(f"removed the half-created {vm} on {h.name}")
        except AvailLabError as exc:
            repairs.append(f"could not check {h.name}: {exc}")
    where_after = lab.locate_vm(st, vm)
    fr = FaultRecord(fault, vm, f"migration {source} -> {target}", source, target, t0, now_ns(), injected,
                     bool(rec and rec.ok), rec.error if rec else "migration thread did not return",
                     where_after[0] if where_after else None, where_after[1] if where_after else None, repairs)
    return _finish(fr, events)


def _finish(fr: FaultRecord, events: JsonlWriter | None) -> FaultRecord:
    if events:
        events.write(fr.to_event())
    step(f"fault {fr.fault}: {fr.action} {'completed' if fr.action_ok else 'failed'}; {fr.vm} "
         f"{fr.vm_state_after} on {fr.vm_host_after}" + (f"; {'; '.join(fr.repairs)}" if fr.repairs else ""))
    return fr


@contextlib.contextmanager
def _small_volume(st: LabState, host: str, size: str) -> Iterator[tuple[Callable[[Path], None], list[str]]]:
    """Yields put(directory): mount a `size` tmpfs on directory inside `host`'s mount namespace,
    where its libvirtd and QEMU write the backup. Unmounted on the way out (the failed backup may
    already have removed the directory, which detaches the mount with it)."""
    pid = lab.host_daemon(st.hosts[host]).pid()
    if not pid:
        raise LabError(f"{host}: libvirtd is not running")
    mounted: list[Path] = []
    repairs: list[str] = []

    def in_host(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", f"--target={pid}", "--mount", *cmd], capture_output=True, text=True)

    def put(directory: Path) -> None:
        r = in_host("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "availlab-small", str(directory))
        if r.returncode:
            raise LabError(f"{host}: could not mount a {size} volume on {directory}: {r.stderr.strip()}")
        mounted.append(directory)

    try:
        yield put, repairs
    finally:
        for d in mounted:
            in_host("umount", str(d))
        left = [line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if "availlab-small" in line]
        repairs.append(f"{size} volume removed from {host}" if not left else f"{size} volume STILL mounted on {host}")


def inject_backup(st: LabState, vm: str, fault: str, events: JsonlWriter | None = None) -> FaultRecord:
    host = lab.running_host(st, vm)
    step(f"fault {fault} during a full backup of {vm} on {host}")
    t0, repairs, details = now_ns(), [], {}
    err, injected = "", None
    try:
        if fault == "agent-hang-during-freeze":
            guest.run(st, vm, "/bin/sh", ["-c", f"mkdir -p /run/availlab && echo {AGENT_HANG_S} > /run/availlab/agent-hang"])
            injected = now_ns()
            bset = backup(st, vm, events=events)
        else:
            with _small_volume(st, host, SMALL_VOLUME) as (put, repairs):
                injected = now_ns()
                bset = backup(st, vm, events=events, before_copy=put)
        details["catalogued"] = bset.id
    except AvailLabError as exc:
        err = str(exc)
    h = st.hosts[host]
    with provider(st).connect(h) as hv:
        try:
            details["guest_freeze_status"] = hv.agent_command(vm, {"execute": "guest-fsfreeze-status"})
        except AvailLabError as exc:
            details["guest_freeze_status"] = f"unknown: {exc}"
    details["guest_thawed"] = details["guest_freeze_status"] == "thawed"
    details["partial_sets_left"] = sorted(p.name for p in site_dir(st, "primary").glob("*.partial"))
    where = lab.locate_vm(st, vm)
    fr = FaultRecord(fault, vm, f"full backup on {host}", host, None, t0, now_ns(), injected, not err, err,
                     where[0] if where else None, where[1] if where else None, repairs, details)
    return _finish(fr, events)


def inject_db(st: LabState, vm: str, fault: str, events: JsonlWriter | None = None) -> FaultRecord:
    d = dialect(st.vms[vm].database)
    host = lab.running_host(st, vm)
    step(f"fault {fault}: {d.name} on {vm} ends every workload session")
    t0 = now_ns()
    ids = [int(r[0]) for r in run_sql(st, vm, d.other_sessions)]
    injected, killed, errors = now_ns(), 0, []
    for i in ids:
        try:
            run_sql(st, vm, d.kill_session.format(id=i))
            killed += 1
        except AvailLabError as exc:  # a session that ended by itself meanwhile
            errors.append(str(exc))
    where = lab.locate_vm(st, vm)
    fr = FaultRecord(fault, vm, f"{d.name}: kill {len(ids)} sessions", host, None, t0, now_ns(), injected,
                     killed > 0, "; ".join(errors[:3]) if not killed else "",
                     where[0] if where else None, where[1] if where else None, [],
                     {"database": d.name, "sessions": len(ids), "killed": killed})
    return _finish(fr, events)
