"""What a TCG lab's daemons see at /dev/kvm, and the seeds of libvirtd's QEMU probe (issue 26), on
files only; the real daemons are proven in tests/integration/test_lab_scale.py (a daemon that
probes on every lookup is refused) and test_lab_lifecycle.py (no probe after lab up)."""

from __future__ import annotations

import os

from availlab.lab import hostd


def _host(tmp_path, name="h1") -> hostd.HostDaemon:
    return hostd.HostDaemon(name, f"availlab-t-{name}", tmp_path / "hosts" / name, "10.0.0.11")


def test_a_tcg_hosts_kvm_is_a_read_only_regular_file_that_says_why(tmp_path):
    """libvirt must read it as no KVM (access(W_OK) fails on a read-only mount), as QEMU does."""
    h = _host(tmp_path)
    hostd.write_config(h)
    assert "runs guests on TCG" in (h.directory / "no-kvm").read_text()
    script = hostd.START_SCRIPT
    assert 'mount --bind "$dir/no-kvm" /dev/kvm' in script and "mount -o remount,bind,ro /dev/kvm" in script
    assert "/dev/null /dev/kvm" not in script


def test_capability_seeds_are_kept_per_accelerator_and_replace_the_old_shared_one(monkeypatch, tmp_path):
    monkeypatch.setattr(hostd, "caps_seed_root", lambda: tmp_path / "seeds")
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "old.xml").write_text("probed under /dev/null")  # the layout before issue 26
    a, b, c = _host(tmp_path, "h1"), _host(tmp_path, "h2"), _host(tmp_path, "h3")
    assert hostd.seed_capabilities(a, "tcg") == 0  # nothing probed yet: the old shared seed is not taken
    probed = a.directory / "cache" / "qemu" / "capabilities"
    probed.mkdir(parents=True)
    (probed / "x86.xml").write_text("<qemuCaps/>")
    hostd.save_capabilities(a, "tcg")
    assert not (tmp_path / "seeds" / "old.xml").exists()
    assert hostd.seed_capabilities(b, "tcg") == 1
    assert (b.directory / "cache" / "qemu" / "capabilities" / "x86.xml").read_text() == "<qemuCaps/>"
    assert hostd.seed_capabilities(c, "kvm") == 0, "a KVM lab's daemons see KVM: a TCG probe is stale for them"
    assert hostd.seed_capabilities(b, "tcg") == 0, "a host's own cache is never overwritten"


def test_capability_files_change_identity_when_libvirtd_writes_a_new_probe(tmp_path):
    h = _host(tmp_path)
    d = h.directory / "cache" / "qemu" / "capabilities"
    assert hostd.capability_files(h) == {}
    d.mkdir(parents=True)
    (d / "x86.xml").write_text("one")
    first = hostd.capability_files(h)
    assert hostd.capability_files(h) == first  # a lookup that found its cache valid touches nothing
    (d / "x86.xml").unlink()  # what libvirtd does before it probes again
    (d / "new.xml").write_text("placeholder, so the inode is not reused")
    (d / "x86.xml").write_text("two")
    os.utime(d / "x86.xml", ns=(1, 1))
    assert hostd.capability_files(h)["x86.xml"] != first["x86.xml"]


def test_kvm_view_of_a_host_whose_daemon_is_not_running(tmp_path):
    assert hostd.kvm_view(_host(tmp_path)) == "unknown (libvirtd not running)"
