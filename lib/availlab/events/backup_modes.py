"""How a backup's data leaves the host: the modes of libvirt's backup API, as a registry.

backup.py runs the same phases whatever the mode (checkpoint, freeze, begin, thaw, copy, wait,
catalogue); a mode says only what differs: the backup XML, what it needs ready before the job
begins, what it does right after (push caps QEMU's copy), how the data is copied (pull reads the
NBD export itself; push lets QEMU write), how its job's end is read, and what it leaves behind. A
third mode (a vendor's agent, a storage snapshot) is one more entry here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .. import paths
from ..errors import AvailLabError, BackupError
from ..progress import step
from . import pull  # light: the command line's parser reads MODES from here

if TYPE_CHECKING:
    from ..lab.hypervisor import HypervisorAPI
    from ..lab.state import HostState, LabState

DISK = "vda"
# The copy's cap, in each mode. Unbounded, the job starves the guest's own I/O until it is done:
# clients waited through the whole copy of a full backup (0.6-0.8 s). Measured under 4 clients
# (push), median / max longest client gap: 773 / 838 ms unbounded, 731 / 967 at 1000 MiB/s, 341 /
# 476 at 400, 256 / 315 at 100 (migrations in the same runs: 165-407 ms). Push counts the disk's
# virtual size, pull the data it reads.
COPY_MIB_S = 300
EXPORT_BITMAP = "availlab-since-parent"  # the NBD name of an incremental's dirty bitmap


@dataclass
class Copy:
    """What one backup's copy needs and what it leaves, shared by backup.py and its mode."""
    st: LabState
    hv: HypervisorAPI
    vm: str
    host: HostState
    kind: str
    work: Path  # the set's directory while it is written
    parent_checkpoint: str | None
    mib_s: int
    scratch: Path  # pull: where libvirt keeps old data before the guest overwrites it
    nbd_dir: Path | None = None  # pull: the export's socket directory
    host_command: list[str] = field(default_factory=list)
    uncapped: str = ""  # push: why the copy could not be capped
    copied: pull.Copied | None = None  # pull: what the reader read

    @property
    def target(self) -> Path:
        return self.work / f"{DISK}.qcow2"


class BackupMode(Protocol):
    name: str

    def require(self) -> None:
        """Refuse (UsageError/BackupError) before the lab is touched if this machine cannot."""

    def prepare(self, c: Copy) -> None:
        """What must exist before the job begins (the freeze is not held for it)."""

    def xml(self, c: Copy) -> str: ...

    def after_begin(self, c: Copy) -> None:
        """Right after the point in time, before the thaw."""

    def copy(self, c: Copy, progress: Callable[[int, int], None]) -> None:
        """Move the data; returns when this mode's part of it is done."""

    def outcome(self, c: Copy) -> tuple[bool, str]:
        """Did the copy complete (and if not, libvirt's reason), once the job has ended."""

    def left_for_job(self, c: Copy) -> str:
        """What a job still running keeps (said when it could not be ended)."""

    def leftovers(self, c: Copy) -> None:
        """Remove what this mode made, once no job uses it."""


def _domainbackup(mode: str, parent_checkpoint: str | None) -> tuple[ET.Element, ET.Element, ET.Element]:
    root = ET.Element("domainbackup", mode=mode)
    if parent_checkpoint:
        ET.SubElement(root, "incremental").text = parent_checkpoint
    disks = ET.Element("disks")
    d = ET.SubElement(disks, "disk", name=DISK, backup="yes", type="file")
    return root, disks, d


def _close(root: ET.Element, disks: ET.Element) -> str:
    ET.SubElement(disks, "disk", name="vdb", backup="no")  # the read-only config disk
    root.append(disks)
    return ET.tostring(root, encoding="unicode")


def socket_dir(host_dir: Path) -> Path:
    """A new directory for one export's socket: under the host's own directory, which `lab down`
    removes with the lab (a backup killed with kill -9, whose VM is never backed up again, left
    its directory in /tmp before); in /tmp only where that path would not fit a unix socket's
    107 bytes (a long AVAILLAB_STATE)."""
    base = host_dir / "nbd"
    if len(os.fsencode(base / "availlab-nbd-12345678" / "nbd.sock")) <= paths.SOCKET_PATH_MAX:
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="availlab-nbd-", dir=base))
    return Path(tempfile.mkdtemp(prefix="availlab-nbd-"))


