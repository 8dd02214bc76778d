"""The domain XML is what libvirt sees of a lab VM: pinned by a golden file and checked against
libvirt's own schema (virt-xml-validate), so a change to it is always a deliberate one."""

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from availlab.vm.domain_xml import DomainSpec, read_metadata, render

GOLDEN = Path(__file__).parent.parent / "golden" / "domain-sql1.xml"


def spec(**over):
    d = dict(name="sql1", uuid="6f1c0c1e-7d7a-4c64-9d0b-0d6a1d2f3e4f", lab="default",
             address="10.213.0.101", domain_type="qemu", memory_mib=512, vcpus=1,
             kernel=Path("/cache/images/abc/vmlinuz"), initrd=Path("/cache/images/abc/initrd.img"),
             cmdline="root=/dev/vda rw console=ttyS0", disk=Path("/lab/shared/vms/sql1/disk.qcow2"),
             config_disk=Path("/lab/shared/vms/sql1/config.img"), mac="52:54:00:d5:00:65",
             bridge="br0", console_log=Path("/lab/shared/logs/sql1.console.log"), image="abc")
    d.update(over)
    return DomainSpec(**d)


def test_matches_golden_file():
    assert render(spec()) == GOLDEN.read_text()


def test_kvm_and_metadata():
    xml = render(spec(domain_type="kvm"))
    assert ET.fromstring(xml).get("type") == "kvm"
    assert read_metadata(xml) == {"lab": "default", "address": "10.213.0.101", "image": "abc"}
    assert read_metadata("<domain><name>x</name></domain>") == {}


def test_guest_agent_channel_and_bridge():
    xml = render(spec())
    assert 'name="org.qemu.guest_agent.0"' in xml
    assert '<source bridge="br0"' in xml
    assert "<readonly />" in xml  # config disk (holds the DB password) is read-only to the guest


def test_valid_against_libvirt_schema(tmp_path):
    assert shutil.which("virt-xml-validate"), "virt-xml-validate missing: run make setup"
    f = tmp_path / "d.xml"
    f.write_text(render(spec()))
    r = subprocess.run(["virt-xml-validate", str(f), "domain"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
