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
