"""Lab state: one 0700 directory per lab, and a state.json written before each thing is created.

Writing intent first is what makes `lab down` safe after a crash or a half `up`: whatever may
exist is recorded, and what is not recorded is still found by name (namespaces, cgroups) or by
namespace membership (processes). The file is replaced atomically so a crash never truncates it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from .. import names, paths
from ..dialects import DEFAULT_DATABASE
from ..errors import LabNotUpError, StateError
from . import identity
from .identity import STATE_FILE, lab_root


@dataclass
class HostState:
    name: str
    namespace: str
    directory: str
    address: str
    uri: str
    host_uuid: str = ""
    pid: int | None = None
    peer_uri: str = ""  # remote: the URI the source's libvirtd migrates to (default: uri)


@dataclass
class VMState:
    name: str
    address: str
    host: str  # where it was created or last seen; libvirt is the truth, see lab.locate_vm
    disk: str
    config_disk: str
    console_log: str
    uuid: str
    created_at: float
    database: str = DEFAULT_DATABASE  # the dialect profile its guest image runs (availlab.dialects)
    endpoint: dict = field(default_factory=dict)  # remote VMs: port, driver, odbc_dsn, user, dbname, password_file
    started_from: str = ""  # "cold boot" or "template <key digest>" (lab VMs)
    restored_from: str = ""  # the backup set it was restored from (events.restore)
    reads_sets: list[str] = field(default_factory=list)  # sets its disk is built from or still reads: prune keeps them


@dataclass
class LabState:
    lab: str
    status: str  # "creating" | "up" | "failed"
    topology: dict
    accel: dict = field(default_factory=dict)
    hosts: dict[str, HostState] = field(default_factory=dict)
    vms: dict[str, VMState] = field(default_factory=dict)
    shared_dir: str = ""
    dr_dir: str = ""
    client_namespace: str = ""
    switch_namespace: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    provider: str = "local"  # "local": the namespaced lab; "remote": existing libvirt hosts
    facts: dict = field(default_factory=dict)  # remote: what `lab up` checked and found
    owned: list[str] = field(default_factory=list)  # directories outside the lab root it created
    lost_hosts: list[str] = field(default_factory=list)  # emptied and stopped by dr.lose_host: run nothing
    to_revive: list[str] = field(default_factory=list)  # VMs a rebuild left to start again (vm.create)
    drained: dict[str, list[str]] = field(default_factory=dict)  # host -> VMs its drain moved (events/drain.py)

    @classmethod
    def from_dict(cls, d: dict, where: str = "state") -> LabState:
        """A state file written by another availlab version (or by hand) is refused with the
        field that does not fit, not a TypeError traceback from a constructor."""
        d = _fields(cls, d, where)
        d["hosts"] = {k: HostState(**_fields(HostState, v, f"{where}: hosts.{k}"))
                      for k, v in _mapping(d.get("hosts", {}), f"{where}: hosts").items()}
        d["vms"] = {k: VMState(**_fields(VMState, v, f"{where}: vms.{k}"))
                    for k, v in _mapping(d.get("vms", {}), f"{where}: vms").items()}
        return cls(**d)


def _mapping(d: object, where: str) -> dict:
    if not isinstance(d, dict):
        raise StateError(f"{where}: expected an object, got {type(d).__name__}")
    return d


def _fields(cls: type, d: object, where: str) -> dict:
    d = dict(_mapping(d, where))
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    missing = sorted(n for n, f in known.items() if n not in d
                     and f.default is MISSING and f.default_factory is MISSING)
    if unknown or missing:
        raise StateError(f"{where}: " + "; ".join(
            ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
            + ([f"missing field(s) {', '.join(missing)}"] if missing else []))
            + " (written by another availlab version? `availlab lab down` removes the lab by name)")
    return d


def state_file(lab: str) -> Path:
    return lab_root(lab) / STATE_FILE


def primary_backups_dir(lab: str) -> Path:
    """The primary backup site: inside the lab's state, beside its hosts (the DR site is elsewhere)."""
    return lab_root(lab) / "backups"


def checkpoint_dir(lab: str, vm: str) -> Path:
    """Where a VM's checkpoint descriptions are kept (events/checkpoints.py), beside the primary
    site's sets and never read as one. `vm delete` and a restore under the VM's name empty it:
    their disk holds none of those bitmaps."""
    return primary_backups_dir(lab) / ".checkpoints" / names.component(vm, "vm")


def secrets_dir(lab: str) -> Path:
    return lab_root(lab) / "secrets"


def save(state: LabState) -> None:
    root = lab_root(state.lab)
    if not root.is_dir():  # the first save of a lab makes its directory, with its marker inside
        identity.claim(state.lab)
    paths.write_atomic(root / "state.json", json.dumps(asdict(state), indent=2, sort_keys=True) + "\n")


_thread_locks: dict[str, threading.RLock] = {}
_depth: dict[str, int] = {}
_files: dict[str, int] = {}
_registry = threading.Lock()


@contextlib.contextmanager
def locked(lab: str) -> Iterator[None]:
    """One lock per lab, across processes (flock) and threads, re-entrant in one thread: held
    around every read-modify-write of the lab's state, tips and backup catalogue, so two
    commands never both take the last free address, or apply one tip twice. The lock file sits
    beside the lab's directory (`.locks/<lab>`), so `lab down` can remove the whole directory."""
    name = names.lab_name(lab)
    with _registry:
        rlock = _thread_locks.setdefault(name, threading.RLock())
    with rlock:
        if _depth.get(name, 0) == 0:
            d = paths.private_dir(paths.state_root() / ".locks")
            fd = os.open(d / name, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            _files[name] = fd
        _depth[name] = _depth.get(name, 0) + 1
        try:
            yield
        finally:
            _depth[name] -= 1
            if _depth[name] == 0:
                fd = _files.pop(name)
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


@contextlib.contextmanager
def update(lab: str) -> Iterator[LabState]:
    """The lab's state read fresh under its lock, and saved when the block ends without error:
    never write back a copy loaded before a long wait (a VM's boot), which would erase what
    another command recorded meanwhile."""
    with locked(lab):
        st = require_up(lab)
        yield st
        save(st)


def load(lab: str) -> LabState | None:
    path = state_file(lab)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # not UTF-8, or not JSON
        raise StateError(f"{path}: not JSON ({exc})") from None
    return LabState.from_dict(data, str(path))


def require_up(lab: str) -> LabState:
    st = load(lab)
    if st is None or st.status != "up":
        raise LabNotUpError(f"lab {lab!r} is not up; run `availlab lab up`"
                            + (f" (state: {st.status})" if st else ""))
    return st