class Pull:
    """libvirt exports the disk over NBD (a unix socket), saving old data in a scratch file before
    the guest overwrites it; availlab reads the export into the set at `mib_s` (pull.py), then ends
    the job. The default: its clients' longest gap was a quarter to a half of a migration's, push
    mode's 1.4-2.3x one (docs/backup.md)."""

    name = "pull"

    def require(self) -> None:
        pull.require()

    def prepare(self, c: Copy) -> None:
        # the scratch file on the host's own storage, never in the set (a full set volume must
        # not stall the guest)
        c.nbd_dir = socket_dir(Path(c.host.directory))
        c.scratch.parent.mkdir(parents=True, exist_ok=True)
        from ..lab.providers import provider

        c.host_command = provider(c.st).host_command(c.host)

    def xml(self, c: Copy) -> str:
        assert c.nbd_dir is not None, "prepare() makes the socket's directory"
        root, disks, d = _domainbackup("pull", c.parent_checkpoint)
        ET.SubElement(root, "server", transport="unix", socket=str(c.nbd_dir / "nbd.sock"))
        d.set("exportname", DISK)
        if c.parent_checkpoint:
            d.set("exportbitmap", EXPORT_BITMAP)
        ET.SubElement(d, "scratch", file=str(c.scratch))
        return _close(root, disks)

    def after_begin(self, c: Copy) -> None:
        pass

    def copy(self, c: Copy, progress: Callable[[int, int], None]) -> None:
        assert c.nbd_dir is not None
        try:
            c.copied = pull.copy_export(c.nbd_dir / "nbd.sock", DISK, c.target,
                                        bitmap=EXPORT_BITMAP if c.parent_checkpoint else None, mib_s=c.mib_s,
                                        host_command=c.host_command, progress=progress)
        except BackupError as exc:  # said like push mode's copy failures
            gone = ""
            with contextlib.suppress(AvailLabError):  # never hides the copy's own error
                gone = "" if c.hv.job_active(c.vm) else "its backup job ended before the copy did; "
            raise BackupError(f"backup of {c.vm} failed during the copy: {gone}{exc}") from exc
        from . import jobs

        still = jobs.end_job(c.hv, c.vm)  # a pull job ends when its reader says so
        if still:
            raise BackupError(f"backup of {c.vm}: the copy completed but its job did not end: {still}")

    def outcome(self, c: Copy) -> tuple[bool, str]:
        return True, ""  # the reader read every extent, or copy() raised

    def left_for_job(self, c: Copy) -> str:
        return f" (its NBD socket in {c.nbd_dir} and scratch file {c.scratch} are left for it)" if c.nbd_dir else ""

    def leftovers(self, c: Copy) -> None:
        """libvirt removes the scratch file when the job ends; an ended job that left it, or a
        socket directory, is ours to remove."""
        if c.nbd_dir:
            shutil.rmtree(c.nbd_dir, ignore_errors=True)
            c.scratch.unlink(missing_ok=True)


class Push:
    """QEMU's backup job writes the set itself, its copy capped at `mib_s`. Kept for comparison
    (bench/backup.py) and for what pull cannot reach (no libnbd on this machine)."""

    name = "push"

    def require(self) -> None:
        pass

    def prepare(self, c: Copy) -> None:
        pass

    def xml(self, c: Copy) -> str:
        root, disks, d = _domainbackup("push", c.parent_checkpoint)
        ET.SubElement(d, "target", file=str(c.target))
        ET.SubElement(d, "driver", type="qcow2")
        return _close(root, disks)

    def after_begin(self, c: Copy) -> None:
        if c.mib_s:  # before the thaw: the copy must not take the guest's I/O
            try:
                c.hv.set_copy_speed(c.vm, DISK, c.mib_s)
            except AvailLabError as exc:  # the job may have ended at once (its target full):
                c.uncapped = str(exc)       # its own outcome says why; never hidden by this
                step(f"backup of {c.vm}: the copy runs uncapped: {exc}")

    def copy(self, c: Copy, progress: Callable[[int, int], None]) -> None:
        pass  # QEMU's job copies; backup.py waits for it

    def outcome(self, c: Copy) -> tuple[bool, str]:
        return c.hv.finished_job(c.vm)

    def left_for_job(self, c: Copy) -> str:
        return ""

    def leftovers(self, c: Copy) -> None:
        pass


REGISTRY: dict[str, BackupMode] = {m.name: m for m in (Pull(), Push())}
MODES = tuple(REGISTRY)  # the first is the default
