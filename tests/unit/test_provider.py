"""The provider protocol, against libvirt's own test driver (test:///default: a real libvirt
connection with one running domain, "test", held in this process): a remote cluster's
connection refuses every change to a domain its topology does not declare, whoever asks; the
local lab's does not; refusals are declared per provider, not tested at each caller."""

import re
from pathlib import Path

import pytest

from availlab.errors import AvailLabError, LabError, UsageError, VMError
from availlab.lab.hypervisor import MigrateRequest
from availlab.lab.provider_api import CAPABILITIES
from availlab.lab.providers import provider, providers
from availlab.lab.state import HostState, LabState, VMState

URI = "test:///default"
THROWAWAY = """<domain type='test'><name>{name}</name><memory>1024</memory>
<os><type>hvm</type></os></domain>"""


def _state(kind: str, declared: tuple[str, ...] = ("sql1",)) -> LabState:
    st = LabState(lab="prodlike", status="up", topology={}, provider=kind)
    st.hosts["h1"] = HostState(name="h1", namespace="", directory="", address="", uri=URI)
    for v in declared:
        st.vms[v] = VMState(name=v, address="", host="h1", disk="", config_disk="", console_log="", uuid="",
                            created_at=0.0)
    return st


def _test_domain_state() -> tuple[int, int]:
    import libvirt

    conn = libvirt.open(URI)
    try:
        return conn.lookupByName("test").state()
    finally:
        conn.close()


def test_a_remote_connection_refuses_every_change_to_an_undeclared_domain():
    before = _test_domain_state()
    with provider(_state("remote")).connect("h1") as hv:
        assert "test" in [d.name for d in hv.domains()]  # reading is allowed
        hv.domain_xml("test")
        changes = [lambda: hv.destroy("test"), lambda: hv.undefine("test"), lambda: hv.start("test"),
                   lambda: hv.resume("test"), lambda: hv.abort_job("test"), lambda: hv.fs_freeze("test"),
                   lambda: hv.fs_thaw("test"), lambda: hv.set_max_downtime("test", 100),
                   lambda: hv.migrate("test", "qemu+ssh://elsewhere/system", MigrateRequest()),
                   lambda: hv.agent_command("test", {"execute": "guest-exec"}),
                   lambda: hv.backup_begin("test", "<domainbackup/>", None),
                   lambda: hv.define(THROWAWAY.format(name="test"))]
        for change in changes:
            with pytest.raises(UsageError, match=r"'test' is not declared in remote cluster 'prodlike' "
                                                 r"\(declared: sql1\)"):
                change()
        assert not hv.has_domain("intruder")
        with pytest.raises(UsageError, match="not declared"):
            hv.define(THROWAWAY.format(name="intruder"))
        assert not hv.has_domain("intruder")
    assert _test_domain_state() == before


def test_a_remote_cluster_lists_only_its_declared_vms_and_names_the_others():
    prov = provider(_state("remote"))
    assert prov.running() == {}  # "test" runs, but is not the lab's
    assert prov.running(owned_only=False) == {"test": "h1"}
    assert prov.foreign_vms({"h1"}) == ["test"]
    assert prov.foreign_vms({"h2"}) == []
    status = prov.status()
    assert status["vms"] == [] and status["hosts"][0]["daemon"] == "remote"
    declared = provider(_state("remote", declared=("test",)))
    assert declared.running() == {"test": "h1"} and declared.locate("test") == ("h1", "running")


def test_the_local_lab_owns_what_runs_on_its_hosts():
    prov = provider(_state("local", declared=()))
    assert prov.owns("anything") and prov.foreign_vms({"h1"}) == []
    with prov.connect("h1") as hv:  # the guard lets changes through, on a domain of our own
        hv.define(THROWAWAY.format(name="local-own"))
        try:
            hv.start("local-own")
            assert hv.destroy("local-own")
        finally:
            import libvirt

            raw = libvirt.open(URI)  # the test driver lacks undefine's flags: clean up without them
            raw.lookupByName("local-own").undefine()
            raw.close()
        assert not hv.has_domain("local-own")


