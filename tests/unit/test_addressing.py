import ipaddress

import pytest

from availlab.errors import LabError
from availlab.lab.addressing import mac_for, plan_addresses
from availlab.lab.topology import parse_topology


def topo(n=3, cidr="10.213.0.0/24"):
    return parse_topology({"name": "t", "hosts": [{"name": f"h{i + 1}"} for i in range(n)],
                           "network": {"cidr": cidr}})


def test_plan_layout():
    plan = plan_addresses(topo(3))
    assert str(plan.client) == "10.213.0.2"
    assert {k: str(v) for k, v in plan.hosts.items()} == {
        "h1": "10.213.0.11", "h2": "10.213.0.12", "h3": "10.213.0.13"}
    assert str(plan.vm_address(0)) == "10.213.0.101"
    assert plan.cidr(plan.vm_address(1)) == "10.213.0.102/24"


def test_sixteen_hosts_fit_below_the_vm_range():
    plan = plan_addresses(topo(16))
    addrs = list(plan.hosts.values())
    assert str(addrs[-1]) == "10.213.0.26"
    assert len(set(addrs)) == 16
    assert max(addrs) < plan.vm_address(0)


def test_everything_is_inside_the_lab_network():
    plan = plan_addresses(topo(16, "172.20.0.0/16"))
    for a in [plan.client, *plan.hosts.values(), plan.vm_address(0), plan.vm_address(149)]:
        assert a in ipaddress.IPv4Network("172.20.0.0/16")


def test_free_vm_index_skips_used_and_runs_out():
    plan = plan_addresses(topo(1))
    used = {plan.vm_address(0), plan.vm_address(1)}
    assert plan.free_vm_index(used) == 2
    every = {plan.vm_address(i) for i in range(150)}
    with pytest.raises(LabError, match="in use"):
        plan.free_vm_index(every)
    with pytest.raises(LabError, match="no VM address left"):
        plan.vm_address(150)


def test_mac_is_stable_and_local():
    assert mac_for(ipaddress.IPv4Address("10.213.0.101")) == "52:54:00:d5:00:65"
