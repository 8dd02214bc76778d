"""Retention: keep each VM's newest N restore points at a site, and every set they build on.

Without it the DR site grows by a full copy of every chain, forever. A set is removed only if no
kept set depends on it (a kept incremental keeps its parents back to their full; a kept
differential keeps its full), so what is kept always restores. Nothing is removed unless asked:
by default `prune` only says what would go.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .. import names, paths
from ..errors import AvailLabError, UsageError
from ..lab import state
from ..lab.providers import locate_vm, provider
from ..lab.state import LabState
from ..progress import step
from . import checkpoints, instant
from .catalog import SITES, BackupSet, list_sets, site_dir


@dataclass
class Pruning:
    site: str
    keep: int
    kept: list[BackupSet] = field(default_factory=list)
    removed: list[BackupSet] = field(default_factory=list)
    applied: bool = False

    @property
    def freed_bytes(self) -> int:
        return sum(b.size_bytes for b in self.removed)


def plan(sets: list[BackupSet], keep: int, in_use: frozenset[str] = frozenset()
         ) -> tuple[list[BackupSet], list[BackupSet]]:
    """(kept, removed): per VM, its `keep` newest sets and, for each, its chain back to the full;
    also every set in `in_use` (a VM instantly restored from it still reads it) and its chain."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise UsageError(f"keep: must be a whole number of at least 1 (got {keep!r}); "
                         "removing every restore point of a VM is `rm`, not retention")
    by_id = {b.id: b for b in sets}
    needed: set[str] = set()
    roots = [by_id[i] for i in in_use if i in by_id]
    for vm in {b.vm for b in sets}:
        roots += sorted((b for b in sets if b.vm == vm), key=lambda b: (b.time, b.id))[-keep:]
    for b in roots:
        cur: BackupSet | None = b
        while cur is not None and cur.id not in needed:
            needed.add(cur.id)
            cur = by_id.get(cur.parent) if cur.parent else None
    return [b for b in sets if b.id in needed], [b for b in sets if b.id not in needed]


def prune(st: LabState, site: str, keep: int, apply: bool = False) -> Pruning:
    if site not in SITES:
        raise UsageError(f"site: must be one of {', '.join(SITES)} (got {site!r})")
    with state.locked(st.lab):  # one prune, replication or restore's start at a time
        fresh = state.require_up(st.lab)  # the sets restores recorded since `st` was read
        sets = list_sets(fresh, site)
        kept, removed = plan(sets, keep, frozenset(instant.in_use(fresh, sets)))
        out = Pruning(site, keep, kept, removed)
        if not apply:
            return out
        root = site_dir(st, site)
        for b in sorted(removed, key=lambda b: (b.time, b.id), reverse=True):  # children first: a prune
            d = names.inside(root, Path(b.directory), "set")                  # cut short leaves whole chains
            (d / "set.json").unlink()  # first: from here on no reader takes it for a set
            paths.fsync(d)
            shutil.rmtree(d)
            step(f"removed backup set {b.id} from the {site} site ({b.size_bytes / 2**20:.0f} MiB)")
        if site == "primary":
            _retire_checkpoints(st, removed)
        out.applied = True
        return out


def _retire_checkpoints(st: LabState, removed: list[BackupSet]) -> None:
    """A removed set's checkpoint can never be a parent again (an incremental's parent is the
    newest set, a differential's the newest full: both kept), and libvirt keeps every checkpoint's
    bitmap recording every write: delete it where the VM runs now. A VM that does not run keeps
    its descriptions, for a later prune; nothing here fails the prune."""
    for vm in sorted({b.vm for b in removed}):
        where = locate_vm(st, vm) if vm in st.vms else None
        if not where or where[1] != "running":
            continue
        try:
            with provider(st).connect(st.hosts[where[0]]) as hv:
                checkpoints.adopt(st, hv, vm)
                known = set(hv.checkpoints(vm))
                for b in (b for b in removed if b.vm == vm):
                    if b.checkpoint in known:
                        hv.delete_checkpoint(vm, b.checkpoint)
                    checkpoints.forget(st, vm, b.checkpoint)
        except AvailLabError as exc:
            step(f"checkpoints of {vm} kept (they cost a little on each write, nothing else): {exc}")