def test_refusals_are_declared_per_provider_and_name_the_lab():
    kinds = providers()
    assert set(kinds) == {"local", "remote"}
    for cls in kinds.values():
        assert set(cls.refusals) <= CAPABILITIES
    local, remote = provider(_state("local")), provider(_state("remote"))
    for cap in sorted(CAPABILITIES):
        local.require(cap, vm="sql1", what="x", problems="p")  # the local lab offers everything
        assert not remote.offers(cap)
        with pytest.raises((UsageError, LabError, VMError)) as exc:
            remote.require(cap, vm="sql1", what="x", problems="p")
        assert isinstance(exc.value, AvailLabError) and "{" not in str(exc.value)
    with pytest.raises(UsageError, match="prodlike"):
        remote.require("restore")
    with pytest.raises(ValueError):
        local.require("format_the_disks")  # a misspelt capability is a bug, never a silent yes


def test_an_unknown_provider_in_a_state_file_is_named():
    with pytest.raises(UsageError, match="unknown provider 'vsphere'"):
        provider(_state("vsphere"))


def test_no_module_asks_which_provider_a_lab_has():
    """The providers answer; callers do not branch on the provider's name."""
    lib = Path(__file__).resolve().parents[2] / "lib" / "availlab"
    asks = re.compile(r"provider\s*[!=]=\s*[\"']|\.provider\s+in\b|is_remote|isinstance\([^)]*Provider")
    found = [f"{p.relative_to(lib)}:{i}" for p in sorted(lib.rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if asks.search(line)]
    assert found == []


def test_libvirt_connections_come_from_the_provider():
    """Only the provider (and `lab up` on a cluster, a watcher handed the guard, and `lab discover`
    before any topology exists, read-only) opens one."""
    lib = Path(__file__).resolve().parents[2] / "lib" / "availlab"
    allowed = {"lab/virt.py", "lab/provider_api.py", "lab/remote.py", "events/iopause.py", "lab/discover.py"}
    opened = [f"{p.relative_to(lib)}:{i}" for p in sorted(lib.rglob("*.py")) if str(p.relative_to(lib)) not in allowed
              for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bHypervisor\(", line)]
    assert opened == []
    raw = [f"{p.relative_to(lib)}:{i}" for p in sorted(lib.rglob("*.py")) if p.name != "virt.py"
           for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"libvirt\.open|\._conn\b", line)]
    assert raw == []


def test_a_declared_remote_vm_is_migrated_never_stopped():
    before = _test_domain_state()
    with provider(_state("remote", declared=("test",))).connect("h1") as hv:
        for change in (lambda: hv.destroy("test"), lambda: hv.undefine("test"), lambda: hv.fs_freeze("test"),
                       lambda: hv.agent_command("test", {"execute": "guest-exec"})):
            with pytest.raises(UsageError, match="availlab only abort job, migrate, set max downtime"):
                change()
    assert _test_domain_state() == before


def test_a_declared_domain_recreated_under_its_name_is_refused_by_its_uuid():
    """Issue 28: the allow-list checked names only; a domain recreated under a declared name (a
    copy, someone else's VM) was migrated. The UUID `lab up` saw is compared before each change."""
    import libvirt

    conn = libvirt.open(URI)
    try:
        real = conn.lookupByName("test").UUIDString()
    finally:
        conn.close()
    st = _state("remote", declared=("test",))
    st.vms["test"].uuid = "00000000-0000-0000-0000-000000000001"  # what `lab up` saw: another domain
    before = _test_domain_state()
    with provider(st).connect("h1") as hv:
        with pytest.raises(UsageError, match=f"'test' now has UUID {real}, not 00000000-.*recreated"):
            hv.set_max_downtime("test", 100)
    st.vms["test"].uuid = real.upper()  # the same domain: allowed (libvirt's case is not ours)
    provider(st).same_domain("test", real)
    assert _test_domain_state() == before
