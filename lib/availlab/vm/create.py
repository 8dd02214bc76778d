"""Database VMs of the local lab: create (overlay disk, config disk, domain), wait, delete.

A VM's disk is a qcow2 overlay on the shared storage (the CSV stand-in) backed by the cached
guest image, so every host sees it and creating one takes a second. Its address, name and the
database password reach the guest on a small read-only config disk (0600 on the host), not on
the kernel command line, where the password would show in the domain XML and the guest's /proc.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from .. import durations, paths
from ..clients.sql import wait_for_db
from ..dialects import DEFAULT_DATABASE, dialect
from ..errors import AvailLabError, LabError, UsageError, VMError
from ..lab import state
from ..lab.accel import qemu_version
from ..lab.addressing import mac_for, plan_addresses
from ..lab.credentials import DB_NAME, DB_USER, db_password
from ..lab.defects import guest_kernel_args
from ..lab.hypervisor import SHUT_OFF
from ..lab.image import ensure_image
from ..lab.imagecache import register_user
from ..lab.netns import HOST_BRIDGE
from ..lab.providers import locate_vm, provider, reachable, require_all_hosts
from ..lab.recipe import BOOT_FILES, GuestImage, image_database
from ..lab.state import LabState, VMState
from ..lab.topology import Topology
from ..progress import step
from ..waiting import wait_until
from . import template
from .domain_xml import DomainSpec, render

VM_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
READY_MARKER = "availlab-init: database accepting connections"
FAILED_MARKERS = ("availlab-init: database failed", "Kernel panic", "availlab-init: database started but")
CONFIG_DISK_BYTES = 4096


@dataclass(frozen=True)
class VMReady:
    name: str
    host: str
    address: str
    boot_to_db_s: float  # from its start (cold) or its restore (template) to a database login
    start: str = "cold"  # "cold" | "template"
    template_build_s: float | None = None  # a template built by this create: its boot and save


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not VM_NAME_RE.fullmatch(name):
        raise UsageError(f"vm name {name!r}: use 1-31 lower-case letters, digits or '-', "
                         "starting with a letter")
    return name


def config_disk_bytes(name: str, address: str, password: str) -> bytes:
    text = (f"AVAILLAB_HOSTNAME={name}\nAVAILLAB_ADDRESS={address}\nAVAILLAB_DB_USER={DB_USER}\n"
            f"AVAILLAB_DB_NAME={DB_NAME}\nAVAILLAB_DB_PASSWORD={password}\n").encode()
    if len(text) > CONFIG_DISK_BYTES:
        raise VMError("VM config does not fit its config disk")
    return text.ljust(CONFIG_DISK_BYTES, b"\0")


def domain_spec(st: LabState, vm: VMState, image: GuestImage, memory_mib: int, vcpus: int) -> DomainSpec:
    return DomainSpec(
        name=vm.name, uuid=vm.uuid, lab=st.lab, address=vm.address,
        domain_type=_domain_type(st),
        memory_mib=memory_mib, vcpus=vcpus, kernel=image.kernel, initrd=image.initrd,
        cmdline=guest_cmdline(st, image, vm.database), disk=Path(vm.disk), config_disk=Path(vm.config_disk),
        mac=mac_for(ipaddress.IPv4Address(vm.address.split("/")[0])), bridge=HOST_BRIDGE,
        console_log=Path(vm.console_log), image=image.digest)


def guest_cmdline(st: LabState, image: GuestImage, database: str) -> str:
    """The image's kernel command line, and what works around a known defect of the lab's
    emulator (lab/defects.py: `pti=on` under TCG before QEMU 9.0, for MariaDB's guests)."""
    return " ".join([image.cmdline, *guest_kernel_args(st.accel.get("accel"), qemu_version(),
                                                       dialect(database).one_process)])


def _wait_marker(log: Path, deadline: float) -> None:
    """Fail fast with the console's own words if the guest reports a failure before the DB is up."""
    def ready() -> bool:
        text = log.read_text(errors="replace") if log.exists() else ""
        if READY_MARKER in text:
            return True
        for bad in FAILED_MARKERS:
            if bad in text:
                tail = "\n".join(text.splitlines()[-15:])
                raise VMError(f"guest reported a failure ({bad!r}); console {log}:\n{tail}")
        return False

    if wait_until(ready, deadline - time.monotonic()):
        return
    raise VMError(f"guest did not report a ready database in time; see console log {log}")


def create(lab: str, name: str, host: str, *, memory_mib: int | None = None,
           vcpus: int | None = None, timeout_s: float = 300, database: str = DEFAULT_DATABASE,
           cold: bool = False) -> VMReady:
    """Start a database VM: restored from the booted template of its shape when there is one
    (built by the first VM of that shape, in any lab), else, or with `cold`, booted cold.
    `timeout_s` detects a guest that will not come up; it is no SLO: start → database ready
    took 10-26 s cold under TCG on this machine, and a slow hour must not fail a healthy boot."""
    validate_name(name)
    image_database(database)  # an unknown profile, or one with no guest image, before anything
    st = state.require_up(lab)
    provider(st).require("create_vm")
    topo = Topology.model_validate(st.topology)
    topo.host(host)  # unknown host -> error naming the host and the choices
    image = ensure_image(database)  # may build it (minutes): before the lab's lock is taken
    with provider(st).connect(host) as hv:
        versions = hv.versions()
    with state.locked(lab):  # two creates at once must not both take the last free address
        st = state.require_up(lab)
        where = locate_vm(st, name)
        if name in st.vms or where:
            raise VMError(f"VM {name!r} already exists" + (f" on {where[0]} ({where[1]})" if where else
                          " in lab state; delete it first with `availlab vm delete`"))
        memory_mib = memory_mib or topo.vm.memory_mib
        vcpus = vcpus or topo.vm.vcpus
        plan = plan_addresses(topo)
        used = {ipaddress.IPv4Address(v.address.split("/")[0]) for v in st.vms.values()}
        address = plan.cidr(plan.vm_address(plan.free_vm_index(used)))
        key = None if cold or database not in template.DATABASES else template.TemplateKey(
            image=image.digest, database=database, name=name, memory_mib=memory_mib, vcpus=vcpus, address=address,
            domain_type=_domain_type(st), libvirt=versions["libvirt"], qemu=versions["hypervisor"],
            cmdline=guest_cmdline(st, image, database))
        vmdir = Path(st.shared_dir) / "vms" / name
        vm = VMState(name=name, address=address.split("/")[0], host=host,
                     disk=str(vmdir / "disk.qcow2"), config_disk=str(vmdir / "config.img"),
                     console_log=str(Path(st.shared_dir) / "logs" / f"{name}.console.log"),
                     uuid=key.uuid() if key else str(uuid.uuid4()), created_at=time.time(), database=database)
        st.vms[name] = vm
        state.save(st)  # intent first
    paths.private_dir(vmdir)
    register_user(image.directory, Path(vm.disk), f"{lab}/{name}")  # before the disk exists
    paths.write_private(Path(vm.config_disk), config_disk_bytes(name, address, db_password(lab)))
    Path(vm.console_log).unlink(missing_ok=True)
    xml = render(domain_spec(st, vm, image, memory_mib, vcpus))

    def template_xml(name: str, uuid: str, disk: Path, config_disk: Path, console_log: Path, password: str) -> str:
        paths.write_private(config_disk, config_disk_bytes(name, address, password))
        like = replace(vm, name=name, uuid=uuid, disk=str(disk), config_disk=str(config_disk),
                       console_log=str(console_log))
        return render(replace(domain_spec(st, like, image, memory_mib, vcpus), lab="template"))

    with provider(st).connect(host) as hv:
        restored, built_s = _from_template(hv, st, vm, image, key, xml, template_xml, timeout_s) if key else (None, None)
        how = "template" if restored is not None else "cold"
        if restored is not None:
            t0 = restored
        else:
            step(f"VM {name}: defining on {host} ({memory_mib} MiB, {vcpus} vCPU, {vm.address}, {database}), "
                 "booting cold")
            Path(vm.console_log).unlink(missing_ok=True)  # nothing of a failed restore's console
            t0 = time.monotonic()
            _cold_disk(image, Path(vm.disk))
            hv.define(xml)
            hv.start(name)
    if how == "cold":
        _wait_marker(Path(vm.console_log), t0 + timeout_s)
    reply = wait_for_db(st, name, max(5.0, timeout_s - (time.monotonic() - t0)))
    if not reply.get("ok"):
        raise VMError(f"VM {name}: database did not accept a login from the client namespace: "
                      f"{reply.get('error')} (console: {vm.console_log})")
    ready = round(time.monotonic() - t0, 2)
    with state.update(lab) as fresh:  # not `st`: it was read before a boot of up to minutes
        fresh.timings[f"vm_{name}_{'restore' if how == 'template' else 'boot'}_to_db_s"] = ready
        if name in fresh.vms:
            fresh.vms[name].started_from = f"template {key.digest()}" if key and how == "template" else "cold boot"
    durations.record("vm_template_start" if how == "template" else "vm_cold_boot", ready, database)
    if built_s:
        durations.record("template_build", built_s, database)
    step(f"VM {name}: database ready {ready:.1f} s after {'its restore' if how == 'template' else 'start'} "
         f"(on {host}, {vm.address})")
    return VMReady(name, host, vm.address, ready, how, built_s)


def _from_template(hv, st: LabState, vm: VMState, image: GuestImage, key: template.TemplateKey, xml: str,
                   template_xml, timeout_s: float) -> tuple[float | None, float | None]:
    """Restore `vm` from the template of its shape, built first if there is none. (when the
    restore began, or None when the VM must boot cold; the build's seconds if this call built
    it). Only a template that fails to restore is discarded; a restored VM whose identity could
    not be set is removed and booted cold, its template kept."""
    built_s = None
    if template.find(image, key) is None:
        try:
            made, fresh = template.build(hv, image, key, template_xml, _wait_marker, timeout_s)
            built_s = round(made.boot_s + made.save_s, 2) if fresh else None
        except (AvailLabError, OSError) as exc:
            step(f"template {key.digest()} could not be built ({exc}); booting cold")
            return None, None
    failed: template.RestoreFailed | None = None
    try:
        with template.using(image, key) as t:
            if t is None:
                return None, built_s  # discarded by another lab meanwhile
            step(f"VM {vm.name}: defining on {vm.host} ({vm.address}, {key.database}), restoring from template "
                 f"{key.digest()}")
            t0 = time.monotonic()
            try:
                template.restore(hv, t, vm.name, Path(vm.disk), xml)
            except template.RestoreFailed as exc:
                failed = exc
            except (AvailLabError, OSError) as exc:  # the lab's disk or libvirt, not the template
                step(f"VM {vm.name}: could not be started from template {key.digest()} ({exc}); booting it cold")
                return None, built_s
            else:
                try:
                    template.give_identity(hv, st, vm.name, t, db_password(st.lab))
                    return t0, built_s
                except BaseException as exc:  # never left running with the template's password
                    template.remove_domain(hv, vm.name)
                    if not isinstance(exc, (AvailLabError, OSError)):
                        raise
                    step(f"VM {vm.name}: restored, but its identity could not be set ({exc}); booting it cold")
                    return None, built_s
    except OSError as exc:  # the cache's lock file or directory
        step(f"VM {vm.name}: template {key.digest()} could not be used ({exc}); booting it cold")
        return None, built_s
    template.discard(image, t, f"VM {vm.name} could not be restored from it: {failed}")
    return None, built_s


def _cold_disk(image: GuestImage, disk: Path) -> None:
    r = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        str(image.disk), str(disk)], capture_output=True, text=True)
    if r.returncode != 0:
        raise VMError(f"cannot create disk {disk}: {r.stderr.strip()}")


