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

from .errors import TopologyError
from .validation import build

MAX_HOSTS = 16  # a Windows failover cluster's limit, which the seed article's reader knows
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")  # short: names go into interface names (15 chars max)


def _short_name(v: str) -> str:
    """Lab and host names become parts of namespace and interface names: keep them short."""
    if not NAME_RE.match(v):
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
    def _primary(self) -> "Topology":
        if not any(h.site == "primary" for h in self.hosts):
            raise ValueError("hosts: at least one host must be at site 'primary'")
        return self

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        known = ", ".join(h.name for h in self.hosts)
        raise TopologyError(f"unknown host {name!r}; this lab has: {known}")


def parse_topology(data: object, source: str = "<data>") -> Topology:
    if not isinstance(data, dict):
        raise TopologyError(f"invalid topology {source}: expected a mapping at the top level")
    return build(Topology, data, f"topology {source}", TopologyError)


def load_topology(path: str | Path) -> Topology:
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


def with_overrides(topo: Topology, *, name: str | None = None, hosts: int | None = None,
                   accel: str | None = None) -> Topology:
    """The topology with a new lab name, `hosts` hosts h1..hN shaped like the first one, or
    another accelerator; re-validated, so an override can not sneak past the checks."""
    data = topo.model_dump(mode="json")
    if name:
        data["name"] = name
    if hosts is not None:
        if not 1 <= hosts <= MAX_HOSTS:
            raise TopologyError(f"hosts: must be between 1 and {MAX_HOSTS} (got {hosts})")
        first = data["hosts"][0]
        data["hosts"] = [{**first, "name": f"h{i + 1}", "site": "primary"} for i in range(hosts)]
    if accel:
        data["accel"] = accel
    return parse_topology(data, "(with overrides)")
