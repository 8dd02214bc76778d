"""Faults during a full, application-consistent backup: the guest's freeze callback (the
VSS-writer stand-in) hangs longer than the host waits; the set's directory is a volume far
smaller than the disk. Expected: the backup fails with a clear error, nothing is catalogued, no
partial set is left, the guest is thawed, the VM keeps running and no acknowledged write is lost."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import AvailLabError, LabError
from ..history import now_ns
from ..lab import local
from ..lab.providers import provider
from ..progress import step
from ..vm import guest
from .backup import AGENT_TIMEOUT_S, backup
from .catalog import site_dir
from .nemesis import Fault, Scene, _repairing, frame, registered

AGENT_HANG_S = AGENT_TIMEOUT_S + 3  # the host gives up on the freeze; the agent then freezes late
SMALL_VOLUME = "48M"  # a full set is ~600 MiB: the copy runs out of room mid-way
NO_FREEZE = "did not freeze"  # events.backup's error when the agent does not answer the freeze
NO_SPACE = ("No space left", "ENOSPC", "no space")  # how QEMU, libvirt and the copy say a full volume


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

    def struck(self, sc: Scene, ok: bool, err: str) -> tuple[bool, str]:
        return _failed_for(ok, err, (NO_FREEZE,), "at the freeze", "the agent answered the freeze in time")


@registered
class BackupStorageFull(Fault):
    name, family = "backup-storage-full", "backup"

    def setup(self, sc: Scene) -> None:
        sc.before_copy = sc.stack.enter_context(_small_volume(sc, SMALL_VOLUME))

    def struck(self, sc: Scene, ok: bool, err: str) -> tuple[bool, str]:
        return _failed_for(ok, err, NO_SPACE, "for want of space", f"it fitted on a {SMALL_VOLUME} volume")


def _failed_for(ok: bool, err: str, signs: tuple[str, ...], why: str, completed: str) -> tuple[bool, str]:
    """A backup fault struck when the backup failed, and for the reason the fault gives it."""
    if ok:
        return False, f"the backup completed: {completed}"
    if not any(sign in err for sign in signs):
        return False, f"the backup failed, but not {why}: {err}"
    return True, f"the backup failed {why}: {err}"


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


@frame("backup")
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
