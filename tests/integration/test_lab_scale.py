"""A failover cluster's maximum: 16 hosts, each with its own libvirtd and host UUID."""

from availlab.lab import providers as lab
from availlab.lab.virt import Hypervisor

from .conftest import residue_report, topology

LAB = "i16"


def test_sixteen_hosts_come_up_distinct_and_go_down_clean(figures):
    import time

    lab.down(LAB)
    try:
        t0 = time.monotonic()
        st = lab.up(topology(LAB, hosts=16))
        figures["lab_up_s (16 hosts)"] = round(time.monotonic() - t0, 1)
        assert len(st.hosts) == 16 and not lab.health(st)
        uuids = set()
        for h in st.hosts.values():
            with Hypervisor(h.name, h.uri) as hv:
                uuids.add(hv.host_uuid())
        assert len(uuids) == 16
        assert len({h.address for h in st.hosts.values()}) == 16
    finally:
        lab.down(LAB)
    assert residue_report(LAB) == {"namespaces": [], "cgroups": [], "processes": []}
