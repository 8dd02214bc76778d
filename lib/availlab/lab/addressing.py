"""The lab's address plan: a pure function of the topology, so every module agrees on it.

Layout inside the lab CIDR (offsets from the network address):
  .2          client namespace (where SQL clients run)
  .11 - .26   hypervisor hosts h1.. (bridge br0; migration traffic goes here)
  .101 - .250 VMs, in creation order (kept in lab state so a VM keeps its address)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..errors import LabError
from .topology import Topology

CLIENT_OFFSET = 2
HOST_OFFSET = 11
VM_OFFSET = 101
VM_LAST_OFFSET = 250


@dataclass(frozen=True)
class AddressPlan:
    network: ipaddress.IPv4Network
    client: ipaddress.IPv4Address
    hosts: dict[str, ipaddress.IPv4Address]

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def cidr(self, addr: ipaddress.IPv4Address) -> str:
        return f"{addr}/{self.prefixlen}"

    def vm_address(self, index: int) -> ipaddress.IPv4Address:
        if not 0 <= index <= VM_LAST_OFFSET - VM_OFFSET:
            raise LabError(f"no VM address left (index {index}); the plan has "
                           f"{VM_LAST_OFFSET - VM_OFFSET + 1} VM addresses")
        return self.network.network_address + VM_OFFSET + index

    def free_vm_index(self, used: set[ipaddress.IPv4Address]) -> int:
        for i in range(VM_LAST_OFFSET - VM_OFFSET + 1):
            if self.vm_address(i) not in used:
                return i
        raise LabError("every VM address of the lab network is in use")


def plan_addresses(topo: Topology) -> AddressPlan:
    net = ipaddress.IPv4Network(topo.network.cidr)
    base = net.network_address
    hosts = {h.name: base + HOST_OFFSET + i for i, h in enumerate(topo.hosts)}
    return AddressPlan(network=net, client=base + CLIENT_OFFSET, hosts=hosts)


def mac_for(address: ipaddress.IPv4Address) -> str:
    """A stable locally-administered MAC derived from the VM's address (52:54:00 is QEMU's OUI)."""
    o = address.packed
    return f"52:54:00:{o[1]:02x}:{o[2]:02x}:{o[3]:02x}"


def bridge_mac(address: ipaddress.IPv4Address) -> str:
    """A fixed MAC for a host's br0, from its address. A Linux bridge without one takes the lowest
    MAC among its ports: when a migration's destination tap (fe:54:00:..., the same MAC as the
    VM's tap on the source) joined, br0 could adopt it, and the source host then delivered its
    own migration SYNs to its local tap: "Connection timed out", in about 1 lab in 64."""
    o = address.packed
    return "02:00:" + ":".join(f"{b:02x}" for b in o)
