"""libvirt's numbers, named: domain states, pause reasons, CPU comparison verdicts, migration
flags, parameters, event codes, and the error codes mapped to availlab's exceptions (`errors`). Kept apart from virt.py, which makes the calls, so that module
stays about the calls; everything here is re-exported there."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import libvirt

from ..errors import CheckpointRefused, DomainNotFoundError, HypervisorError
from .hypervisor import SHUT_OFF, DomainInfo, MigrateRequest  # noqa: F401 - DomainInfo: re-exported, virt.DomainInfo

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting-down", libvirt.VIR_DOMAIN_SHUTOFF: SHUT_OFF,
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


# What a MigrateRequest (lab/hypervisor.py) asks for, as libvirt's flags, named once: the flags
# of every migration (LIVE|PEER2PEER|PERSIST_DEST|UNDEFINE_SOURCE), then one per wish. UNSAFE only
# where the caller proved the storage is shared but libvirt cannot recognise it (the local lab's
# shared directory). copy_disks copies the VM's own disk layer (NON_SHARED_INC): its template base
# is on every host, as a real cluster's templates are.
_ALWAYS = ("LIVE", "PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE")
_WISHES: tuple[tuple[Callable[[MigrateRequest], bool], str], ...] = (
    (lambda r: r.unsafe, "UNSAFE"), (lambda r: r.auto_converge, "AUTO_CONVERGE"),
    (lambda r: r.postcopy, "POSTCOPY"), (lambda r: r.parallel_connections >= 2, "PARALLEL"),
    (lambda r: r.compressed, "COMPRESSED"), (lambda r: bool(r.copy_disks), "NON_SHARED_INC"))


def migrate_flag_names(request: MigrateRequest) -> list[str]:
    return [*_ALWAYS, *(name for wanted, name in _WISHES if wanted(request))]


def migrate_call(request: MigrateRequest) -> tuple[dict[str, Any], int]:
    """libvirt's typed parameters and flags for the request (virDomainMigrateToURI3)."""
    flags = 0
    for name in migrate_flag_names(request):
        flags |= getattr(libvirt, f"VIR_MIGRATE_{name}")
    params: dict[str, Any] = {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{request.address}"} if request.address else {}
    if request.bandwidth_mib_s:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = request.bandwidth_mib_s
    if request.parallel_connections >= 2:
        params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = request.parallel_connections
    if request.copy_disks:
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(request.copy_disks)
    if request.dest_xml:
        params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = request.dest_xml
    return params, flags


def _names(prefix: str) -> dict[int, str]:
    return {getattr(libvirt, n): n[len(prefix):].lower() for n in dir(libvirt)
            if n.startswith(prefix) and n[len(prefix):].isupper() and "_" not in n[len(prefix):]}


# libvirt's lifecycle events and their reasons, by libvirt's own names (suspended/migrated, …):
# what HypervisorAPI.on_domain_events delivers, so that no event module reads libvirt's numbers
EVENT_NAMES = _names("VIR_DOMAIN_EVENT_")
EVENT_DETAIL_NAMES = {ev: {getattr(libvirt, n): n[len(f"VIR_DOMAIN_EVENT_{name.upper()}_"):].lower()
                           for n in dir(libvirt) if n.startswith(f"VIR_DOMAIN_EVENT_{name.upper()}_")}
                      for ev, name in EVENT_NAMES.items()}


def lifecycle_names(event: int, detail: int) -> tuple[str, str]:
    return EVENT_NAMES.get(event, str(event)), EVENT_DETAIL_NAMES.get(event, {}).get(detail, str(detail))
# A completed job's statistics, read without clearing them: libvirt forgets them at the first
# read otherwise, and the reader may not be the only one (availlab's migration, a watcher, the
# operator's own tool, an orchestrator): an observer must not take away what it measures.
COMPLETED_KEPT = libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED


# a redefined checkpoint whose bitmap is not in the disk (REDEFINE_VALIDATE), or one that does not
# fit this domain at all (a description of another VM of that name)
CHECKPOINT_REFUSED: dict[int, type[HypervisorError]] = {libvirt.VIR_ERR_CHECKPOINT_INCONSISTENT: CheckpointRefused,
                                                        libvirt.VIR_ERR_INVALID_ARG: CheckpointRefused}


@contextlib.contextmanager
def errors(host: str, what: str, exc_type: type[HypervisorError] = HypervisorError,
           codes: dict[int, type[HypervisorError]] | None = None) -> Iterator[None]:
    """libvirt's error as availlab's: DomainNotFoundError, one of `codes`, else `exc_type`."""
    try:
        yield
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        known: dict[int, type[HypervisorError]] = {libvirt.VIR_ERR_NO_DOMAIN: DomainNotFoundError, **(codes or {})}
        cls = known.get(code, exc_type)
        raise cls(f"{host}: {what}: {exc.get_error_message() or exc}", code=code, host=host) from None
