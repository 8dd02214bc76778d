"""Faults during a live migration: the operator aborts it, the target's libvirtd or incoming
QEMU dies, the target's cable is pulled. Expected: the VM keeps running on the source (or on the
target if the switchover had already happened) and no acknowledged write is lost."""

from __future__ import annotations

import os
import signal
import threading
import time

from ..errors import AvailLabError, UsageError
from ..history import now_ns
from ..lab import hostd, local, netns
from ..lab import providers as lab
from ..lab.providers import provider
from ..lab.state import LabState
from ..progress import step
from ..waiting import wait_until
from .migration import MigrationRecord, MigrationTuning, live_migrate
from .nemesis import Fault, Scene, _repairing, frame, registered


@registered
class AbortMigration(Fault):
    name, family = "abort-migration", "migration"

    def invoke(self, sc: Scene) -> None:
        try:
            with provider(sc.st).connect(sc.source) as hv:
                hv.abort_job(sc.vm)
            sc.details["abort"] = "accepted"
        except AvailLabError as exc:  # e.g. the job had ended already: evidence, not a crash
            sc.details["abort"] = f"refused: {exc}"

    def struck(self, sc: Scene, ok: bool, err: str) -> tuple[bool, str]:
        if sc.details.get("abort") != "accepted":
            return False, f"libvirt did not take the abort ({sc.details.get('abort', 'not sent')})"
        if ok:
            return False, "the migration completed although libvirt accepted the abort"
        return True, f"libvirt accepted the abort and the migration ended unfinished: {err}"


@registered
class KillDestLibvirtd(Fault):
    name, family = "kill-dest-libvirtd", "migration"

    def invoke(self, sc: Scene) -> None:
        pid = local.host_daemon(sc.st.hosts[sc.target]).pid()
        if pid:
            os.kill(pid, signal.SIGKILL)  # the daemon we started for this host, by its PID
        sc.details["killed_pid"] = pid
        step(f"fault {self.name}: " + (f"libvirtd of {sc.target} (pid {pid}) killed" if pid
                                       else f"no libvirtd of {sc.target} to kill"))

    def struck(self, sc: Scene, ok: bool, err: str) -> tuple[bool, str]:
        return _killed_mid_migration(sc, ok, err, f"the libvirtd of {sc.target}")

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
        sc.details["killed_pid"] = pid
        step(f"fault {self.name}: " + (f"incoming QEMU of {sc.vm} on {sc.target} (pid {pid}) killed" if pid
                                       else f"no incoming QEMU of {sc.vm} on {sc.target} to kill"))

    def struck(self, sc: Scene, ok: bool, err: str) -> tuple[bool, str]:
        return _killed_mid_migration(sc, ok, err, f"the incoming QEMU of {sc.vm} on {sc.target}")


def _killed_mid_migration(sc: Scene, ok: bool, err: str, what: str) -> tuple[bool, str]:
    pid = sc.details.get("killed_pid")
    if not pid:
        return False, f"{what} was not found: nothing was killed"
    if ok:
        return False, f"{what} (pid {pid}) was killed, but the migration completed: it came too late"
    return True, f"{what} (pid {pid}) was killed mid-copy and the migration failed: {err}"


@registered
class CutMigrationLink(Fault):
    name, family = "cut-migration-link", "migration"

    def invoke(self, sc: Scene) -> None:
        netns.set_link(sc.st.switch_namespace, f"p-{sc.target}", up=False)
        sc.details["cut_at"] = now_ns()
        try:
            time.sleep(sc.cut_s)
        finally:  # at once, also on an interrupt: not after the migration thread is joined
            netns.set_link(sc.st.switch_namespace, f"p-{sc.target}", up=True)
            sc.details["restored_at"] = now_ns()

    def struck(self, sc: Scene, ok: bool, err: str) -> tuple[bool, str]:
        cut, ended = sc.details.get("cut_at"), sc.details.get("migration_ended_at")
        if cut is None:
            return False, "the link was never cut"
        if ended is None or ended <= cut:
            return False, "the migration had ended before the link was cut"
        return True, (f"the link was down {sc.cut_s:g} s while the migration ran; "
                      + ("it completed after the link came back" if ok else f"it failed: {err}"))

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


@frame("migration")
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
    sc.details["migration_ended_at"] = rec.t1 if rec else None
    return (f"migration {sc.source} -> {sc.target}", injected, bool(rec and rec.ok),
            rec.error if rec else "migration thread did not return")