def _domain_type(st: LabState) -> str:
    return "kvm" if st.accel.get("accel") == "kvm" else "qemu"


REVIVABLE_PAUSES = ("ioerror", "user")  # a held failed write, or someone's request


def revive(lab: str, name: str, timeout_s: float = 300) -> str:
    """A lab VM that exists but does not run is brought back, not wiped: paused by QEMU on a
    failed write or by a user, it is resumed; shut off (a crash, a killed run), it is started;
    then its database is waited for. Only when the VM is defined on exactly one host and no job
    runs on it, and never for a pause of another reason (mid-migration, a failed post-copy), where
    resuming the wrong copy could run two VMs on one disk: those are refused, with the reason."""
    st = state.require_up(lab)
    provider(st).require("revive_vm", vm=name)
    down = [h.name for h in st.hosts.values() if not reachable(st, h)]
    if down:  # a host whose daemon died may still run this VM's QEMU
        raise VMError(f"VM {name!r} does not run, and the libvirtd of {', '.join(down)} is down: not starting "
                      f"or resuming a copy that may run there; `availlab --lab {lab} lab up` repairs the lab")
    defined = []
    for h in st.hosts.values():
        with provider(st).connect(h) as hv:
            defined += [(h.name, d.state) for d in hv.domains() if d.name == name]
    if not defined:
        raise VMError(f"unknown VM {name!r} in lab {lab!r}")
    if len(defined) > 1:
        raise VMError(f"VM {name!r} is defined on {len(defined)} hosts ({defined}): not resuming or starting "
                      "either copy; see `availlab lab status` and remove the copy that should not exist")
    host, now = defined[0]
    if now in ("running", "blocked"):
        return f"{name} runs on {host}"
    h = st.hosts[host]
    with provider(st).connect(h) as hv:
        if now == "paused" and hv.job_active(name):  # a shut-off VM has no job (libvirt refuses to say)
            raise VMError(f"VM {name!r} is paused on {host} with a job (migration or backup) still running on it")
        t0 = time.monotonic()
        if now == "paused":
            why = hv.pause_reason(name)
            if why not in REVIVABLE_PAUSES:
                raise VMError(f"VM {name!r} is paused on {host} ({why}): not resuming it; see `availlab lab status`")
            hv.resume(name)
            time.sleep(1.5)  # QEMU replays a held write: a disk still full pauses the VM again at once
            if hv.pause_reason(name) == "ioerror":
                raise VMError(f"VM {name!r} on {host} paused again on a write error right after its resume "
                              f"({hv.disk_errors(name) or 'disk'}): free its storage, then run again")
            did = f"was paused ({why}) on {host}: resumed"
        elif now == SHUT_OFF:
            if name in st.vms and Path(st.vms[name].console_log).exists():  # kept: how it went down
                log = Path(st.vms[name].console_log)  # (lab down keeps every *.log of the lab)
                log.replace(log.with_name(f"{name}.console.{time.strftime('%Y%m%dT%H%M%S')}.log"))
            hv.start(name)
            did = f"was shut off on {host}: started"
        else:
            raise VMError(f"VM {name!r} is {now} on {host}: not touching it; see `availlab lab status`")
    if now == SHUT_OFF and name in st.vms:
        _wait_marker(Path(st.vms[name].console_log), t0 + timeout_s)
    reply = wait_for_db(st, name, max(5.0, timeout_s - (time.monotonic() - t0)))
    if not reply.get("ok"):
        raise VMError(f"VM {name}: {did}, but its database did not answer: {reply.get('error')}")
    step(f"VM {name} {did}; database answers")
    return f"{name} {did}"


