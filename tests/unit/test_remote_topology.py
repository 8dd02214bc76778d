"""A remote cluster's topology: validated at the edge, errors naming the field."""

import os

import pytest

from availlab.errors import TopologyError, UsageError
from availlab.lab.remote import check_password_file
from availlab.lab.topology import RemoteTopology, parse_topology, with_overrides


def remote(**over):
    doc = {"kind": "remote", "name": "prod",
           "hosts": [{"name": "hv1", "uri": "qemu+ssh://root@hv1/system"},
                     {"name": "hv2", "uri": "qemu+tls://hv2/system", "migration_address": "10.0.0.12"}],
           "storage": {"pool": "csv1"},
           "vms": [{"name": "sql1", "database": "sqlserver", "server": "sql1.corp", "odbc_dsn": "prod-sql1",
                    "password_file": "/etc/availlab/sql1.pw"}]}
    doc.update(over)
    return doc


def test_a_remote_cluster_parses_with_its_hosts_vms_and_defaults():
    t = parse_topology(remote())
    assert isinstance(t, RemoteTopology) and [h.name for h in t.hosts] == ["hv1", "hv2"]
    assert t.storage.allow_unsafe_migration is False and t.client_namespace == ""
    assert t.vms[0].database == "sqlserver" and t.vms[0].user == "availlab" and t.vms[0].port is None


@pytest.mark.parametrize("over,field", [
    ({"hosts": [{"name": "hv1", "uri": "qemu:///system"}]}, "hosts"),  # one host: nothing to migrate to
    ({"hosts": [{"name": "hv1", "uri": "qemu:///system"}, {"name": "hv1", "uri": "qemu:///session"}]}, "hosts"),
    ({"hosts": [{"name": "hv1", "uri": "http://hv1"}, {"name": "hv2", "uri": "qemu:///system"}]}, "hosts.0.uri"),
    ({"vms": [{"name": "sql1", "server": "x", "database": "oracle", "password_file": "/p"}]}, "vms.0.database"),
    ({"vms": [{"name": "sql1", "server": "x"}]}, "vms.0.password_file"),
    ({"vms": [{"name": "sql1", "server": "x", "password_file": "/p", "port": 70000}]}, "vms.0.port"),
    ({"storage": {"pool": "csv1", "unsafe": True}}, "storage.unsafe"),
    ({"kind": "cloud"}, "kind"),
])
def test_bad_remote_topologies_name_the_field(over, field):
    with pytest.raises(TopologyError) as e:
        parse_topology(remote(**over))
    assert field in str(e.value)


def test_a_remote_cluster_takes_a_new_name_but_not_new_hosts():
    t = parse_topology(remote())
    assert with_overrides(t, name="stage").name == "stage"
    with pytest.raises(TopologyError, match="hosts/accel"):
        with_overrides(t, hosts=3)


def test_a_password_file_others_can_read_is_refused(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    os.chmod(pw, 0o644)
    with pytest.raises(UsageError, match="vms.sql1.password_file: .* chmod 600"):
        check_password_file("vms.sql1.password_file", pw)
    os.chmod(pw, 0o600)
    assert check_password_file("vms.sql1.password_file", pw) == str(pw)
    with pytest.raises(UsageError, match="vms.sql1.password_file: cannot read"):
        check_password_file("vms.sql1.password_file", tmp_path / "missing")


@pytest.mark.parametrize("uri", ["qemu+ext:///system?command=/tmp/x", "qemu+unix:///system",
                                 "qemu+nonsense://hv1/system"])
def test_transports_that_run_or_reach_a_local_program_are_refused(uri):
    """Issue 28: `qemu+ext` runs a program on this machine; `qemu+unix` talks to a local daemon,
    which is no remote cluster's host."""
    from availlab.lab.topology import parse_topology

    doc = {"kind": "remote", "name": "c", "hosts": [{"name": "hv1", "uri": uri},
                                                    {"name": "hv2", "uri": "qemu+ssh://hv2/system"}],
           "vms": [{"name": "db1", "server": "db1", "password_file": "/p"}]}
    with pytest.raises(TopologyError, match="transport"):
        parse_topology(doc)


@pytest.mark.parametrize("profile", ["postgresql", "mariadb", "sqlserver"])
def test_every_odbc_value_is_escaped(profile):
    """A server or driver holding `;` or braces must not add attributes of its own."""
    from availlab.dialects import dialect

    s = dialect(profile).connection_string(server="db;UID=sa", port=1433, database="d", user="u",
                                           password="p", driver="Drv}x;y")
    assert "DRIVER={Drv}}x;y};" in s
    assert "SERVER={db;UID=sa};" in s or "SERVER={tcp:db;UID=sa,1433};" in s, s  # inside braces: one value


def test_a_peer_uri_is_checked_like_the_management_uri():
    from availlab.lab.topology import parse_topology

    doc = {"kind": "remote", "name": "c",
           "hosts": [{"name": "hv1", "uri": "qemu+ssh://jump/system", "peer_uri": "qemu+tls://hv1.internal/system"},
                     {"name": "hv2", "uri": "qemu+ssh://hv2/system"}],
           "vms": [{"name": "db1", "server": "db1", "password_file": "/p"}]}
    assert parse_topology(doc).hosts[0].peer_uri == "qemu+tls://hv1.internal/system"
    doc["hosts"][1]["peer_uri"] = "qemu+ext:///system?command=/bin/sh"
    with pytest.raises(TopologyError, match="hosts.1.peer_uri"):
        parse_topology(doc)


def test_the_example_cluster_topology_users_copy_is_valid():
    """examples/cluster.yaml is what docs/real-cluster.md tells a user to copy: it must parse."""
    from pathlib import Path

    from availlab.lab.topology import RemoteTopology, load_topology

    t = load_topology(Path(__file__).resolve().parents[2] / "examples" / "cluster.yaml")
    assert isinstance(t, RemoteTopology) and [h.name for h in t.hosts] == ["hv1", "hv2"] and t.vms[0].name == "sql1"
