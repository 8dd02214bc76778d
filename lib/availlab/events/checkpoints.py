"""Checkpoints that follow the VM from host to host, so an incremental chain survives migration.

A checkpoint has two halves. Its bitmap (the blocks written since) lives in the VM's qcow2 on
shared storage, and moves with the VM: QEMU stores it when the source lets go of the disk and the
target loads it. Its metadata (name, parent, creation time) lives in one host's libvirtd, and is
left behind: after a live migration the target's libvirtd knows no checkpoint of the VM, and an
incremental backup there has no parent. So every checkpoint's description is kept beside the
backups, one file per checkpoint (as virtnbdbackup's --checkpointdir does), and before each
backup the host the VM runs on is given any it is missing, oldest first, with libvirt checking
that each one's bitmap really is in the disk (REDEFINE_VALIDATE).

Every checkpoint of the VM is given back, not only a backup's parent: libvirt (9.0 here) keeps
every checkpoint's bitmap recording, so the parent's bitmap alone holds all that was written
since, but the host must know every checkpoint to list, delete (retention) or validate them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .. import names, paths
from ..errors import CheckpointRefused
from ..lab.hypervisor import HypervisorAPI
from ..lab.state import LabState, checkpoint_dir


def directory(st: LabState, vm: str) -> Path:
    return checkpoint_dir(st.lab, vm)


def keep(st: LabState, hv: HypervisorAPI, vm: str, checkpoint: str) -> None:
    """Save a new checkpoint's description, once its backup completed."""
    xml = hv.checkpoint_xml(vm, checkpoint)
    d = directory(st, vm)
    d.mkdir(parents=True, exist_ok=True)
    paths.write_atomic(d / f"{names.component(checkpoint, 'checkpoint')}.xml", xml)


def forget(st: LabState, vm: str, checkpoint: str) -> None:
    (directory(st, vm) / f"{names.component(checkpoint, 'checkpoint')}.xml").unlink(missing_ok=True)


def _created(xml: str) -> int:
    m = re.search(r"<creationTime>(\d+)</creationTime>", xml)
    return int(m.group(1)) if m else 0


def kept(st: LabState, vm: str) -> list[tuple[str, str]]:
    """[(name, description)] of the VM's kept checkpoints, oldest first."""
    d = directory(st, vm)
    found = []
    for f in sorted(d.glob("*.xml")) if d.is_dir() else []:
        xml = f.read_text()
        found.append((ET.fromstring(xml).findtext("name") or f.stem, xml))
    return sorted(found, key=lambda nx: (_created(nx[1]), nx[0]))


def adopt(st: LabState, hv: HypervisorAPI, vm: str) -> tuple[list[str], list[str]]:
    """Give the VM's current host every kept checkpoint it does not know: (adopted, dropped).
    One whose bitmap is not in the disk any more (the disk was replaced, or the checkpoint
    deleted where libvirt knew it), or that libvirt refuses for this domain, cannot be a parent
    again: its description is dropped, and a backup that needed it says to take a full one."""
    known = set(hv.checkpoints(vm))
    adopted, dropped = [], []
    for name, xml in kept(st, vm):
        if name in known:
            continue
        try:
            hv.redefine_checkpoint(vm, xml)
            adopted.append(name)
        except CheckpointRefused as exc:  # any other error: the host could not be asked; raised
            dropped.append(f"{name} ({exc})")
            forget(st, vm, name)
    return adopted, dropped