def revive_pending(st: LabState) -> LabState:
    """Start again every VM a rebuild of the lab left in `to_revive`, each on its own (one that
    cannot come back must not keep the rest down), under the lab's lock, as the rebuild was: a
    second `lab up` waits, then finds nothing left to do. A VM leaves the list once it was tried,
    so a run killed half-way leaves the untried ones for the next `lab up`, and one that failed
    is reported once (as the rebuild did), not on every later run: `ensure_vm` tries it again
    for a runbook that uses it. Returns the lab's current state."""
    if not st.to_revive:
        return st
    with state.locked(st.lab):
        st = state.require_up(st.lab)
        pending, back, failed, t0 = list(st.to_revive), 0, [], time.monotonic()
        for name in pending:
            if name in st.vms:  # one deleted since the rebuild has nothing to start
                try:
                    revive(st.lab, name)
                    back += 1
                except AvailLabError as exc:
                    failed.append(f"{name}: {exc}")
            with state.update(st.lab) as fresh:
                fresh.to_revive = [n for n in fresh.to_revive if n != name]
        st = state.require_up(st.lab)
    if back or failed:
        step(f"lab {st.lab!r}: {back} of {back + len(failed)} VM(s) back in {time.monotonic() - t0:.1f} s")
    if failed:
        raise LabError(f"lab {st.lab!r} is up again, but not every VM came back (disks kept; `availlab --lab "
                       f"{st.lab} lab status` shows them; a runbook using one starts it again): " + "; ".join(failed))
    return st


