"""`availlab lab discover`: a remote topology written from what a cluster's libvirt daemons say.

An operator with a dozen hypervisors should not type URIs, pool names and domain names into YAML
by hand, nor guess which pool is shared. Every daemon is asked over libvirt's read-only connection
(virConnectOpenReadOnly), on which the daemon itself refuses any change: discovery cannot alter a
cluster, whatever this code does.

No VM is declared. availlab changes only the VMs its topology declares, and which VMs it may
migrate, and with which database account, is the operator's decision: each domain found becomes a
commented entry to uncomment and complete. The file written is checked by the same model
`lab up --config` uses, so what discover prints is a topology `lab up` accepts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import yaml

from ..dialects import DEFAULT_DATABASE, DIALECTS
from ..errors import UsageError
from .hypervisor import SHUT_OFF, shared_uuid
from .topology import REMOTE_NAME_RE, parse_topology
from .virt import Hypervisor


@dataclass(frozen=True)
class Domain:
    name: str
    state: str
    disks: tuple[str, ...]


@dataclass(frozen=True)
class HostFacts:
    uri: str
    hostname: str
    uuid: str
    pools: dict[str, str]  # active pool -> target path
    domains: tuple[Domain, ...] = field(default=())


def read_host(uri: str) -> HostFacts:
    """One host's facts, over a read-only connection."""
    with Hypervisor(uri, uri, read_only=True) as hv:
        doms = tuple(Domain(d.name, d.state, tuple(hv.disk_paths(d.name))) for d in hv.domains())
        return HostFacts(uri, hv.hostname(), hv.host_uuid(), hv.pools(), doms)


def host_names(facts: list[HostFacts]) -> tuple[list[str], str]:
    """What reports will call each host: its short host name when every one is usable and
    distinct; else h1..hN in the order given, and why (hosts in one machine's network namespaces,
    or cloned hypervisors, all say the same name)."""
    short = [f.hostname.split(".")[0].lower() for f in facts]
    if all(REMOTE_NAME_RE.fullmatch(n) for n in short) and len(set(short)) == len(short):
        return short, ""
    return [f"h{i}" for i in range(1, len(facts) + 1)], (
        f"the hosts' names ({', '.join(f.hostname for f in facts)}) are not distinct lab host names; "
        "named h1..hN in the order of --uri")


def shared_pools(facts: list[HostFacts]) -> list[tuple[str, str]]:
    """Pools active on every host under one name and one target path: the candidates for the
    storage a VM keeps through a migration without copying its disks."""
    first, *rest = facts
    return sorted((name, path) for name, path in first.pools.items()
                  if path and all(f.pools.get(name) == path for f in rest))


def _under(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


def _vm_lines(facts: list[HostFacts], names: list[str], pool: tuple[str, str] | None) -> list[str]:
    where: dict[str, list[str]] = {}
    disks: dict[str, tuple[str, ...]] = {}
    for f, host in zip(facts, names, strict=True):
        for d in f.domains:
            where.setdefault(d.name, [])
            if d.state != SHUT_OFF or not where[d.name]:  # a definition left behind: said once
                where[d.name].append(f"{d.state} on {host}")
            disks[d.name] = disks.get(d.name) or d.disks
    lines = ["# Domains found. availlab changes only the VMs declared here: uncomment those it may",
             "# migrate, and say how its clients reach each one's database (docs/real-cluster.md §4)."]
    for name in sorted(where):
        on_pool = ("no disk" if not disks[name] else
                   "disks on the pool" if pool and all(_under(p, pool[1]) for p in disks[name]) else
                   "disks NOT on the shared pool: a live migration would copy them")
        if not REMOTE_NAME_RE.fullmatch(name):
            lines.append(f"#   {name}: {', '.join(where[name])}; not a name availlab takes "
                         "(1-31 lower-case letters, digits or '-')")
            continue
        lines += [f"# - name: {name}                # {', '.join(where[name])}; {on_pool}",
                  f"#   database: {DEFAULT_DATABASE}       # {' | '.join(DIALECTS)}",
                  f"#   server: ADDRESS-OF-{name}    # what the clients connect to",
                  f"#   password_file: /root/.config/availlab/{name}.password   # mode 0600"]
    return lines


def topology_text(facts: list[HostFacts], lab: str) -> str:
    """The topology YAML for these hosts, checked by the model `lab up --config` uses."""
    if len(facts) < 2:
        raise UsageError("discover needs the URIs of at least two hosts (--uri, once per host): "
                         "a live migration needs somewhere to go")
    twins = shared_uuid((f.uri, f.uuid) for f in facts)
    if twins:
        raise UsageError(f"{twins[0]} and {twins[1]} reach the same host (UUID {twins[2]}): one URI per host")
    names, renamed = host_names(facts)
    pools = shared_pools(facts)
    pool = _best_pool(pools, [d for f in facts for d in f.domains])
    doc = {"kind": "remote", "name": lab,
           "hosts": [{"name": n, "uri": f.uri} for n, f in zip(names, facts, strict=True)],
           "storage": {"pool": pool[0]} if pool else {}}
    parse_topology({**doc, "vms": None}, "discovered")  # a URI the remote provider refuses (unix, ext) is said here
    head = [f"# Written by `availlab lab discover` from {len(facts)} hosts' libvirt daemons (read-only).",
            "# Host UUIDs: " + ", ".join(f"{n} {f.uuid}" for n, f in zip(names, facts, strict=True))]
    if renamed:
        head.append(f"# Host names: {renamed}.")
    if pool and len(pools) > 1:
        head.append(f"# Shared pools (same name and path on every host): {', '.join(p for p, _ in pools)}; "
                    f"chosen: {pool[0]}, which holds the most VM disks.")
    elif not pool:
        head.append("# No storage pool is active on every host under one name and path: define the shared "
                    "storage as a pool on each host (docs/real-cluster.md §1), or migrations copy disks.")
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    return "\n".join([*head, body + "vms:", *_vm_lines(facts, names, pool)]) + "\n"


def _best_pool(pools: list[tuple[str, str]], domains: Iterable[Domain]) -> tuple[str, str] | None:
    disks = [p for d in domains for p in d.disks]
    return max(pools, key=lambda pool: sum(_under(p, pool[1]) for p in disks), default=None)


def discover(uris: list[str], lab: str) -> str:
    """Each URI checked as `lab up` would check it before any is dialled; then each host read."""
    if len(set(uris)) != len(uris):
        raise UsageError("a --uri is given twice: one URI per host")
    parse_topology({"kind": "remote", "name": lab, "vms": None,  # hosts.N.uri: the Nth --uri
                    "hosts": [{"name": f"h{i}", "uri": u} for i, u in enumerate(uris, 1)]}, "from --uri")
    return topology_text([read_host(u) for u in uris], lab)
