"""What the guest-image cache holds, and which of it can go.

Every edit of the guest recipe builds a new ~600 MiB image beside the old ones (that is what
keeps an interrupted or changed build from touching a working image), so the cache grows. An
image may be removed only if it is no profile's current recipe and no VM of any lab still uses
it as a backing file: a VM's disk is a thin overlay, and deleting its base would destroy it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..dialects import DEFAULT_DATABASE
from ..errors import AvailLabError
from .recipe import DATABASE_PACKAGES, load_recipe
from .state import load as load_state


@dataclass(frozen=True)
class CachedImage:
    digest: str
    directory: Path
    database: str
    size_bytes: int
    built_at: float
    status: str  # "current" | "in use by <lab>/<vm>" | "kept: …" | "stale"


def _size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def backing_files(disk: Path) -> list[Path] | None:
    """Every file under a qcow2 disk's backing chain (the disk itself excluded); None when
    qemu-img cannot tell, which must never be read as "uses nothing"."""
    r = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", str(disk)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    try:
        chain = json.loads(r.stdout)
    except ValueError:
        return None
    return [Path(layer["filename"]).resolve() for layer in chain[1:] if layer.get("filename")]


def _users_dir() -> Path:
    return paths.cache_dir() / "images" / ".users"


def register_user(image: Path, disk: Path, who: str) -> None:
    """Record in the cache itself that `disk` (VM `who`, "lab/vm") is an overlay of `image`: the
    cache is shared by labs under any AVAILLAB_STATE, which a scan of one state root cannot see."""
    d = _users_dir() / image.name
    d.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(disk).encode()).hexdigest()[:32]
    paths.write_atomic(d / key, json.dumps({"disk": str(disk), "vm": who}) + "\n")


def images_in_use() -> tuple[dict[Path, str], list[str]]:
    """({image directory: who} for every disk known to back onto an image, [what could not be
    checked]): with any of the latter, nothing can be called unused. Known three ways: VMs of
    the labs under this state root, disks registered in the cache by any lab, and processes
    (QEMU of any lab, anywhere) holding an image file open."""
    used: dict[Path, str] = {}
    unknown: list[str] = []

    def disk_of(disk: Path, who: str) -> None:
        if not disk.exists():
            return
        chain = backing_files(disk)
        if chain is None:
            unknown.append(f"the backing chain of {who}'s disk {disk} cannot be read")
        for f in chain or []:
            used.setdefault(f.parent, who)

    root = paths.state_root()
    for state_file in sorted(root.glob("*/state.json")) if root.is_dir() else []:
        try:
            st = load_state(state_file.parent.name)
        except (OSError, ValueError, TypeError, AvailLabError):
            unknown.append(f"the state of lab {state_file.parent.name} cannot be read")
            continue
        if st is None:
            continue
        for vm in st.vms.values():
            if vm.disk:
                disk_of(Path(vm.disk), f"{st.lab}/{vm.name}")
    for entry in sorted(_users_dir().glob("*/*")) if _users_dir().is_dir() else []:
        try:
            info = json.loads(entry.read_text())
            disk_of(Path(info["disk"]), info.get("vm", "?"))
        except (OSError, ValueError, KeyError, TypeError):
            unknown.append(f"the cache's record {entry} cannot be read")
    images = (paths.cache_dir() / "images").resolve()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            target = Path(os.readlink(fd))
        except OSError:
            continue
        if images in target.parents and target.parent.parent == images:
            used.setdefault(target.parent, f"process {fd.parts[2]}")
    return used, unknown


def cached_images() -> list[CachedImage]:
    base = paths.cache_dir() / "images"
    current = {load_recipe(database=db).digest() for db in DATABASE_PACKAGES}
    used, unsure = images_in_use()
    unknown = f"kept: {'; '.join(unsure)}" if unsure else ""
    out = []
    for meta in sorted(base.glob("*/image.json")) if base.is_dir() else []:
        d = meta.parent
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            info = {}
        db = (info.get("recipe") or {}).get("database") or DEFAULT_DATABASE
        status = ("current" if d.name in current else
                  f"in use by {used[d.resolve()]}" if d.resolve() in used else unknown or "stale")
        out.append(CachedImage(d.name, d, db, _size(d), float(info.get("built_at", 0)), status))
    return out


def prune(dry_run: bool = False) -> list[CachedImage]:
    """Remove the stale images (and their build logs); returns what was (or would be) removed."""
    gone = [i for i in cached_images() if i.status == "stale"]
    if not dry_run:
        for i in gone:
            shutil.rmtree(i.directory)
            (i.directory.parent / f"{i.digest}.build.log").unlink(missing_ok=True)
            shutil.rmtree(_users_dir() / i.digest, ignore_errors=True)  # records of deleted disks
    return gone