def remove_files(vm: VMState, console: bool = True) -> None:
    """A VM's own files (disk, config disk with its password, console log, the kernel and initrd a
    restored VM boots), then its folder if nothing else is in it."""
    d = Path(vm.disk).parent
    files: list[str | Path] = [vm.disk, vm.config_disk, *([vm.console_log] if console else []),
                               *(d / n for n in BOOT_FILES)]
    for f in files:
        Path(f).unlink(missing_ok=True)
    if d.exists() and not any(d.iterdir()):
        d.rmdir()


def delete(lab: str, name: str) -> list[str]:
    """Power off, undefine and remove one VM of the lab; a bad or unknown name is a usage error."""
    validate_name(name)
    with state.locked(lab):
        st = state.require_up(lab)
        provider(st).require("delete_vm")
        require_all_hosts(st, f"not deleting VM {name!r}")
        removed = []
        where = locate_vm(st, name)
        if where:
            h = st.hosts[where[0]]
            with provider(st).connect(h) as hv:
                if hv.destroy(name):
                    removed.append(f"powered off {name} on {h.name}")
                hv.undefine(name)
                removed.append(f"undefined {name} on {h.name}")
        vm = st.vms.pop(name, None)
        if vm is None and not where:
            raise UsageError(f"vm: unknown VM {name!r} in lab {lab!r} (VMs: {', '.join(st.vms) or 'none'})")
        if vm:
            remove_files(vm)
            removed.append(f"disk and config of {name}")
        kept = state.checkpoint_dir(lab, name)
        if kept.is_dir():  # its disk held those bitmaps: no later VM of this name has them
            shutil.rmtree(kept)
            removed.append(f"checkpoint descriptions of {name}")
        state.save(st)
        return removed
