"""The one place that talks to libvirt (libvirt-python, never virsh).

Every libvirt call goes through a Hypervisor, which maps libvirt.libvirtError to availlab's own
exceptions naming the host and the operation, so runbooks and the CLI never see a raw libvirt
traceback. The local lab and a real cluster differ only in the URIs they hand in here.
"""

from __future__ import annotations

import contextlib
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import libvirt

from ..errors import DomainNotFoundError, MigrationError
from .virt_backup import BackupCalls
from .virt_const import (  # noqa: F401 - re-exported: callers name them virt.X
    _PAUSE_REASONS,
    _STATES,
    CHECKPOINT_REFUSED,
    COMPLETED_KEPT,
    DomainInfo,
    _cpu_verdict,
    errors,
    lifecycle_names,
    migrate_call,
    migrate_flag_names,
)

if TYPE_CHECKING:
    from .hypervisor import DomainEventCallback, MigrateRequest

_init_lock = threading.Lock()
_initialised = False


def _init_libvirt() -> None:
    """Once per process, before the first connection: silence libvirt's stderr printing (we raise
    instead) and run libvirt's event loop in a daemon thread, so domain events (suspended,
    resumed, migration iteration) arrive with timestamps taken as they happen."""
    global _initialised
    with _init_lock:
        if _initialised:
            return
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()

        def _loop() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=_loop, name="libvirt-events", daemon=True).start()
        _initialised = True


