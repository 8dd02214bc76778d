"""Faults injected into a live migration while clients run, each recorded like any event.

  abort-migration      the operator cancels the job mid-way (virDomainAbortJob)
  kill-dest-libvirtd   the target host's libvirtd dies (SIGKILL, by its PID); restarted after
  kill-dest-qemu       the target's incoming QEMU dies (SIGKILL, by its PID)
  cut-migration-link   the target host's cable to the switch is pulled for `cut_s` seconds
Expected, for every one: the VM keeps running on the source (or on the target if the switchover
had already happened) and no acknowledged write is lost. After each fault the lab is put right
(daemon restarted, link restored, a half-created VM on the target removed) and that is recorded.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field

from .. import lab, netns
from ..errors import AvailLabError, UsageError
from ..history import JsonlWriter, now_ns
from ..progress import step
from ..state import LabState
from ..virt import Hypervisor
from .migration import MigrationRecord, MigrationTuning, live_migrate

MIGRATION_FAULTS = ("abort-migration", "kill-dest-libvirtd", "kill-dest-qemu", "cut-migration-link")


@dataclass
class FaultRecord:
    fault: str
    vm: str
    source: str
    target: str
    t0: int
    t1: int
    injected_at: int | None
    migration_ok: bool
    migration_error: str
    vm_host_after: str | None
    vm_state_after: str | None
    repairs: list[str] = field(default_factory=list)

    def to_event(self) -> dict:
        return {"type": "fault", "t": self.t1, **asdict(self),
                "phases": [{"phase": f"fault: {self.fault}", "t0": self.injected_at or self.t0, "t1": self.t1}]}


def _qemu_pid(st: LabState, host: str, vm: str) -> int | None:
    for pid in netns.pids_in(st.hosts[host].namespace):
        cmd = lab.cmdline(pid)
        if cmd.startswith("/usr/bin/qemu-system") and f"guest={vm}," in cmd:
            return pid
    return None


def _wait_until_copying(st: LabState, vm: str, source: str, timeout_s: float = 20) -> None:
    """Inject while memory is being copied: after the job has sent something."""
    h = st.hosts[source]
    with Hypervisor(h.name, h.uri) as hv:
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
    if fault not in MIGRATION_FAULTS:
        raise UsageError(f"fault: unknown fault {fault!r} (faults: {', '.join(MIGRATION_FAULTS)})")
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
        with Hypervisor(source, st.hosts[source].uri) as hv:
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
            with Hypervisor(h.name, h.uri) as hv:
                if hv.has_domain(vm):
                    hv.destroy(vm)
                    hv.undefine(vm)
                    repairs.append(f"removed the half-created {vm} on {h.name}")
        except AvailLabError as exc:
            repairs.append(f"could not check {h.name}: {exc}")
    where_after = lab.locate_vm(st, vm)
    fr = FaultRecord(fault, vm, source, target, t0, now_ns(), injected,
                     bool(rec and rec.ok), rec.error if rec else "migration thread did not return",
                     where_after[0] if where_after else None, where_after[1] if where_after else None, repairs)
    if events:
        events.write(fr.to_event())
    step(f"fault {fault}: migration {'completed' if fr.migration_ok else 'failed'}; {vm} "
         f"{fr.vm_state_after} on {fr.vm_host_after}" + (f"; {'; '.join(repairs)}" if repairs else ""))
    return fr
