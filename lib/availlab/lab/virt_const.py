"""libvirt's numbers, named: domain states, pause reasons, CPU comparison verdicts, migration
flags, parameters, event codes, and the error codes mapped to availlab's exceptions (`errors`). Kept apart from virt.py, which makes the calls, so that module
stays about the calls; everything here is re-exported there."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import libvirt

from ..errors import DomainNotFoundError, HypervisorError


@dataclass(frozen=True)
class DomainInfo:
    """A domain as listed: enough to find a VM and tell whether the lab owns it."""
    name: str
    uuid: str
    state: str
    persistent: bool
    host: str


_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting-down", libvirt.VIR_DOMAIN_SHUTOFF: "shut-off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}
_PAUSE_REASONS = {
    libvirt.VIR_DOMAIN_PAUSED_USER: "user", libvirt.VIR_DOMAIN_PAUSED_IOERROR: "ioerror",
    libvirt.VIR_DOMAIN_PAUSED_MIGRATION: "migration", libvirt.VIR_DOMAIN_PAUSED_POSTCOPY: "postcopy",
    libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED: "postcopy-failed", libvirt.VIR_DOMAIN_PAUSED_SAVE: "save",
    libvirt.VIR_DOMAIN_PAUSED_SNAPSHOT: "snapshot", libvirt.VIR_DOMAIN_PAUSED_STARTING_UP: "starting-up",
}


def _cpu_verdict(r: int) -> str:
    return {libvirt.VIR_CPU_COMPARE_IDENTICAL: "identical", libvirt.VIR_CPU_COMPARE_SUPERSET: "superset",
            libvirt.VIR_CPU_COMPARE_INCOMPATIBLE: "incompatible"}.get(r, f"error {r}")


def migrate_flags(*, unsafe: bool, auto_converge: bool = False, postcopy: bool = False,
                  parallel: bool = False, compressed: bool = False, copy_storage: bool = False) -> int:
    """LIVE|PEER2PEER|PERSIST_DEST|UNDEFINE_SOURCE, plus UNSAFE only where the caller proved the
    storage is shared but libvirt cannot recognise it (the local lab's shared directory).
    copy_storage copies the VM's own disk layer (NON_SHARED_INC): its template base is on every
    host, as a real cluster's templates are."""
    f = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
         | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
    for wanted, flag in ((unsafe, libvirt.VIR_MIGRATE_UNSAFE),
                         (auto_converge, libvirt.VIR_MIGRATE_AUTO_CONVERGE),
                         (postcopy, libvirt.VIR_MIGRATE_POSTCOPY),
                         (parallel, libvirt.VIR_MIGRATE_PARALLEL),
                         (compressed, libvirt.VIR_MIGRATE_COMPRESSED),
                         (copy_storage, libvirt.VIR_MIGRATE_NON_SHARED_INC)):
        if wanted:
            f |= flag
    return f


MIGRATE_PARAM_URI = libvirt.VIR_MIGRATE_PARAM_URI
MIGRATE_PARAM_BANDWIDTH = libvirt.VIR_MIGRATE_PARAM_BANDWIDTH
MIGRATE_PARAM_PARALLEL_CONNECTIONS = libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS
MIGRATE_PARAM_MIGRATE_DISKS = libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS
MIGRATE_PARAM_DEST_XML = libvirt.VIR_MIGRATE_PARAM_DEST_XML
EV_SUSPENDED = libvirt.VIR_DOMAIN_EVENT_SUSPENDED
EV_RESUMED = libvirt.VIR_DOMAIN_EVENT_RESUMED
EV_SUSPENDED_MIGRATED = libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED
EV_SUSPENDED_POSTCOPY = libvirt.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY
EV_RESUMED_MIGRATED = libvirt.VIR_DOMAIN_EVENT_RESUMED_MIGRATED
EV_RESUMED_POSTCOPY = libvirt.VIR_DOMAIN_EVENT_RESUMED_POSTCOPY
# A completed job's statistics, read without clearing them: libvirt forgets them at the first
# read otherwise, and the reader may not be the only one (availlab's migration, a watcher, the
# operator's own tool, an orchestrator): an observer must not take away what it measures.
COMPLETED_KEPT = libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED


# a redefined checkpoint whose bitmap is not in the disk (REDEFINE_VALIDATE)
CHECKPOINT_INCONSISTENT = libvirt.VIR_ERR_CHECKPOINT_INCONSISTENT
# ... or one that does not fit this domain at all (a description of another VM of that name)
CHECKPOINT_FOREIGN = libvirt.VIR_ERR_INVALID_ARG


@contextlib.contextmanager
def errors(host: str, what: str, exc_type: type[HypervisorError] = HypervisorError) -> Iterator[None]:
    try:
        yield
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        cls = DomainNotFoundError if code == libvirt.VIR_ERR_NO_DOMAIN else exc_type
        raise cls(f"{host}: {what}: {exc.get_error_message() or exc}", code=code, host=host) from None