class Hypervisor(BackupCalls):
    """A connection to one host's libvirtd. `guard(domain, action)` is asked before any change to
    a domain and raises to refuse it: the provider's allow-list (provider.Provider.connect)."""

    def __init__(self, name: str, uri: str, guard: Callable[[str, str], None] | None = None,
                 identity: Callable[[str, str], None] | None = None, read_only: bool = False):
        """`read_only`: libvirt's own read-only connection (virConnectOpenReadOnly): the daemon
        refuses every change on it, whatever this code asks; what an observer of someone else's
        hosts opens (events/watchers.py)."""
        _init_libvirt()
        self.name = name
        self.uri = uri
        self.guard = guard
        self.identity = identity  # (domain, its UUID): asked once the domain to change is looked up
        self.read_only = read_only
        with errors(name, f"cannot connect to libvirt at {uri}" + (" (read-only)" if read_only else "")):
            self._conn = libvirt.openReadOnly(uri) if read_only else libvirt.open(uri)

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.close()

    def another(self) -> Hypervisor:
        """A new connection to the same host, guarded the same way: for a thread of its own."""
        return Hypervisor(self.name, self.uri, guard=self.guard, identity=self.identity, read_only=self.read_only)

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # host facts -----------------------------------------------------------------------------
    def host_uuid(self) -> str:
        with errors(self.name, "read capabilities"):
            caps = ET.fromstring(self._conn.getCapabilities())
        return caps.findtext("host/uuid", "")

    def versions(self) -> dict[str, int]:
        with errors(self.name, "read versions"):
            return {"libvirt": self._conn.getLibVersion(), "hypervisor": self._conn.getVersion()}

    def host_cpu_xml(self) -> str:
        """The host's CPU as its capabilities describe it (the form compareCPU accepts)."""
        with errors(self.name, "read capabilities"):
            cpu = ET.fromstring(self._conn.getCapabilities()).find("host/cpu")
        return ET.tostring(cpu, encoding="unicode") if cpu is not None else ""

    def compare_cpu(self, cpu_xml: str) -> str:
        """Host CPU against host CPU (compareCPU): identical | superset | incompatible."""
        with errors(self.name, "compare CPUs"):
            return _cpu_verdict(self._conn.compareCPU(cpu_xml, 0))

    def compare_vm_cpu(self, domain_xml: str) -> str:
        """Can this host's hypervisor give a VM the CPU its (live) XML describes? Asked of the
        hypervisor (compareHypervisorCPU), not of the host CPU: under TCG, or with a named model on
        KVM, what QEMU here can provide is what decides whether the VM can migrate here."""
        root = ET.fromstring(domain_xml)
        cpu = root.find("cpu")
        if cpu is None or cpu.find("model") is None:
            return "not compared (" + (cpu.get("mode", "") if cpu is not None else "hypervisor default") + ")"
        os_type = root.find("os/type")
        with errors(self.name, "compare the VM's CPU with this hypervisor"):
            return _cpu_verdict(self._conn.compareHypervisorCPU(
                None, os_type.get("arch") if os_type is not None else None,
                os_type.get("machine") if os_type is not None else None, root.get("type"),
                ET.tostring(cpu, encoding="unicode"), 0))

    def pool_target(self, pool: str) -> str | None:
        """The target path of an active storage pool, None if this host has no such active pool."""
        try:
            p = self._conn.storagePoolLookupByName(pool)
        except libvirt.libvirtError:
            return None
        with errors(self.name, f"read storage pool {pool}"):
            if not p.isActive():
                return None
            p.refresh(0)
            return ET.fromstring(p.XMLDesc(0)).findtext("target/path")

    def hostname(self) -> str:
        with errors(self.name, "read the host name"):
            return self._conn.getHostname()

    def pools(self) -> dict[str, str]:
        """Every active storage pool and its target path (a pool without one, e.g. rbd, has '')."""
        with errors(self.name, "list storage pools"):
            return {p.name(): ET.fromstring(p.XMLDesc(0)).findtext("target/path") or ""
                    for p in self._conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)}

    def refresh_pools(self) -> None:
        """Rescan every active pool: volumes another host created are unknown here until then."""
        with errors(self.name, "refresh storage pools"):
            for p in self._conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
                p.refresh(0)

    def volume_visible(self, path: str) -> bool:
        """Does a storage pool on this host hold `path`, as of the last refresh_pools()?"""
        try:
            self._conn.storageVolLookupByPath(path)
            return True
        except libvirt.libvirtError:
            return False

    # domains --------------------------------------------------------------------------------
    def _domain(self, name: str) -> libvirt.virDomain:
        with errors(self.name, f"look up VM {name}"):
            return self._conn.lookupByName(name)

    def _changing(self, name: str, action: str) -> libvirt.virDomain:
        """The domain, for a change the guard allows."""
        if self.guard:
            self.guard(name, action)
        dom = self._domain(name)
        if self.identity:
            with errors(self.name, f"read the UUID of VM {name}"):
                uuid = dom.UUIDString()
            self.identity(name, uuid)
        return dom

    def has_domain(self, name: str) -> bool:
        try:
            self._domain(name)
            return True
        except DomainNotFoundError:
            return False

    def domains(self) -> list[DomainInfo]:
        """Every VM defined on the host. One that leaves between the listing and the questions
        (a migration away undefines it at the source) is not there any more, not an error: seen
        once in 20 default runbook runs, as 'Domain not found' from a fault-matrix lookup."""
        out = []
        with errors(self.name, "list VMs"):
            doms = self._conn.listAllDomains()
        for d in doms:
            try:
                out.append(DomainInfo(d.name(), d.UUIDString(), _STATES.get(d.state()[0], "unknown"),
                                      bool(d.isPersistent()), self.name))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    with errors(self.name, "list VMs"):
                        raise
        return out

    def domain_xml(self, name: str, inactive: bool = False, migratable: bool = False) -> str:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        if migratable:
            flags |= libvirt.VIR_DOMAIN_XML_MIGRATABLE
        with errors(self.name, f"read XML of VM {name}"):
            return self._domain(name).XMLDesc(flags)

    def disk_paths(self, name: str) -> list[str]:
        """Writable file disks of a VM: what must be on shared storage for it to migrate."""
        root = ET.fromstring(self.domain_xml(name))
        sources = [(d, d.find("source")) for d in root.findall("devices/disk") if d.get("type") == "file"]
        return [file for d, src in sources if src is not None and d.find("readonly") is None
                and (file := src.get("file"))]

    def _changing_xml(self, xml: str, action: str) -> str:
        """The name of the domain `xml` describes, for a change the guard allows."""
        name = ET.fromstring(xml).findtext("name") or ""
        if self.guard:
            self.guard(name, action)
        return name

    def define(self, xml: str) -> str:
        self._changing_xml(xml, "define")
        with errors(self.name, "define VM"):
            return self._conn.defineXML(xml).name()

    def create(self, xml: str) -> None:
        """Start a transient domain (gone once it stops or is saved): a template being built."""
        self._changing_xml(xml, "create")
        with errors(self.name, "create VM"):
            self._conn.createXML(xml, 0)

    def save(self, name: str, path: str) -> None:
        """Save memory and device state to `path` and stop the domain (virDomainSave)."""
        with errors(self.name, f"save VM {name} to {path}"):
            self._changing(name, "save").save(path)

    def restore(self, path: str, xml: str) -> None:
        """Start a domain from a saved state, with the host-side parts of its XML (names and
        file paths) replaced by `xml`; libvirt checks that the rest is ABI-identical."""
        name = self._changing_xml(xml, "restore")
        with errors(self.name, f"restore VM {name} from {path}"):
            self._conn.restoreFlags(path, xml, libvirt.VIR_DOMAIN_SAVE_RUNNING)

    def start(self, name: str) -> None:
        with errors(self.name, f"start VM {name}"):
            self._changing(name, "start").create()

    def destroy(self, name: str) -> bool:
        """Power off hard; False if it was not running."""
        dom = self._changing(name, "destroy")
        with errors(self.name, f"destroy VM {name}"):
            if not dom.isActive():
                return False
            dom.destroy()
            return True

    def undefine(self, name: str) -> None:
        dom = self._changing(name, "undefine")
        with errors(self.name, f"undefine VM {name}"):
            if dom.isPersistent():
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                                  | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                                  | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)

    # migration ------------------------------------------------------------------------------
    def migrate(self, name: str, dest_uri: str, request: MigrateRequest) -> None:
        """Peer-to-peer migration: the source daemon drives it and talks to dest_uri itself.

        For the local lab dest_uri must be qemu+unix://...: a plain qemu:///system?socket= URI is
        opened in-process by the source daemon, which then sees "the same host".
        """
        dom = self._changing(name, "migrate")
        params, flags = migrate_call(request)
        with errors(self.name, f"migrate VM {name} to {dest_uri}", MigrationError):
            dom.migrateToURI3(dest_uri, params, flags)

    def migration_flags(self, request: MigrateRequest) -> list[str]:
        return migrate_flag_names(request)

    def set_max_downtime(self, name: str, ms: int) -> None:
        with errors(self.name, f"set max downtime of VM {name}"):
            self._changing(name, "set max downtime").migrateSetMaxDowntime(ms, 0)

    def start_postcopy(self, name: str) -> None:
        with errors(self.name, f"switch VM {name} to post-copy", MigrationError):
            self._changing(name, "switch to post-copy").migrateStartPostCopy(0)

    def abort_job(self, name: str) -> None:
        with errors(self.name, f"abort job of VM {name}", MigrationError):
            self._changing(name, "abort job").abortJob()

    def vm_usage(self) -> dict[str, dict]:
        """Running VMs: cumulative CPU time (ns) and current memory (KiB), for the monitor."""
        with errors(self.name, "read VM CPU times"):
            doms = self._conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        out = {}
        for d in doms:
            try:
                _state, _max, mem_kib, _vcpus, cpu_ns = d.info()
                out[d.name()] = {"cpu_ns": cpu_ns, "mem_kib": mem_kib}
            except libvirt.libvirtError:
                continue  # it left (migrated away, powered off) between listing and reading
        return out

    def pause_reason(self, name: str) -> str | None:
        """Why the VM is paused ("ioerror": QEMU held a failed disk write, see werror=enospc;
        "user": someone asked; "migration", "postcopy-failed", …), or None if it is not paused.
        Only some pauses are safe to end from outside: the reason decides."""
        with errors(self.name, f"read the state of VM {name}"):
            state, reason = self._domain(name).state()
        return _PAUSE_REASONS.get(reason, f"reason {reason}") if state == libvirt.VIR_DOMAIN_PAUSED else None

    def disk_errors(self, name: str) -> dict[str, str]:
        """The disks QEMU recorded a write error on, and which ("no space" or "error")."""
        with errors(self.name, f"read the disk errors of VM {name}"):
            found = self._domain(name).diskErrors()
        return {d: ("no space" if e == libvirt.VIR_DOMAIN_DISK_ERROR_NO_SPACE else "error")
                for d, e in found.items() if e != libvirt.VIR_DOMAIN_DISK_ERROR_NONE}

    def resume(self, name: str) -> None:
        """Resume a paused VM; QEMU retries a write it held when it paused on a write error."""
        with errors(self.name, f"resume VM {name}"):
            self._changing(name, "resume").resume()

    def job_active(self, name: str) -> bool:
        dom = self._domain(name)
        try:
            return dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
        except libvirt.libvirtError as exc:
            # a backup job that is starting exists before its data does: libvirt says so
            if "job data missing" in (exc.get_error_message() or ""):
                return True
            with errors(self.name, f"read job of VM {name}"):
                raise

    def finished_job(self, name: str) -> tuple[bool, str]:
        """How the VM's last job ended: (completed?, libvirt's error message if it did not)."""
        with errors(self.name, f"read the finished job of VM {name}"):
            stats = self._domain(name).jobStats(COMPLETED_KEPT)
        kind = stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE)
        if kind == libvirt.VIR_DOMAIN_JOB_COMPLETED:
            return True, ""
        return False, stats.get(libvirt.VIR_DOMAIN_JOB_ERRMSG) or f"job ended with type {kind}"

    def on_domain_events(self, vm: str, callback: DomainEventCallback) -> list[int]:
        """callback(kind, detail, t_ns) for VM `vm` on this host: kind is "lifecycle" (detail =
        (event, reason) by libvirt's names, e.g. ("suspended", "migrated")) or "iteration" (detail
        = iteration number). Returns handles for remove_callbacks. Registered for all domains and
        filtered by name, because on a migration target the domain does not exist yet when we
        subscribe."""
        import time as _time

        def lifecycle(_conn, dom, event, detail, _opaque):
            if dom.name() == vm:
                callback("lifecycle", lifecycle_names(event, detail), _time.monotonic_ns())

        def iteration(_conn, dom, it, _opaque):
            if dom.name() == vm:
                callback("iteration", it, _time.monotonic_ns())

        with errors(self.name, "subscribe to domain events"):
            return [
                self._conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None),
                self._conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
                                                 iteration, None),
            ]

    def remove_callbacks(self, handles: list[int]) -> None:
        for h in handles:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.domainEventDeregisterAny(h)

    def job_stats(self, name: str, completed: bool = False) -> dict[str, Any]:
        flags = COMPLETED_KEPT if completed else 0
        with errors(self.name, f"read job stats of VM {name}"):
            return dict(self._domain(name).jobStats(flags))
