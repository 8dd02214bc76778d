"""Replicate backup sets to the DR site: checksums verified before and after, resumable.

A set is copied into `<dr>/<id>.partial/` and renamed into place only when every file's sha256
matches the catalogue, so the DR site never holds a set that looks complete and is not. An
interrupted copy resumes: a partial file whose bytes match the source's prefix is continued,
anything else is copied again. Parents go first; a chain with a missing link is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..errors import BackupError
from ..lab import state
from ..lab.state import LabState
from ..progress import step
from .catalog import BackupSet, chain, site_dir, verify

CHUNK = 4 << 20


@dataclass(frozen=True)
class Replication:
    set_ids: list[str]
    bytes_copied: int
    seconds: float

    @property
    def mib_s(self) -> float:
        return self.bytes_copied / 2**20 / self.seconds if self.seconds > 0 else 0.0

    def _repr_markdown_(self) -> str:
        return (f"Replicated {', '.join(self.set_ids) or 'nothing (already at the DR site)'}: "
                f"{self.bytes_copied / 2**20:.1f} MiB in {self.seconds:.1f} s ({self.mib_s:.0f} MiB/s), "
                "checksums verified at the DR site.")


def _prefix_matches(src: Path, part: Path) -> bool:
    n = part.stat().st_size
    if n > src.stat().st_size:
        return False
    ha, hb = hashlib.sha256(), hashlib.sha256()
    with open(src, "rb") as a, open(part, "rb") as b:
        left = n
        while left:
            k = min(CHUNK, left)
            ha.update(a.read(k))
            hb.update(b.read(k))
            left -= k
    return ha.digest() == hb.digest()


def _copy_resumable(src: Path, dst: Path) -> int:
    start = dst.stat().st_size if dst.exists() and _prefix_matches(src, dst) else 0
    copied = 0
    fd = os.open(dst, os.O_RDWR | os.O_CREAT, 0o600)  # a set holds the database: never world-readable
    os.fchmod(fd, 0o600)
    with open(src, "rb") as a, open(fd, "r+b") as b:
        a.seek(start)
        b.seek(start)
        b.truncate()
        while chunk := a.read(CHUNK):
            b.write(chunk)
            copied += len(chunk)
        b.flush()
        os.fsync(b.fileno())  # verified from the disk, not from the page cache, before it counts
    return copied


def _replicate_one(bset: BackupSet, dest_root: Path) -> int:
    final = dest_root / bset.id
    part = dest_root / f"{bset.id}.partial"
    paths.private_dir(part)
    copied = 0
    for f in bset.files + [{"name": "set.json"}]:
        copied += _copy_resumable(Path(bset.directory) / f["name"], part / f["name"])
    copy = BackupSet(**{**bset.__dict__, "site": "dr", "directory": str(part)})
    try:
        verify(copy)
    except BackupError as exc:
        shutil.rmtree(part, ignore_errors=True)
        raise BackupError(f"replication of {bset.id} arrived damaged, removed it: {exc}") from None
    paths.fsync(part)
    part.rename(final)
    paths.fsync(dest_root)
    return copied


def replicate(st: LabState, set_id: str, dest: Path | None = None) -> Replication:
    with state.locked(st.lab):  # two replications of one chain would write the same .partial copies
        return _replicate(st, set_id, dest)


def _replicate(st: LabState, set_id: str, dest: Path | None) -> Replication:
    dest_root = dest or site_dir(st, "dr")
    dest_root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    done, copied = [], 0
    for bset in chain(st, set_id, "primary"):
        if (dest_root / bset.id / "set.json").is_file():
            continue  # already there (verified when it arrived)
        verify(bset)  # never ship a set that is already damaged
        step(f"replicating {bset.id} ({bset.size_bytes / 2**20:.0f} MiB) to {dest_root}")
        copied += _replicate_one(bset, dest_root)
        done.append(bset.id)
    return Replication(done, copied, time.monotonic() - t0)
