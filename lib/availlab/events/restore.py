"""Restore a VM from a backup chain on any host: a new standalone disk, the saved domain XML,
the database up, and the time it took (RTO: restore start -> first successful query).

The chain (full + incrementals) is read in place through a qcow2 backing chain described as
JSON, so the backup files are never modified (their checksums stay true); `qemu-img convert`
writes one standalone disk onto the lab's shared storage, where the VM can migrate on. Restoring onto a name that exists
is refused unless `replace`; a new name gets its own address so it can run beside the original.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..clients.sql import wait_for_db
from ..errors import BackupError, UsageError, VMError
from ..history import now_ns
from ..lab import state
from ..lab.addressing import plan_addresses
from ..lab.credentials import db_password
from ..lab.providers import locate_vm, provider, require_all_hosts
from ..lab.recipe import BOOT_FILES, GuestImage, image_at
from ..lab.state import LabState, VMState, checkpoint_dir
from ..lab.topology import Topology
from ..progress import step
from ..vm.create import config_disk_bytes, domain_spec, validate_name
from ..vm.domain_xml import child, read_metadata, render
from .catalog import BackupSet, chain, verify
from .instant import attach_chain, create_overlay, reads_no_set
from .instant import move_off as instant_move_off


@dataclass(frozen=True)
class Restored:
    name: str
    host: str
    address: str
    set_ids: list[str]
    t0: int
    t_ready: int
    disk: str
    mode: str = "full"  # "full": the chain copied into a new disk first; "instant": booted from it
    t_disk: int = 0  # the disk ready to boot (copy or overlay done)
    t_moved_off: int = 0  # instant: the data moved off the set, which the VM no longer reads

    @property
    def rto_s(self) -> float:
        return round((self.t_ready - self.t0) / 1e9, 2)

    @property
    def disk_s(self) -> float:
        return round((self.t_disk - self.t0) / 1e9, 2)

    @property
    def move_off_s(self) -> float | None:
        return round((self.t_moved_off - self.t_ready) / 1e9, 2) if self.t_moved_off else None

    def summary(self) -> str:
        how = (f"disk copied in {self.disk_s} s" if self.mode == "full" else
               f"booted from the set, data moved off it {self.move_off_s} s after the database answered"
               if self.t_moved_off else "booted from the set, which it still reads")
        return (f"restored {self.name} on {self.host} at {self.address} from {' -> '.join(self.set_ids)} "
                f"({self.mode}: {how}); database answered after {self.rto_s} s (RTO)")

    def _repr_markdown_(self) -> str:
        return self.summary()


def chain_spec(sets: list[BackupSet]) -> str:
    """A qemu `json:` filename: the newest incremental backed by the older ones, read-only."""
    node: dict | None = None
    for b in sets:
        layer = {"driver": "qcow2", "file": {"driver": "file", "filename": str(Path(b.directory) / "vda.qcow2")}}
        if node is not None:
            layer["backing"] = node
        node = layer
    return "json:" + json.dumps(node)


MEMORY_MIB = (64, 1 << 20)  # what a set may ask of a restored domain
VCPUS = (1, 256)
_UNITS_MIB = {"b": 1 / 2**20, "bytes": 1 / 2**20, "KiB": 1 / 1024, "k": 1 / 1024, "MiB": 1, "M": 1,
              "GiB": 1024, "G": 1024}


def set_shape(sets: list[BackupSet]) -> tuple[int, int, str, tuple[Path, Path]]:
    """What a restore takes from a chain: memory, vCPUs and the image digest from the newest set's
    domain.xml, each checked, and the kernel and initrd to boot (kept in the full set; from the
    image cache for a set older than that). Nothing else of the domain.xml (disks, emulator, QEMU
    arguments, devices) reaches the restored domain, which availlab renders from its own template:
    set.json is not signed, so a set whose checksums were rewritten can say anything in it."""
    bset = sets[-1]
    where = Path(bset.directory) / "domain.xml"
    try:
        root = ET.fromstring(where.read_text())
        mem = child(root, "memory")
        memory = round(int(mem.text or "") * _UNITS_MIB[mem.get("unit", "KiB")])
        vcpus = int(child(root, "vcpu").text or "")
        digest = read_metadata(ET.tostring(root, encoding="unicode")).get("image", "")
    except (OSError, ET.ParseError, VMError, TypeError, ValueError, KeyError) as exc:
        raise BackupError(f"backup set {bset.id}: {where} does not give the VM's memory, vCPUs and image "
                          f"({type(exc).__name__}: {exc}); refused") from None
    if not MEMORY_MIB[0] <= memory <= MEMORY_MIB[1] or not VCPUS[0] <= vcpus <= VCPUS[1]:
        raise BackupError(f"backup set {bset.id}: {where} asks for {memory} MiB and {vcpus} vCPUs "
                          f"(allowed {MEMORY_MIB[0]}-{MEMORY_MIB[1]} MiB, {VCPUS[0]}-{VCPUS[1]} vCPUs); refused")
    if not re.fullmatch(r"[0-9a-f]{16,64}", digest):
        raise BackupError(f"backup set {bset.id}: {where} names no guest image (metadata image={digest!r}); refused")
    full = sets[0]
    if all(n in {f["name"] for f in full.files} for n in BOOT_FILES):  # catalogued, so verified
        kernel, initrd = (Path(full.directory) / n for n in BOOT_FILES)
        return memory, vcpus, digest, (kernel, initrd)
    image = image_at(paths.cache_dir() / "images" / digest, digest)
    if not all(p.is_file() for p in (image.kernel, image.initrd)):
        raise BackupError(f"backup set {bset.id}: it boots guest image {digest}, whose kernel and initrd are "
                          f"neither in its full set {full.id} nor in the cache any more ({image.directory}); "
                          "rebuild that recipe, or restore a newer chain")
    return memory, vcpus, digest, (image.kernel, image.initrd)


def _own_boot_files(vmdir: Path, boot: tuple[Path, Path], digest: str) -> GuestImage:
    """The restored VM boots its own copy of the kernel and initrd: it outlives the set (pruned)
    and the image (a recipe change, then `image prune`), as a migrated VM must."""
    for src, name in zip(boot, BOOT_FILES, strict=True):
        shutil.copyfile(src, vmdir / name)
    return GuestImage(directory=vmdir, disk=vmdir / "disk.qcow2", kernel=vmdir / BOOT_FILES[0],
                      initrd=vmdir / BOOT_FILES[1], digest=digest)


def _swap(lab: str, name: str, entry: VMState, built: Path) -> None:
    """--replace, once the new disk is built: the old VM goes (wherever it runs now), the new disk
    takes its place, and the lab's state names the new VM; under the lab's lock."""
    with state.locked(lab):
        fresh = state.require_up(lab)
        where = locate_vm(fresh, name)
        if where:
            with provider(fresh).connect(fresh.hosts[where[0]]) as hv:
                hv.destroy(name)
                hv.undefine(name)
        os.replace(built, entry.disk)
        fresh.vms[name] = entry
        state.save(fresh)


@dataclass
class _Slot:
    """Where a restored VM goes: its name and address reserved in the lab's state, its files."""
    entry: VMState
    where: tuple[str, str] | None  # --replace: where the VM of that name runs now
    prefixlen: int
    vmdir: Path

    @property
    def disk(self) -> Path:
        return Path(self.entry.disk)


