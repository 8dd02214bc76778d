import pytest

from availlab.errors import TopologyError, UsageError
from availlab.lab.topology import load_topology, parse_topology
from availlab.paths import lab_dir


def base(**over):
    d = {"name": "t", "hosts": [{"name": "h1"}, {"name": "h2", "cores": 2}]}
    d.update(over)
    return d


def test_default_topology_is_two_hosts():
    topo = load_topology(lab_dir() / "default.yaml")
    assert [h.name for h in topo.hosts] == ["h1", "h2"]
    assert topo.accel == "auto"
    assert topo.network.cidr == "10.213.0.0/24"


@pytest.mark.parametrize("data, field, words", [
    (base(hosts=[{"name": "h1", "cores": -1}]), "hosts.0.cores", "greater than 0"),
    (base(hosts=[{"name": "H1"}]), "hosts.0.name", "lower-case"),
    (base(hosts=[{"name": "h1"}, {"name": "h1"}]), "hosts", "duplicate host name 'h1'"),
    (base(hosts=[]), "hosts", "at least one host"),
    (base(hosts=[{"name": f"h{i}"} for i in range(17)]), "hosts", "at most 16"),
    (base(hosts=[{"name": "h1", "colour": "red"}]), "hosts.0.colour", "Extra inputs"),
    (base(network={"cidr": "10.0.0.0/28"}), "network.cidr", "at least a /24"),
    (base(network={"cidr": "8.8.8.0/24"}), "network.cidr", "private range"),
    (base(network={"cidr": "banana"}), "network.cidr", "not an IPv4 network"),
    (base(accel="fast"), "accel", "'auto', 'kvm' or 'tcg'"),
    (base(hosts=[{"name": "client"}]), "hosts", "reserved"),
    (base(hosts=[{"name": "h1", "site": "dr"}]), "(top level)", "at least one host must be at site 'primary'"),
    (base(vm={"memory_mib": 64}), "vm.memory_mib", "greater than or equal to 256"),
])
def test_bad_fields_are_named(data, field, words):
    with pytest.raises(TopologyError) as exc:
        parse_topology(data, "test.yaml")
    msg = str(exc.value)
    assert f"  {field}: " in msg, msg
    assert words in msg, msg
    assert "test.yaml" in msg


def test_topology_error_is_a_usage_error():
    with pytest.raises(UsageError):
        parse_topology(["not", "a", "mapping"])


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(TopologyError) as exc:
        parse_topology(base(accel="x", network={"cidr": "nope"}))
    assert "accel" in str(exc.value) and "network.cidr" in str(exc.value)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts: [unclosed\n")
    with pytest.raises(TopologyError, match="not valid YAML"):
        load_topology(bad)
    with pytest.raises(TopologyError, match="cannot read topology file"):
        load_topology(tmp_path / "missing.yaml")


def test_unknown_host_lookup_names_the_choices():
    topo = parse_topology(base())
    with pytest.raises(TopologyError, match="unknown host 'h9'; this lab has: h1, h2"):
        topo.host("h9")


def test_overrides_are_revalidated():
    from availlab.lab.topology import with_overrides

    topo = parse_topology(base())
    four = with_overrides(topo, name="big", hosts=4, accel="tcg")
    assert [h.name for h in four.hosts] == ["h1", "h2", "h3", "h4"] and four.name == "big"
    assert four.hosts[3].cores == topo.hosts[0].cores and four.accel == "tcg"
    with pytest.raises(TopologyError, match="hosts: must be between 1 and 16"):
        with_overrides(topo, hosts=0)
    with pytest.raises(TopologyError, match="name"):
        with_overrides(topo, name="Bad Name")
