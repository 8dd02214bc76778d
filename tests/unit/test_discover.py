"""`lab discover`: hosts read over libvirt's read-only connection, a topology `lab up` accepts.

The facts come from libvirt's own test driver (test:///default: a real libvirt connection to an
in-process hypervisor with one running domain and one pool); the remote provider takes only
qemu URIs, so the topology tests give those facts cluster URIs. The real cluster case, over
qemu+ssh to the lab's own libvirtd hosts, is tests/integration/test_remote_provider.py.
"""

from dataclasses import replace

import pytest
import yaml

from availlab.cli import main
from availlab.errors import UsageError
from availlab.lab.discover import Domain, discover, read_host, topology_text
from availlab.lab.topology import parse_topology


@pytest.fixture(scope="module")
def facts():
    return read_host("test:///default")


def _cluster(facts, *hostnames, uuids=None):
    return [replace(facts, uri=f"qemu+ssh://root@hv{i}/system", hostname=name, uuid=(uuids or {}).get(i, f"u{i}"))
            for i, name in enumerate(hostnames, 1)]


def test_a_host_is_read_over_a_read_only_connection(facts):
    assert facts.pools == {"default-pool": "/default-pool"}
    assert [(d.name, d.state) for d in facts.domains] == [("test", "running")]


def test_the_topology_names_hosts_picks_the_shared_pool_and_validates(facts):
    on_pool = (Domain("sql1", "running", ("/default-pool/sql1.qcow2",)),)
    a, b = _cluster(replace(facts, pools={**facts.pools, "local": "/var/lib/x"}, domains=on_pool),
                    "hv1.example.com", "hv2.example.com")
    b = replace(b, pools={**facts.pools, "local": "/elsewhere"}, domains=(Domain("sql1", "shut-off", ()),))  # as virt lists it
    text = topology_text([a, b], "prod")
    topo = parse_topology(yaml.safe_load(text))
    assert [h.name for h in topo.hosts] == ["hv1", "hv2"] and topo.vms == []
    assert topo.storage.pool == "default-pool"  # "local" differs in path: not shared
    assert "running on hv1; disks on the pool" in text and "Host UUIDs: hv1 u1, hv2 u2" in text
    # uncommented and completed, the VM entry is one `lab up` accepts
    lines = [ln[2:] if ln.startswith(("# - ", "#   ")) else ln for ln in text.splitlines()]
    done = yaml.safe_load("\n".join(lines).replace("ADDRESS-OF-sql1", "10.0.0.5"))
    assert [v.name for v in parse_topology(done).vms] == ["sql1"]


def test_hosts_with_one_name_are_numbered_and_one_host_twice_is_refused(facts):
    text = topology_text(_cluster(facts, "vm", "vm"), "prod")
    assert [h.name for h in parse_topology(yaml.safe_load(text)).hosts] == ["h1", "h2"]
    assert "named h1..hN" in text and "disks NOT on the shared pool" in text
    with pytest.raises(UsageError, match="reach the same host"):
        topology_text(_cluster(facts, "a", "b", uuids={1: "same", 2: "same"}), "prod")
    with pytest.raises(UsageError, match="at least two hosts"):
        topology_text(_cluster(facts, "a"), "prod")
    odd = replace(facts, domains=(Domain("Web_Server", "running", ()),))
    assert "Web_Server: running on h1, running on h2; not a name availlab takes" in topology_text(_cluster(odd, "x", "x"), "p")


def test_uris_are_checked_before_any_is_dialled(capsys, tmp_path):
    with pytest.raises(UsageError, match="hosts.1.uri"):  # the second --uri: a local socket
        discover(["qemu+ssh://hv1/system", "qemu+unix:///system"], "prod")
    with pytest.raises(UsageError, match="given twice"):
        discover(["qemu+ssh://hv1/system"] * 2, "prod")
    out = tmp_path / "t.yaml"
    out.write_text("keep")
    assert main(["lab", "discover", "--uri", "qemu+ssh://hv1/system", "--uri", "qemu+ssh://hv2/system",
                 "-o", str(out)]) == 2
    assert out.read_text() == "keep" and "--force" in capsys.readouterr().err


def test_a_definition_left_shut_off_on_another_host_is_not_where_the_vm_runs(facts):
    """virsh migrate without --undefinesource leaves a shut-off definition at the source."""
    a, b = _cluster(facts, "hv1", "hv2")
    a = replace(a, domains=(Domain("sql1", "running", ()),))
    b = replace(b, domains=(Domain("sql1", "shut-off", ()),))
    text = topology_text([a, b], "prod")
    assert "# - name: sql1                # running on hv1; no disk" in text
    assert "#   database: postgresql       # postgresql | mariadb | sqlserver" in text