def restore(st: LabState, set_id: str, host: str, *, name: str | None = None, replace: bool = False,
            site: str = "dr", timeout_s: float = 180, instant: bool = False, move_off: bool = True) -> Restored:
    """`instant`: boot from the chain through an overlay, then (`move_off`) move the data off it
    (events.instant). Without the move-off the VM keeps reading the set, which prune then keeps:
    for a drill that deletes the VM again, or a move-off started later (`instant.move_off`)."""
    if not move_off and not instant:
        raise UsageError("move_off: only an instant restore reads the set (--no-move-off needs --instant)")
    provider(st).require("restore")
    if host not in st.hosts:
        raise UsageError(f"host: unknown host {host!r} (hosts: {', '.join(st.hosts)})")
    require_all_hosts(st, "restore")  # a VM of that name may run on a host nobody can ask
    t0 = now_ns()  # the RTO counts the verification: it reads the whole chain, as a copy does
    sets = chain(st, set_id, site)
    for b in sets:
        verify(b)  # a damaged chain is refused before anything is defined
    shape = set_shape(sets)  # a chain of mixed shapes, too
    slot = _reserve(st, sets, validate_name(name or sets[-1].vm), host, replace)
    name = slot.entry.name
    step(f"restoring {name} on {host} from {' -> '.join(b.id for b in sets)}")
    _build_disk(st, sets, slot, instant)
    t_disk = now_ns()
    t_ready = _boot(st, sets, slot, instant, timeout_s, shape)
    step(f"restored {name} on {host}: database answered {(t_ready - t0) / 1e9:.2f} s after the restore began")
    t_moved = 0
    if instant and move_off:
        instant_move_off(st, host, name)
        t_moved = now_ns()
    res = Restored(name, host, slot.entry.address, [b.id for b in sets], t0, t_ready, str(slot.disk),
                   "instant" if instant else "full", t_disk, t_moved)
    step(res.summary())
    return res


