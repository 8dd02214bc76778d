"""Booted templates: a database VM booted cold once, saved (memory and disk together), and
restored for every later VM of the same shape, database ready in about two seconds instead of
a 10-26 s boot under TCG (the way snapshot restores start microVMs).

What may differ between a template and a VM restored from it is what libvirt leaves free: host
file paths (disks, console). What it checks (the name, seen: "Target domain name 'sql1' does not
match source"; UUID, MAC, the devices, memory, vCPUs, domain type) the key fixes: one template
per image (it lives in the image's cache directory, so its recipe hash is part of the key and a
rebuilt image drops it), database, VM name, memory, vCPUs, address (the address plan gives the
n-th VM of every lab the same address and MAC), domain type, the guest kernel's command line and
the host's libvirt and QEMU versions; its UUID is derived from the key. Two VMs of one lab never share a key (their names
and addresses differ), and labs are isolated from each other (own namespaces, own libvirtd per
host), so a UUID and MAC seen in two labs meet nowhere: `sql1` of every lab starts from one
template.

The template's own secret is replaced before the restored VM is called ready: the lab's
database password (set over ODBC while logged in with the template's password, sent as the
stored hash, never in clear), and the clock (guest agent). The VM gets the lab's config disk,
so a later cold boot of it (revived after a crash or a reboot) reads the same identity.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import secrets
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .. import paths
from ..dialects import DIALECTS, dialect
from ..errors import AvailLabError, DomainNotFoundError, VMError
from ..lab.credentials import DB_USER, scrub
from ..lab.hypervisor import HypervisorAPI
from ..lab.recipe import GuestImage
from ..lab.state import LabState
from ..progress import step
from ..waiting import wait_until
from .guest import exec_wait

TEMPLATE_VERSION = 3  # bump when what a template holds changes (2: saved at rest, after sync; 3: cmdline in the key)
UUID_NAMESPACE = uuid.UUID("5f0e8a51-3c47-4d0a-9a51-7b1e4f2a9c10")
QUIESCE_S = 3.0  # after the first sync, before the save: the database's start-up writes settle
# Databases whose template-started VMs are proven under the runbooks (tests/integration). One
# MariaDB VM restored from a version-1 template, saved without the rest period, hung in a guest
# block-layer worker (soft lockup, kworker/0:1H) at its first migration: memory saved with block
# I/O in flight. Saved at rest (version 2), 13 of 13 repeated runs (restore, 4 clients, two
# migrations) showed no lockup, and the MariaDB integration test fails on one in the console.
DATABASES = frozenset(n for n, d in DIALECTS.items() if d.templatable)


@dataclass(frozen=True)
class TemplateKey:
    image: str
    database: str
    name: str  # libvirt refuses to restore a saved domain under another name
    memory_mib: int
    vcpus: int
    address: str  # with its prefix length, as the guest configures it
    domain_type: str
    libvirt: int
    qemu: int
    cmdline: str = ""  # the saved guest booted with it (lab/defects.py may add to it)
    version: int = TEMPLATE_VERSION

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def uuid(self) -> str:
        return str(uuid.uuid5(UUID_NAMESPACE, self.digest()))


@dataclass(frozen=True)
class Template:
    directory: Path
    key: TemplateKey
    boot_s: float
    save_s: float  # the rest before the save, and the save
    password: str = field(default="", repr=False)  # its own, replaced in every VM restored from it

    @property
    def memory(self) -> Path:
        return self.directory / "memory.save"

    @property
    def disk(self) -> Path:
        return self.directory / "disk.qcow2"


def directory(image: GuestImage, key: TemplateKey) -> Path:
    return image.directory / "templates" / key.digest()


def find(image: GuestImage, key: TemplateKey) -> Template | None:
    """A complete template for this key: built, saved and recorded (a half-built one never is)."""
    d = directory(image, key)
    try:
        meta = json.loads((d / "template.json").read_text())
        password = (d / "password").read_text().strip()
    except (OSError, ValueError):
        return None
    t = Template(d, key, float(meta.get("boot_s", 0)), float(meta.get("save_s", 0)), password)
    return t if t.memory.is_file() and t.disk.is_file() and meta.get("key") == asdict(key) else None


@contextmanager
def using(image: GuestImage, key: TemplateKey) -> Iterator[Template | None]:
    """The complete template of this key (or None), held with a shared lock while a VM is
    restored from it: nobody builds or discards it meanwhile."""
    with _locked(directory(image, key), fcntl.LOCK_SH):
        yield find(image, key)


def discard(image: GuestImage, failed: Template, why: str) -> None:
    """Remove a template that did not restore, once nobody restores from it; not one rebuilt
    meanwhile by another lab (each build has its own password). Never raises: a template that
    could not be removed is only a wasted restore next time."""
    d = directory(image, failed.key)
    try:
        with _locked(d):
            now = find(image, failed.key)
            if now is not None and now.password != failed.password:
                return
            _remove_aside(d)
    except OSError as exc:
        step(f"template {d.name}: could not be discarded ({exc})")
        return
    step(f"template {d.name}: discarded ({why}); the next VM of its shape builds it again")


def _remove_aside(d: Path) -> None:
    """Renamed aside first (under the key's exclusive lock), so a half-removed one is never found."""
    if d.exists():
        trash = d.with_name(f".{d.name}.trash-{uuid.uuid4().hex}")
        d.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


def _drop_outdated(image: GuestImage, current: TemplateKey) -> None:
    """Templates no VM can restore any more (made by another availlab, libvirt or QEMU): about
    180 MiB each, found nowhere else; the image's own prune takes the rest with the image. One
    in use (its lock busy) is left for a later build; trash an interrupted discard left goes."""
    root = image.directory / "templates"
    for trash in root.glob(".*.trash-*"):
        shutil.rmtree(trash, ignore_errors=True)
    for d in sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"[0-9a-f]{16}", p.name)):
        try:
            key = json.loads((d / "template.json").read_text())["key"]
            if (key.get("version"), key.get("libvirt"), key.get("qemu")) == (current.version, current.libvirt,
                                                                               current.qemu):
                continue
            with _locked(d, fcntl.LOCK_EX | fcntl.LOCK_NB):
                _remove_aside(d)
            step(f"template {d.name}: removed (made for another availlab, libvirt or QEMU version)")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # busy, half-written or not ours to judge: left alone


