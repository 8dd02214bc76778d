"""A failover cluster's maximum: 16 hosts, each with its own libvirtd and host UUID; and what keeps
`lab up` fast at that size: libvirtd probes QEMU once per lab, and never again on each lookup."""

import time

import pytest

from availlab.errors import LabError
from availlab.lab import hostd
from availlab.lab import providers as lab
from availlab.lab.accel import choose_accel
from availlab.lab.image import ensure_image
from availlab.lab.virt import Hypervisor

from .conftest import residue_report, topology

LAB = "i16"


def _timed_up(name: str, hosts: int):
    lab.down(name)
    t0 = time.monotonic()
    st = lab.up(topology(name, hosts=hosts))
    took = time.monotonic() - t0
    assert len(st.hosts) == hosts and not lab.health(st)
    return took, st


def test_sixteen_hosts_come_up_distinct_and_go_down_clean(figures, monkeypatch, tmp_path):
    """The guard of `lab up` (issue 26, and before it 4-5 s per host probing a KVM that hangs):
    16 hosts must come up in less than twice a 1-host lab that probes QEMU's capabilities, both
    from one throw-away seed, measured one after the other. Healthy here: 2.3-2.5 s against
    3.5-4 s. A cost per host of one probe makes it ~16 times."""
    choose_accel("auto", ensure_image())  # not timed: the image and the KVM verdict are cached per machine
    monkeypatch.setattr(hostd, "caps_seed_root", lambda: tmp_path / "caps")
    try:
        cold_1, _ = _timed_up("i1", 1)  # no seed: its libvirtd probes QEMU, and seeds the next labs
        assert list((tmp_path / "caps").rglob("*.xml")), "the 1-host lab's probe became the seed"
        lab.down("i1")
        warm_2, _ = _timed_up("i2", 2)
        lab.down("i2")
        warm_16, st = _timed_up(LAB, 16)
        uuids = set()
        for h in st.hosts.values():
            with Hypervisor(h.name, h.uri) as hv:
                uuids.add(hv.host_uuid())
        assert len(uuids) == 16
        assert len({h.address for h in st.hosts.values()}) == 16
    finally:
        for name in ("i1", "i2", LAB):
            lab.down(name)
    figures["lab_up_s (16 hosts)"] = round(warm_16, 1)
    figures["lab up: 1 host probing QEMU / 2 hosts / 16 hosts"] = (
        f"{cold_1:.1f} / {warm_2:.1f} / {warm_16:.1f} s (16 hosts / 1 probing: {warm_16 / cold_1:.2f}, limit 2)")
    assert warm_16 < 2 * cold_1, (f"16 hosts came up in {warm_16:.1f} s, a 1-host lab that probed QEMU "
                                  f"in {cold_1:.1f} s: something costs about a probe per host")
    for name in ("i1", "i2", LAB):
        assert residue_report(name) == {"namespaces": [], "cgroups": [], "processes": []}


def test_a_daemon_that_probes_qemu_on_every_lookup_is_refused_at_lab_up(monkeypatch, tmp_path):
    """Issue 26's mechanism put back on purpose: /dev/null over /dev/kvm, which libvirt calls a
    usable KVM and QEMU does not. `lab up` must refuse such a lab before any VM runs on it, and
    say what its daemon saw, instead of letting every VM start take minutes."""
    import os

    if not os.path.exists("/dev/kvm") or choose_accel("auto", ensure_image()).accel != "tcg":
        pytest.skip("needs the reference kind of machine: a /dev/kvm that exists but cannot run the lab's guests")
    old = 'mount --bind /dev/null /dev/kvm'
    script = hostd.START_SCRIPT.replace('mount --bind "$dir/no-kvm" /dev/kvm\n    mount -o remount,bind,ro /dev/kvm', old)
    assert old in script, "the start script changed: update this test's copy of issue 26's mount"
    monkeypatch.setattr(hostd, "START_SCRIPT", script)
    monkeypatch.setattr(hostd, "caps_seed_root", lambda: tmp_path / "caps")
    lab.down("iprobe")
    try:
        with pytest.raises(LabError, match=r"probed QEMU's capabilities again on a second lookup.*device 1:3, read-write"):
            lab.up(topology("iprobe", hosts=1))
    finally:
        lab.down("iprobe")
    assert residue_report("iprobe") == {"namespaces": [], "cgroups": [], "processes": []}
    assert not list((tmp_path / "caps").rglob("*.xml")), "a daemon's stale probe must not become the seed"