def _reserve(st: LabState, sets: list[BackupSet], name: str, host: str, replace: bool) -> _Slot:
    """The name and the address, taken under the lab's lock and saved before anything is built:
    `vm delete` finds whatever the next steps leave, and prune keeps the chain."""
    target = sets[-1]
    with state.locked(st.lab):
        fresh = state.require_up(st.lab)
        gone = [b.id for b in sets if not (Path(b.directory) / "set.json").is_file()]
        if gone:  # pruned since it was verified; from the save below on, prune keeps them
            raise BackupError(f"restore: set(s) {', '.join(gone)} were removed (a prune?) while the chain was verified")
        where = locate_vm(fresh, name)
        if where and not replace:
            raise BackupError(f"restore: VM {name!r} exists on {where[0]} ({where[1]}); "
                              "use --replace to overwrite it, or --name for a new VM")
        if name in fresh.vms and not where and not replace:  # reserved: a create or restore under way, or dead
            raise BackupError(f"restore: VM {name!r} is recorded in lab {st.lab!r} but defined on no host: a "
                              f"create or restore of it is under way, or one died (`availlab --lab {st.lab} vm "
                              f"delete {name}` clears it, or --replace takes the name)")
        plan = plan_addresses(Topology.model_validate(fresh.topology))
        others = {ipaddress.IPv4Address(v.address) for k, v in fresh.vms.items() if k != name}
        if name == target.vm and ipaddress.IPv4Address(target.address) not in others:
            address = target.address  # the original is gone: the restored VM takes its place
        else:
            address = str(plan.vm_address(plan.free_vm_index(others)))  # may refuse: nothing changed yet
        vmdir = Path(fresh.shared_dir) / "vms" / name  # like every lab VM: live-migratable afterwards
        console = Path(fresh.shared_dir) / "logs" / f"{name}.console.log"
        entry = VMState(name=name, address=address, host=host, disk=str(vmdir / "disk.qcow2"),
                        config_disk=str(vmdir / "config.img"), console_log=str(console), uuid=str(uuid.uuid4()),
                        created_at=time.time(), database=target.database, restored_from=target.id,
                        reads_sets=[b.id for b in sets])
        if where:  # --replace: the old VM runs on until the new disk is built (a full disk leaves it)
            old = fresh.vms.get(name)
            if old:
                old.reads_sets = sorted({*old.reads_sets, *entry.reads_sets})  # prune keeps the chain meanwhile
        else:
            fresh.vms[name] = entry  # the name is reserved in the lab's state, not only in libvirt
        state.save(fresh)
    return _Slot(entry, where, plan.prefixlen, vmdir)


def _build_disk(st: LabState, sets: list[BackupSet], slot: _Slot, instant: bool) -> None:
    """The VM's disk from the chain: copied whole, or an overlay over it (instant). A --replace
    builds beside the old disk and swaps it in only once built: a failure leaves the old VM."""
    name = slot.entry.name
    paths.private_dir(slot.vmdir)
    built = slot.vmdir / "disk.qcow2.new" if slot.where else slot.disk
    built.unlink(missing_ok=True)
    try:
        if instant:
            create_overlay(sets, built)
        else:
            r = subprocess.run(["qemu-img", "convert", "-O", "qcow2", chain_spec(sets), str(built)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise BackupError(f"restore: cannot build the disk from the chain: {r.stderr.strip()}"
                                  + (f"; {name} was left as it was" if slot.where else ""))
    except BaseException:
        if slot.where:
            built.unlink(missing_ok=True)
        raise
    if slot.where:
        _swap(st.lab, name, slot.entry, built)
    st.vms[name] = slot.entry
    shutil.rmtree(checkpoint_dir(st.lab, name), ignore_errors=True)  # the new disk holds none of their bitmaps
    if not instant:
        reads_no_set(st, name)


def _boot(st: LabState, sets: list[BackupSet], slot: _Slot, instant: bool, timeout_s: float,
          shape: tuple[int, int, str, tuple[Path, Path]]) -> int:
    """Define and start the restored VM with its own config disk and the chain's boot files;
    when its database first answered (the RTO's end)."""
    name, host = slot.entry.name, slot.entry.host
    memory_mib, vcpus, digest, boot = shape
    image = _own_boot_files(slot.vmdir, boot, digest)
    paths.write_private(Path(slot.entry.config_disk),
                        config_disk_bytes(name, f"{slot.entry.address}/{slot.prefixlen}", db_password(st.lab)))
    console = Path(slot.entry.console_log)
    console.unlink(missing_ok=True)
    xml = render(domain_spec(st, st.vms[name], image, memory_mib, vcpus))
    if instant:
        xml = attach_chain(xml, sets)
    with provider(st).connect(st.hosts[host]) as hv:
        hv.define(xml)
        hv.start(name)
    reply = wait_for_db(st, name, timeout_s)
    if not reply.get("ok"):
        raise VMError(f"restored VM {name}: database did not answer: {reply.get('error')} (console {console})")
    return int(reply["t_ns"])