@contextmanager
def _locked(d: Path, how: int = fcntl.LOCK_EX) -> Iterator[None]:
    """Builds and discards of a key exclusive, restores shared, across labs and processes."""
    d.parent.mkdir(parents=True, exist_ok=True)
    with open(d.parent / f".{d.name}.lock", "a") as fh:
        fcntl.flock(fh, how)
        yield


def build(hv: HypervisorAPI, image: GuestImage, key: TemplateKey, render: Callable[..., str],
          wait_ready: Callable[[Path, float], None], timeout_s: float) -> tuple[Template, bool]:
    """Boot a throw-away transient domain of the key's shape cold on `hv`'s host (under the VM's
    name, before the VM is defined there), wait for its database, save it, and keep the memory
    file and the disk frozen with it. (template, whether this call built it)"""
    final = directory(image, key)
    with _locked(final):
        found = find(image, key)
        if found:
            return found, False  # another lab built it while this one waited
        work = final.with_name(final.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        paths.private_dir(work)
        name = key.name
        r = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.disk),
                            str(work / "disk.qcow2")], capture_output=True, text=True)
        if r.returncode != 0:
            raise VMError(f"template {key.digest()}: cannot create its disk: {r.stderr.strip()}")
        password = secrets.token_hex(12)  # the template's own: replaced in every VM restored from it
        paths.write_private(work / "password", password)
        xml = render(name=name, uuid=key.uuid(), disk=work / "disk.qcow2", config_disk=work / "config.img",
                     console_log=work / "console.log", password=password)
        step(f"template {key.digest()}: booting {name} cold once ({key.database}, {key.memory_mib} MiB, "
             f"{key.address}), to save it booted for every later {name} of this shape")
        t0 = time.monotonic()
        try:
            hv.create(xml)
            wait_ready(work / "console.log", t0 + timeout_s)
            boot_s = time.monotonic() - t0
            t1 = time.monotonic()
            _quiesce(hv, name)
            hv.save(name, str(work / "memory.save"))  # stops it: the disk is frozen with the memory
            save_s = time.monotonic() - t1
        except BaseException:
            try:
                hv.destroy(name)
            except AvailLabError:
                pass
            shutil.rmtree(work, ignore_errors=True)
            raise
        (work / "disk.qcow2").chmod(0o400)  # never written again: every VM writes its own copy
        for f in ("memory.save", "disk.qcow2"):
            paths.fsync(work / f)
        paths.write_atomic(work / "template.json", json.dumps(
            {"key": asdict(key), "boot_s": round(boot_s, 2), "save_s": round(save_s, 2),
             "built_at": time.time(), "memory_bytes": (work / "memory.save").stat().st_size}, indent=1))
        if final.exists():  # what an interrupted discard left: not a template (find said so)
            shutil.rmtree(final)
        work.rename(final)
        paths.fsync(final.parent)
    step(f"template {key.digest()}: saved ({boot_s:.1f} s boot, {save_s:.1f} s rest and save)")
    _drop_outdated(image, key)
    return Template(final, key, round(boot_s, 2), round(save_s, 2), password), True


