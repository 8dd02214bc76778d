"""The lab topology: what hosts, network, storage and DR site a lab has, validated at the edge.

A topology is read from YAML (lab/default.yaml) and checked completely before anything on the
machine is touched; a bad file gives one TopologyError that names every bad field by its path
(e.g. ``hosts.1.cores``), never a traceback from deep inside provisioning.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..dialects import DEFAULT_DATABASE, DIALECTS
from ..errors import TopologyError
from ..names import LAB_NAME
from ..validation import build

MAX_HOSTS = 16  # a Windows failover cluster's limit, which the seed article's reader knows
NAME_RE = re.compile(r"[a-z][a-z0-9]{0,9}")  # short: names go into interface names (15 chars max)


def _short_name(v: str) -> str:
    """Lab and host names become parts of namespace and interface names: keep them short."""
    if not isinstance(v, str) or not NAME_RE.fullmatch(v):
        raise ValueError("must be 1-10 lower-case letters/digits starting with a letter")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSpec(_Strict):
    name: str = Field(description="host name, e.g. h1; lower-case letters and digits")
    cores: float = Field(1.0, gt=0, le=64, description="CPU capacity enforced by the host's cgroup")
    memory_mib: int = Field(4096, ge=256, le=262144)
    site: Literal["primary", "dr"] = "primary"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _short_name(v)


class NetworkSpec(_Strict):
    cidr: str = Field("10.213.0.0/24", description="lab network; exists only inside lab namespaces")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            net = ipaddress.IPv4Network(v, strict=True)
        except ValueError as exc:
            raise ValueError(f"not an IPv4 network in CIDR form: {exc}") from None
        if net.prefixlen > 24:
            raise ValueError("needs at least a /24 (room for hosts, clients and VMs)")
        if not net.is_private or net.is_loopback or net.is_link_local:
            raise ValueError("must be a private range (RFC 1918); lab addresses never leave the lab")
        return str(net)


class StorageSpec(_Strict):
    shared: Path | None = Field(None, description="CSV stand-in; default <state>/shared")
    dr_site: Path | None = Field(None, description="DR-site directory; default <state>/dr-site")

    @field_validator("shared", "dr_site")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        """Relative paths would depend on the directory a command happens to run in."""
        if v is not None and (not v.is_absolute() or ".." in v.parts or v == Path(v.anchor)):
            raise ValueError(f"must be an absolute path without '..', not the filesystem root (got {v})")
        return v

    @model_validator(mode="after")
    def _apart(self) -> StorageSpec:
        """The DR site stands for another building: never the shared storage, nor inside it
        (where `lab down` would take the backups with the VM disks), nor around it."""
        if self.shared and self.dr_site:
            a, b = self.shared, self.dr_site
            if a == b or a in b.parents or b in a.parents:
                raise ValueError("dr_site: must not be the shared storage directory, nor inside it or around it")
        return self


class VMDefaults(_Strict):
    memory_mib: int = Field(512, ge=256, le=65536)
    vcpus: int = Field(1, ge=1, le=16)


class Topology(_Strict):
    name: str = Field("default", description="lab name; namespaces are named availlab-<name>-*")
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    hosts: list[HostSpec]
    network: NetworkSpec = NetworkSpec()
    storage: StorageSpec = StorageSpec()
    vm: VMDefaults = VMDefaults()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _short_name(v)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[HostSpec]) -> list[HostSpec]:
        if not v:
            raise ValueError("a lab needs at least one host")
        if len(v) > MAX_HOSTS:
            raise ValueError(f"at most {MAX_HOSTS} hosts (got {len(v)})")
        seen: set[str] = set()
        for h in v:
            if h.name in seen:
                raise ValueError(f"duplicate host name {h.name!r}")
            if h.name in ("client", "sw"):
                raise ValueError(f"host name {h.name!r} is reserved for the lab's own namespaces")
            seen.add(h.name)
        return v

    @model_validator(mode="after")
    def _primary(self) -> Topology:
        if not any(h.site == "primary" for h in self.hosts):
            raise ValueError("hosts: at least one host must be at site 'primary'")
        return self

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        known = ", ".join(h.name for h in self.hosts)
        raise TopologyError(f"unknown host {name!r}; this lab has: {known}")


# --- a real cluster (kind: remote) -----------------------------------------------------------

REMOTE_NAME_RE = LAB_NAME  # the widest lab name; also the VM-name rule
URI_RE = re.compile(r"[a-z0-9+]+://\S*")
# libvirt transports that reach a remote libvirtd; 'ext' runs a local program, 'unix' a local socket
REMOTE_TRANSPORTS = ("", "ssh", "libssh", "libssh2", "tls", "tcp")


def _remote_name(v: str) -> str:
    if not isinstance(v, str) or not REMOTE_NAME_RE.fullmatch(v):
        raise ValueError("must be 1-31 lower-case letters, digits or '-', starting with a letter")
    return v


class RemoteHostSpec(_Strict):
    name: str = Field(description="what reports and runbooks call this host")
    uri: str = Field(description="libvirt URI, e.g. qemu+ssh://root@hv1/system or qemu+tls://hv1/system")
    migration_address: str | None = Field(None, description="address the migration stream goes to "
                                          "(tcp://ADDRESS); default: libvirt's choice (the host's name)")
    peer_uri: str | None = Field(None, description="the URI the SOURCE host's libvirtd uses to reach this one "
                                 "in a peer-to-peer migration (default: uri); e.g. qemu+tls://hv2.internal/system "
                                 "where the management URI goes through a jump host")

    _name = field_validator("name")(classmethod(lambda cls, v: _remote_name(v)))

    @field_validator("uri", "peer_uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not URI_RE.fullmatch(v) or not v.startswith("qemu"):
            raise ValueError("must be a QEMU libvirt URI such as qemu+ssh://root@hv1/system")
        transport = v.split("://", 1)[0].partition("+")[2]
        if transport not in REMOTE_TRANSPORTS:
            raise ValueError(f"transport {transport!r} is not one availlab uses (it takes: "
                             f"{', '.join(t or 'none (TLS)' for t in REMOTE_TRANSPORTS)}); 'ext' and 'unix' run "
                             "or reach a program on this machine")
        return v


class RemoteStorageSpec(_Strict):
    pool: str | None = Field(None, description="libvirt storage pool every host defines on the shared storage")
    allow_unsafe_migration: bool = Field(False, description="pass VIR_MIGRATE_UNSAFE: only for shared "
                                         "storage libvirt does not recognise; availlab then checks every "
                                         "host sees the VM's disks itself")


class RemoteVMSpec(_Strict):
    name: str = Field(description="the libvirt domain name on whichever host runs it")
    database: str = Field(DEFAULT_DATABASE, description="the dialect profile it runs (availlab.dialects)")
    server: str = Field(description="address or DNS name the clients connect to")
    port: int | None = Field(None, ge=1, le=65535, description="default: the profile's port")
    driver: str | None = Field(None, description="ODBC driver name (default: the profile's)")
    odbc_dsn: str | None = Field(None, description="a DSN from odbc.ini instead of driver and server")
    user: str = "availlab"
    dbname: str = "availlab"
    password_file: Path = Field(description="file holding the password (mode 0600), never the password itself")

    _name = field_validator("name")(classmethod(lambda cls, v: _remote_name(v)))

    @field_validator("database")
    @classmethod
    def _database(cls, v: str) -> str:
        if v not in DIALECTS:
            raise ValueError(f"must be one of {', '.join(DIALECTS)} (got {v!r})")
        return v


class RemoteTopology(_Strict):
    kind: Literal["remote"]
    name: str = Field(description="lab name for state, runs and reports")
    hosts: list[RemoteHostSpec]
    storage: RemoteStorageSpec = RemoteStorageSpec()
    vms: list[RemoteVMSpec] = []
    client_namespace: str = Field("", description="run clients inside this network namespace "
                                  "(default: this machine's own network)")

    _name = field_validator("name")(classmethod(lambda cls, v: _short_name(v)))

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[RemoteHostSpec]) -> list[RemoteHostSpec]:
        if len(v) < 2:
            raise ValueError("a cluster to migrate within needs at least two hosts")
        if len(v) > MAX_HOSTS:
            raise ValueError(f"at most {MAX_HOSTS} hosts (got {len(v)})")
        names = [h.name for h in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate host name(s) {dup}")
        return v

    @field_validator("vms", mode="before")
    @classmethod
    def _no_vms(cls, v: object) -> object:
        return [] if v is None else v  # `vms:` with every entry commented out, as discover writes it

    @field_validator("vms")
    @classmethod
    def _vms(cls, v: list[RemoteVMSpec]) -> list[RemoteVMSpec]:
        names = [x.name for x in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate VM name(s) {dup}")
        return v

    def host(self, name: str) -> RemoteHostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise TopologyError(f"unknown host {name!r}; this cluster has: {', '.join(h.name for h in self.hosts)}")


def parse_topology(data: object, source: str = "<data>") -> Topology | RemoteTopology:
    if not isinstance(data, dict):
        raise TopologyError(f"invalid topology {source}: expected a mapping at the top level")
    if data.get("kind", "local") == "remote":
        return build(RemoteTopology, data, f"topology {source}", TopologyError)
    if data.get("kind", "local") != "local":
        raise TopologyError(f"invalid topology {source}:\n  kind: must be 'local' or 'remote' (got {data.get('kind')!r})")
    return build(Topology, {k: v for k, v in data.items() if k != "kind"}, f"topology {source}", TopologyError)


def load_topology(path: str | Path) -> Topology | RemoteTopology:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise TopologyError(f"cannot read topology file {p}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(f"topology file {p} is not valid YAML: {exc}") from None
    return parse_topology(data, str(p))


def with_overrides(topo: Topology | RemoteTopology, *, name: str | None = None, hosts: int | None = None,
                   accel: str | None = None) -> Topology | RemoteTopology:
    """The topology with a new lab name, `hosts` hosts h1..hN shaped like the first one, or
    another accelerator; re-validated, so an override can not sneak past the checks. A remote
    cluster takes only a new name: its hosts are what they are."""
    data = topo.model_dump(mode="json")
    if isinstance(topo, RemoteTopology):
        if hosts is not None or accel:
            raise TopologyError("hosts/accel: a remote cluster's hosts and accelerator are its own; "
                                "list the hosts in its topology file")
        return parse_topology({**data, "name": data["name"] if name is None else name}, "(with overrides)")
    if name is not None:
        data["name"] = name
    if hosts is not None:
        if not 1 <= hosts <= MAX_HOSTS:
            raise TopologyError(f"hosts: must be between 1 and {MAX_HOSTS} (got {hosts})")
        first = data["hosts"][0]
        data["hosts"] = [{**first, "name": f"h{i + 1}", "site": "primary"} for i in range(hosts)]
    if accel:
        data["accel"] = accel
    return parse_topology(data, "(with overrides)")
