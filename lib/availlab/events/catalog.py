"""Backup sets on disk: what a set is, where the sites keep them, and proof they are intact.

A set is a directory `<site>/<set id>/` with the disk image(s), the domain XML and `set.json`
(catalogue: VM, type, parent, checkpoint, time, size, sha256 of every file). Sites are the
primary backup target `<lab>/backups` and the DR site (topology `storage.dr_site`). Every reader
verifies checksums before trusting a set; errors name the file and both checksums.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import names, paths
from ..dialects import DEFAULT_DATABASE
from ..errors import BackupError, UsageError
from ..lab.recipe import BOOT_FILES
from ..lab.state import LabState, primary_backups_dir
from ..paths import sha256_file

SITES = ("primary", "dr")


@dataclass
class BackupSet:
    id: str
    vm: str
    type: str  # full | incremental | differential
    parent: str | None
    checkpoint: str
    time: float
    consistency: str  # application | crash
    files: list[dict] = field(default_factory=list)  # {"name", "size", "sha256"}
    source_host: str = ""
    address: str = ""
    freeze_ms: float | None = None
    t_begin: int = 0  # monotonic ns of backupBegin: writes acknowledged before it are inside
    duration_s: float = 0.0
    database: str = DEFAULT_DATABASE  # the VM's database profile, for the restored VM
    mode: str = "push"  # how it was taken: libvirt's push or pull mode (sets before pull mode: push)
    lab_id: str = ""  # the lab that took it (lab/identity.py): a DR site shared by labs lists each its own
    site: str = ""
    directory: str = ""

    @property
    def size_bytes(self) -> int:
        return sum(f["size"] for f in self.files)

    def public(self) -> dict:
        """The `backups list --json` view: files as absolute paths."""
        return {"id": self.id, "vm": self.vm, "type": self.type, "parent": self.parent,
                "time": self.time, "site": self.site, "consistency": self.consistency,
                "size_bytes": self.size_bytes,
                "files": [str(Path(self.directory) / f["name"]) for f in self.files]}


def site_dir(st: LabState, site: str) -> Path:
    if site not in SITES:
        raise UsageError(f"site: must be one of {', '.join(SITES)} (got {site!r})")
    from ..lab.providers import provider  # libvirt-free to import: replicate uses this module

    provider(st).require("backup_site")
    if not st.dr_dir:  # never '' (the current directory) as a site
        raise UsageError(f"lab {st.lab!r} has no DR site in its state; `availlab --lab {st.lab} lab up` records one")
    return Path(st.dr_dir) if site == "dr" else primary_backups_dir(st.lab)


def describe_files(directory: Path, names: list[str]) -> list[dict]:
    return [{"name": n, "size": (directory / n).stat().st_size, "sha256": sha256_file(directory / n)}
            for n in names]


def write_set(directory: Path, bset: BackupSet) -> None:
    data = {k: v for k, v in asdict(bset).items() if k not in ("site", "directory")}
    paths.write_atomic(directory / "set.json", json.dumps(data, indent=2) + "\n")


REQUIRED_FILES = ("vda.qcow2", "domain.xml")  # what restore opens: each must be catalogued, so checked
# A full set carries the kernel and initrd its VM boots (BOOT_FILES): a restore must not depend on
# the image cache still holding them (a recipe change and an `image prune` later, it would not boot)


def keep_boot_files(directory: Path, domain_xml: str) -> list[str]:
    """Copy the kernel and initrd a running domain boots into a set being written; their names."""
    import xml.etree.ElementTree as ET

    os_ = ET.fromstring(domain_xml).find("os")
    sources = [os_.findtext("kernel") if os_ is not None else None, os_.findtext("initrd") if os_ is not None else None]
    if not all(sources):
        raise BackupError(f"{directory.name}: the domain boots no kernel and initrd of its own to keep with the set")
    for src, name in zip(sources, BOOT_FILES, strict=True):
        shutil.copyfile(str(src), directory / name)
    return list(BOOT_FILES)


def read_set(directory: Path, site: str) -> BackupSet:
    """The set's catalogue, refused unless every name in it is a plain name (its id, parent and
    files become paths) and it lists every file a restore opens (else verify would check nothing)."""
    where = directory / "set.json"
    try:
        data = json.loads(where.read_text())
        bset = BackupSet(**data, site=site, directory=str(directory))
    except (OSError, ValueError, TypeError) as exc:
        raise BackupError(f"backup set {directory.name}: unreadable catalogue {where}: {exc}") from None
    try:
        names.component(bset.id, f"{where}: id")
        if bset.parent is not None:
            names.component(bset.parent, f"{where}: parent")
        if not isinstance(bset.files, list) or not all(
                isinstance(f, dict) and isinstance(f.get("size"), int) and isinstance(f.get("sha256"), str)
                for f in bset.files):
            raise UsageError(f"{where}: files must be a list of {{name, size, sha256}}")
        listed = [names.component(f.get("name"), f"{where}: files") for f in bset.files]
        _check_fields(bset, str(where))
    except UsageError as exc:
        raise BackupError(f"backup set {directory.name}: refused: {exc}") from None
    if bset.id != directory.name:
        raise BackupError(f"backup set {directory.name}: refused: {where} names it {bset.id!r}")
    missing = [n for n in REQUIRED_FILES if n not in listed]
    if missing:
        raise BackupError(f"backup set {bset.id}: refused: {where} does not list {', '.join(missing)}, "
                          "so its checksums could not be verified")
    return bset


TYPES = ("full", "incremental", "differential")


def _check_fields(bset: BackupSet, where: str) -> None:
    """The catalogue fields a restore builds on (the VM's name, its address, its database, the
    set's type), each checked: set.json is not signed, and its checksums can be rewritten."""
    from ..dialects import dialect

    names.component(bset.vm, f"{where}: vm")
    if not isinstance(bset.lab_id, str) or bset.lab_id and not re.fullmatch(r"[0-9a-f]{32}", bset.lab_id):
        raise UsageError(f"{where}: lab_id {bset.lab_id!r} is not a lab's id")
    if bset.type not in TYPES:
        raise UsageError(f"{where}: type must be one of {', '.join(TYPES)} (got {bset.type!r})")
    if bset.address:
        try:
            ipaddress.IPv4Address(bset.address)
        except ValueError:
            raise UsageError(f"{where}: address {bset.address!r} is not an IPv4 address") from None
    try:
        dialect(bset.database)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


def list_sets(st: LabState, site: str | None = None) -> list[BackupSet]:
    """This lab's sets at its sites (another lab's sets at a DR site they share are not listed,
    so neither its incrementals nor its prune ever take them)."""
    out: list[BackupSet] = []
    from ..lab.providers import provider

    if not provider(st).offers("backup_site"):
        return out
    for s in ([site] if site else list(SITES)):
        root = site_dir(st, s)
        if root.is_dir():
            out += [read_set(d, s) for d in sorted(root.iterdir())
                    if d.is_dir() and not d.name.endswith(".partial") and (d / "set.json").is_file()]
    from ..lab.identity import lab_id

    mine = lab_id(st.lab)  # this lab's sets: tagged with its id, or untagged (taken before sets were tagged)
    return sorted((b for b in out if not b.lab_id or b.lab_id == mine), key=lambda b: (b.time, b.site))


def find(st: LabState, set_id: str, site: str) -> BackupSet:
    d = names.inside(site_dir(st, site), site_dir(st, site) / names.component(set_id, "set"), "set")
    if not (d / "set.json").is_file():
        known = ", ".join(b.id for b in list_sets(st, site)) or "none"
        raise UsageError(f"set: no backup set {set_id!r} at the {site} site (sets there: {known})")
    return read_set(d, site)


def verify(bset: BackupSet) -> None:
    """Every file present with its catalogued size and sha256; else an error naming the file."""
    d = Path(bset.directory)
    for f in bset.files:
        p = d / f["name"]
        if not p.is_file():
            raise BackupError(f"backup set {bset.id}: file {p} is missing")
        got = sha256_file(p)
        if got != f["sha256"]:
            raise BackupError(f"backup set {bset.id}: checksum mismatch for {p}: "
                              f"catalogue sha256 {f['sha256']}, file sha256 {got}")


def chain(st: LabState, set_id: str, site: str) -> list[BackupSet]:
    """The full set and every incremental up to set_id, oldest first; refuses a broken chain."""
    out = [find(st, set_id, site)]
    while out[0].parent:
        parent = out[0].parent
        if parent in {b.id for b in out}:  # a catalogue naming itself (or a loop) as its parent
            raise BackupError(f"backup set {out[0].id}: chain loops back to {parent} at the {site} site")
        d = site_dir(st, site) / parent
        if not (d / "set.json").is_file():
            raise BackupError(f"backup set {out[-1].id}: chain incomplete at the {site} site: "
                              f"parent set {parent} is missing")
        link = read_set(d, site)
        if link.vm != out[0].vm:  # one VM's lineage: another VM's full would be merged silently
            raise BackupError(f"backup set {out[0].id} (VM {out[0].vm}): its parent {parent} is a set of "
                              f"VM {link.vm}; refused")
        out.insert(0, link)
    if out[0].type != "full":
        raise BackupError(f"backup set {set_id}: chain does not start with a full backup")
    return out