def restore(hv: HypervisorAPI, t: Template, name: str, disk: Path, xml: str) -> None:
    """Start VM `name` from the template: its disk is a copy of the template's (the disk the
    saved memory knows; backed by the same image), its XML the lab's."""
    shutil.copyfile(t.disk, disk)
    disk.chmod(0o600)
    hv.define(xml)
    try:
        hv.restore(str(t.memory), xml)
    except BaseException as exc:
        remove_domain(hv, name)
        if isinstance(exc, AvailLabError):  # libvirt refused this template: the one failure that is its own
            raise RestoreFailed(str(exc)) from None
        raise


class RestoreFailed(VMError):
    """libvirt would not restore the template's saved state."""


def remove_domain(hv: HypervisorAPI, name: str) -> None:
    """Power off and undefine what a failed or interrupted start left; quiet if nothing did,
    loud if it still runs (it would hold the template's identity)."""
    try:
        hv.destroy(name)
    except DomainNotFoundError:
        return
    try:
        hv.undefine(name)
    except DomainNotFoundError:
        pass


def _agent_answers(hv: HypervisorAPI, vm: str, timeout_s: float = 15) -> None:
    """libvirt reconnects to the agent's channel after a restore: wait until it answers."""
    last: list[str] = []

    def answers() -> bool:
        try:
            hv.agent_command(vm, {"execute": "guest-ping"}, timeout_s=2)
            return True
        except AvailLabError as exc:
            last[:] = [str(exc)]
            return False

    if not wait_until(answers, timeout_s, 0.05):
        raise VMError(f"VM {vm}: its guest agent did not answer after the restore: {last[-1] if last else ''}")


def _guest_run(hv: HypervisorAPI, vm: str, path: str, args: list[str], timeout_s: float = 15) -> None:
    code, err = exec_wait(hv, vm, path, args, timeout_s)
    if code != 0:
        raise VMError(f"VM {vm}: {path} in the guest failed: {err or f'exit code {code}'}")


def _quiesce(hv: HypervisorAPI, vm: str) -> None:
    """Save a guest at rest: its dirty pages written back and the database's start-up I/O over,
    so a restored VM does not begin its life with writeback queued from the template's boot."""
    _agent_answers(hv, vm)
    _guest_run(hv, vm, "/bin/sync", [], timeout_s=60)
    time.sleep(QUIESCE_S)
    _guest_run(hv, vm, "/bin/sync", [], timeout_s=60)


def _set_clock(hv: HypervisorAPI, vm: str, failed: list[BaseException]) -> None:
    """The guest's wall clock resumes where the template's stopped. The agent's guest-set-time
    also runs `hwclock -w`, which waits for the RTC's next second (0.8-1.8 s measured under
    TCG, and the image would need util-linux-extra); the system clock is what the database
    reads, so it is set with `date` through guest-exec (0.6-0.8 s, beside the password)."""
    try:
        _agent_answers(hv, vm)
        _guest_run(hv, vm, "/bin/date", ["-u", "-s", f"@{time.time_ns() / 1e9:.6f}"])
    except BaseException as exc:  # noqa: BLE001  (handed to the caller's thread)
        failed.append(exc)


def give_identity(hv: HypervisorAPI, st: LabState, vm: str, t: Template, password: str, timeout_s: float = 60) -> None:
    """The restored guest still holds the template's clock and database password: give it the
    host's time (guest agent) and the lab's password (logged in over ODBC with the template's
    own, as any client; the new one sent as a stored hash), both at once, before anyone is told
    it is ready."""
    from ..clients.sql import _call, dsn_for

    failed: list[BaseException] = []
    clock = threading.Thread(target=_set_clock, args=(hv, vm, failed), name=f"clock-{vm}")
    clock.start()
    try:
        dsn = replace(dsn_for(st, vm), password=t.password)
        reply = _call(st, dsn, {"mode": "wait", "deadline_s": timeout_s, "interval_s": 0.05,
                                "then_sql": dialect(t.key.database).password_statement(DB_USER, password)}, timeout_s + 30)
    finally:
        clock.join()
    if not reply.get("ok"):
        raise VMError(f"VM {vm}: the lab's database password could not be set: "
                      f"{scrub(str(reply.get('error')), st.lab)}")
    if failed:
        raise VMError(f"VM {vm}: its clock could not be set through the guest agent: {failed[0]}")
