"""What the guest-image cache holds, and which of it can go.

Every edit of the guest recipe builds a new ~600 MiB image beside the old ones (that is what
keeps an interrupted or changed build from touching a working image), so the cache grows. An
image may be removed only if it is no profile's current recipe and no VM of any lab still uses
it as a backing file: a VM's disk is a thin overlay, and deleting its base would destroy it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .image import DATABASE_PACKAGES, load_recipe
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


def backing_files(disk: Path) -> list[Path]:
    """Every file under a qcow2 disk's backing chain (the disk itself excluded)."""
    r = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", str(disk)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return []
    chain = json.loads(r.stdout)
    return [Path(layer["filename"]).resolve() for layer in chain[1:] if layer.get("filename")]


def images_in_use() -> tuple[dict[Path, str], list[str]]:
    """({image directory: "lab/vm"} for every VM disk of every lab that has state, [labs whose
    state could not be read]): with any of the latter, nothing can be called unused."""
    used: dict[Path, str] = {}
    unreadable: list[str] = []
    root = paths.state_root()
    for state_file in sorted(root.glob("*/state.json")) if root.is_dir() else []:
        try:
            st = load_state(state_file.parent.name)
        except (OSError, ValueError, TypeError):
            unreadable.append(state_file.parent.name)
            continue
        for vm in (st.vms.values() if st else []):
            if vm.disk and Path(vm.disk).is_file():
                for f in backing_files(Path(vm.disk)):
                    used.setdefault(f.parent, f"{st.lab}/{vm.name}")
    return used, unreadable


def cached_images() -> list[CachedImage]:
    base = paths.cache_dir() / "images"
    current = {load_recipe(database=db).digest() for db in DATABASE_PACKAGES}
    used, unreadable = images_in_use()
    unknown = f"kept: the state of lab {', '.join(unreadable)} cannot be read" if unreadable else ""
    out = []
    for meta in sorted(base.glob("*/image.json")) if base.is_dir() else []:
        d = meta.parent
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            info = {}
        db = (info.get("recipe") or {}).get("database") or "postgresql"
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
    return gone
