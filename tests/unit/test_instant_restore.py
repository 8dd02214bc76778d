"""Instant restore's domain XML: the chain under the system disk, newest layer first, and the
reading of what a running VM still reads (what prune must keep). Beside the integration test in
tests/integration/test_backup_chains.py, which boots such a VM and moves it off the set."""

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from availlab.errors import BackupError
from availlab.events.catalog import BackupSet
from availlab.events.instant import attach_chain, backing_files, layers

DOMAIN = """<domain type='qemu'><name>r</name><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/shared/vms/r/disk.qcow2'/>
<target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/shared/vms/r/config.img'/>
<backingStore/><target dev='vdb' bus='virtio'/><readonly/></disk></devices></domain>"""


def sets(*ids):
    return [BackupSet(id=i, vm="sql1", type="full" if n == 0 else "incremental", parent=ids[n - 1] if n else None,
                      checkpoint=i, time=n, consistency="application", directory=f"/dr/{i}") for n, i in enumerate(ids)]


def test_the_chain_goes_under_the_system_disk_newest_first_and_ends():
    xml = attach_chain(DOMAIN, sets("f", "i1", "i2"))
    assert backing_files(xml) == ["/dr/i2/vda.qcow2", "/dr/i1/vda.qcow2", "/dr/f/vda.qcow2"]
    vda = next(d for d in ET.fromstring(xml).iter("disk") if d.find("target").get("dev") == "vda")
    assert vda.find("source").get("file") == "/shared/vms/r/disk.qcow2"  # the overlay takes the writes
    assert [c.tag for c in vda][:3] == ["driver", "source", "backingStore"]
    full = vda.find("backingStore/backingStore/backingStore")
    assert full.find("format").get("type") == "qcow2" and list(full.find("backingStore")) == []
    assert layers(sets("f", "i1")) == [Path("/dr/i1/vda.qcow2"), Path("/dr/f/vda.qcow2")]


def test_a_moved_off_vm_reads_no_backing_file():
    assert backing_files(DOMAIN) == []


def test_a_domain_without_a_system_disk_is_refused():
    with pytest.raises(BackupError, match="no disk vda"):
        attach_chain("<domain><devices/></domain>", sets("f"))


class _FakeHv:
    def __init__(self, domains):
        self._domains = domains

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def domains(self):
        from types import SimpleNamespace

        return [SimpleNamespace(name=n) for n in self._domains]

    def domain_xml(self, name, inactive=False):
        return self._domains[name]


def _lab(monkeypatch, per_host, lost=()):
    from types import SimpleNamespace

    from availlab.errors import HypervisorError
    from availlab.events import instant

    def connect(h):
        if per_host[h.name] is None:
            raise HypervisorError(f"cannot connect to {h.name}")
        return _FakeHv(per_host[h.name])

    monkeypatch.setattr(instant, "provider", lambda st: SimpleNamespace(connect=connect))
    return SimpleNamespace(hosts={n: SimpleNamespace(name=n) for n in per_host}, lost_hosts=list(lost), vms={})


def _catalogued(*ids):
    out = sets(*ids)
    for b in out:
        b.files = [{"name": "vda.qcow2", "size": 1, "sha256": "x"}, {"name": "domain.xml", "size": 1, "sha256": "y"}]
    return out


def test_in_use_names_the_sets_a_running_domain_reads_on_any_host(monkeypatch):
    from availlab.events.instant import in_use

    chain = _catalogued("f", "i1", "i2")
    booted = attach_chain(DOMAIN, chain[:2])  # an instant restore of i1, not yet moved off
    st = _lab(monkeypatch, {"h1": {"plain": DOMAIN}, "h2": {"r": booted}})
    assert in_use(st, chain) == {"f", "i1"}
    st.vms["building"] = type("V", (), {"reads_sets": ["i2", "elsewhere"]})()  # recorded by a restore
    assert in_use(st, chain) == {"f", "i1", "i2"}


def test_in_use_refuses_when_a_host_cannot_be_asked_but_skips_a_lost_one(monkeypatch):
    from availlab.events.instant import in_use

    chain = _catalogued("f")
    with pytest.raises(BackupError, match="cannot tell whether a VM on h2 still runs from a backup set"):
        in_use(_lab(monkeypatch, {"h1": {}, "h2": None}), chain)
    assert in_use(_lab(monkeypatch, {"h1": {}, "h2": None}, lost=["h2"]), chain) == set()


class _PullingHv:
    """A hypervisor whose block pull never ends (or ends with the chain still read)."""

    def __init__(self, xml, job=True):
        self.xml, self.job, self.calls = xml, job, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def domain_xml(self, name, inactive=False):
        return self.xml

    def block_job(self, name, disk):
        return {"cur": 1, "end": 2} if self.job else None

    def block_pull(self, name, disk, mib_s):
        self.calls.append("pull")

    def block_job_abort(self, name, disk):
        self.calls.append("abort")

    def define(self, xml):
        self.calls.append("define")


def _moving(monkeypatch, hv):
    from types import SimpleNamespace

    from availlab.events import instant

    monkeypatch.setattr(instant, "provider", lambda st: SimpleNamespace(connect=lambda h: hv))
    cleared = []
    monkeypatch.setattr(instant, "reads_no_set", lambda st, name: cleared.append(name))
    return SimpleNamespace(hosts={"h1": SimpleNamespace(name="h1")}), cleared


def test_a_move_off_that_outlasts_its_timeout_is_aborted_and_the_sets_stay_kept(monkeypatch):
    from availlab.events.instant import move_off

    hv = _PullingHv(attach_chain(DOMAIN, sets("f")), job=True)
    st, cleared = _moving(monkeypatch, hv)
    with pytest.raises(BackupError, match="aborted, the VM still runs from the set .*availlab move-off r"):
        move_off(st, "h1", "r", timeout_s=0)
    assert hv.calls == ["abort"] and cleared == []  # a pull already running is waited for, not restarted


def test_a_pull_that_ends_with_the_chain_still_read_is_an_error_not_a_success(monkeypatch):
    from availlab.events.instant import move_off

    hv = _PullingHv(attach_chain(DOMAIN, sets("f")), job=False)
    st, cleared = _moving(monkeypatch, hv)
    with pytest.raises(BackupError, match="ended but its disk still reads /dr/f/vda.qcow2"):
        move_off(st, "h1", "r")
    assert hv.calls == ["pull"] and cleared == []


def test_a_vm_already_moved_off_is_left_as_it_is(monkeypatch):
    from availlab.events.instant import move_off

    hv = _PullingHv(DOMAIN, job=False)
    st, cleared = _moving(monkeypatch, hv)
    move_off(st, "h1", "r")
    assert hv.calls == [] and cleared == ["r"]
