"""Instant recovery: boot a restored VM straight from its backup chain, then move its data off.

A full restore first copies the whole chain into a new disk (`qemu-img convert`), so the RTO
grows with the database. Here the VM gets an empty qcow2 overlay on the lab's shared storage that
takes every write, over the chain's files as its read-only backing: the RTO is the VM's boot. The
backup files carry no backing references of their own and must never change (their checksums
stay true), so the chain is given to libvirt explicitly as nested `<backingStore>` elements; the
overlay's header names only the newest layer (QEMU 7.2 refuses a json: backing that nests another).

While the database serves, a block pull (QEMU's block-stream) copies into the overlay every
cluster it lacks and drops the backing: from then on the VM no longer depends on the set, which
can be pruned or deleted. Until then `in_use` names the sets a VM still reads, and prune keeps them.
"""

from __future__ import annotations

import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AvailLabError, BackupError, DomainNotFoundError
from ..lab import state
from ..lab.providers import provider
from ..lab.state import LabState
from ..progress import step
from ..vm.domain_xml import child
from .catalog import BackupSet

if TYPE_CHECKING:
    from ..lab.hypervisor import HypervisorAPI

DISK = "vda"


def layers(sets: list[BackupSet]) -> list[Path]:
    """The chain's disk files, newest first: the order of a backing chain."""
    return [Path(b.directory) / f"{DISK}.qcow2" for b in reversed(sets)]


def create_overlay(sets: list[BackupSet], disk: Path) -> None:
    r = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                        "-b", str(layers(sets)[0]), str(disk)], capture_output=True, text=True)
    if r.returncode != 0:
        raise BackupError(f"restore --instant: cannot create the overlay {disk}: {r.stderr.strip()}")


def attach_chain(domain_xml: str, sets: list[BackupSet]) -> str:
    """The restored domain's XML with the chain under its system disk, newest layer first."""
    root = ET.fromstring(domain_xml)
    disk = next((d for d in root.findall("devices/disk") if child(d, "target").get("dev") == DISK), None)
    if disk is None:
        raise BackupError(f"restore --instant: the saved domain XML has no disk {DISK}")
    for old in disk.findall("backingStore"):
        disk.remove(old)
    parent = disk
    for f in layers(sets):
        store = ET.Element("backingStore", type="file")
        ET.SubElement(store, "format", type="qcow2")
        ET.SubElement(store, "source", file=str(f))
        # after <source>, where libvirt writes it (it reads it anywhere)
        parent.insert(list(parent).index(child(parent, "source")) + 1, store)
        parent = store
    ET.SubElement(parent, "backingStore")  # the full: nothing below it
    return ET.tostring(root, encoding="unicode")


def backing_files(domain_xml: str) -> list[str]:
    """Every backing file under any disk of a domain's XML (empty once moved off)."""
    root = ET.fromstring(domain_xml)
    return [file for store in root.iter("backingStore")
            if (src := store.find("source")) is not None and (file := src.get("file"))]


def move_off(st: LabState, host: str, name: str, *, mib_s: int = 0, timeout_s: float = 1800) -> None:
    """Block-pull the chain into the VM's overlay and drop it; returns once libvirt's own view of
    the running and the defined domain has no backing file left. Progress every few seconds.
    Also what `availlab move-off VM` runs, later: a VM already moved off is left as it is, and a
    pull still running (its command was killed; QEMU's job goes on) is waited for, not restarted."""
    with provider(st).connect(st.hosts[host]) as hv:
        if backing_files(hv.domain_xml(name)):
            _pull(hv, name, mib_s, timeout_s)
        if backing_files(hv.domain_xml(name, inactive=True)):
            # the definition still names the chain: the next cold start would read the set again
            hv.define(_without_chain(hv.domain_xml(name, inactive=True)))
            if backing_files(hv.domain_xml(name, inactive=True)):
                raise BackupError(f"restore --instant: {name}'s definition still names the backup set "
                                  "after it was defined again without it")
    reads_no_set(st, name)


def _pull(hv: HypervisorAPI, name: str, mib_s: int, timeout_s: float) -> None:
    """The block pull of a running VM, started unless one runs already, waited for."""
    if hv.block_job(name, DISK) is None:
        hv.block_pull(name, DISK, mib_s)
    deadline = time.monotonic() + timeout_s
    said = 0.0
    while (job := hv.block_job(name, DISK)) is not None:
        if time.monotonic() > deadline:
            hv.block_job_abort(name, DISK)
            raise BackupError(f"restore --instant: moving {name}'s data off the backup took over "
                              f"{timeout_s:.0f} s; aborted, the VM still runs from the set "
                              f"(`availlab move-off {name}` tries again)")
        if time.monotonic() - said > 3 and job["end"]:
            step(f"moving {name} off the backup: {100 * job['cur'] / job['end']:.0f}%")
            said = time.monotonic()
        time.sleep(0.2)
    left = backing_files(hv.domain_xml(name))
    if left:
        raise BackupError(f"restore --instant: the block pull of {name} ended but its disk still "
                          f"reads {', '.join(left)} (see the host's libvirtd log)")


def reads_no_set(st: LabState, name: str) -> None:
    """The VM's disk no longer needs its backup sets: prune may take them."""
    with state.update(st.lab) as fresh:
        if name in fresh.vms:
            fresh.vms[name].reads_sets = []
    if name in st.vms:
        st.vms[name].reads_sets = []


def _without_chain(domain_xml: str) -> str:
    root = ET.fromstring(domain_xml)
    for disk in root.findall("devices/disk"):
        for store in disk.findall("backingStore"):
            disk.remove(store)
    return ET.tostring(root, encoding="unicode")


def in_use(st: LabState, sets: list[BackupSet]) -> set[str]:
    """The ids of the sets a VM of the lab reads: those a restore is building a disk from or an
    instant restore still boots from (recorded in the lab's state, under its lock, before the
    first byte is read), and any set file a running domain's XML names. Every host's libvirtd is
    asked; one that cannot be asked makes this refuse (a host lost in a disaster drill runs
    nothing and is skipped): removing a set a VM reads would take its disk from under it."""
    owner = {str(Path(b.directory) / f["name"]): b.id for b in sets for f in b.files}
    here = {b.id for b in sets}
    used = {i for v in st.vms.values() for i in v.reads_sets if i in here}
    for h in st.hosts.values():
        if h.name in st.lost_hosts:
            continue  # emptied and stopped by a disaster drill: it runs nothing
        try:
            with provider(st).connect(h) as hv:
                for d in hv.domains():
                    try:
                        xml = hv.domain_xml(d.name)
                    except DomainNotFoundError:
                        continue  # migrated away since the listing: its new host is asked too
                    used |= {owner[f] for f in backing_files(xml) if f in owner}
        except AvailLabError as exc:
            raise BackupError(f"cannot tell whether a VM on {h.name} still runs from a backup set "
                              f"(an instant restore not yet moved off): {exc}") from None
    return used
