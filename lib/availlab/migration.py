"""Live-migrate a lab VM between hosts through the one libvirt module.

Foundation level: one peer-to-peer live migration, its completed job statistics (read on the
destination, where libvirt keeps them once the job is over) and a check that the VM now runs on
the target. The live-migration runbook builds phases, tuning and plans on top of this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MigrationError, UsageError
from .lab import locate_vm
from .progress import step
from .state import LabState
from .virt import MIGRATE_PARAM_URI, Hypervisor, migrate_flags


@dataclass(frozen=True)
class MigrationResult:
    vm: str
    source: str
    target: str
    t_start_ns: int
    t_end_ns: int
    downtime_ms: float | None
    total_ms: float | None
    stats: dict = field(default_factory=dict)


def shared_storage_checked(st: LabState, vm: str) -> bool:
    """The local lab's disks are one directory every host namespace sees; prove it for this VM.

    libvirt cannot recognise a plain directory as shared, so it demands VIR_MIGRATE_UNSAFE; we
    only pass that flag after checking the disk really lies in the lab's shared directory.
    """
    disk = Path(st.vms[vm].disk).resolve()
    shared = Path(st.shared_dir).resolve()
    return disk.is_file() and shared in disk.parents


def migrate(st: LabState, vm: str, target: str) -> MigrationResult:
    if target not in st.hosts:
        raise UsageError(f"target: unknown host {target!r} (hosts: {', '.join(st.hosts)})")
    where = locate_vm(st, vm)
    if where is None or where[1] != "running":
        raise UsageError(f"vm: {vm!r} is not running on any host of lab {st.lab!r}")
    source = where[0]
    if source == target:
        raise UsageError(f"target: {vm} already runs on {target}; pick another host")
    if not shared_storage_checked(st, vm):
        raise MigrationError(f"{vm}: disk {st.vms[vm].disk} is not on the lab's shared storage")
    src, dst = st.hosts[source], st.hosts[target]
    params = {MIGRATE_PARAM_URI: f"tcp://{dst.address}"}
    step(f"migrating {vm}: {source} -> {target}")
    with Hypervisor(src.name, src.uri) as s_hv, Hypervisor(dst.name, dst.uri) as d_hv:
        t0 = time.monotonic_ns()
        s_hv.migrate(vm, dst.uri, params=params, flags=migrate_flags(unsafe=True))
        t1 = time.monotonic_ns()
        stats = d_hv.job_stats(vm, completed=True)
        running = [d for d in d_hv.domains() if d.name == vm and d.state == "running"]
    if not running:
        raise MigrationError(f"{vm}: migration reported success but {target} does not run it")
    result = MigrationResult(vm, source, target, t0, t1, stats.get("downtime"),
                             stats.get("time_elapsed"), stats)
    step(f"migrated {vm} to {target} in {(t1 - t0) / 1e6:.0f} ms "
         f"(hypervisor downtime {result.downtime_ms} ms)")
    return result
