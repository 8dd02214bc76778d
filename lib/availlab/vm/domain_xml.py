"""Render a lab VM's libvirt domain XML from a typed spec (skeleton constant + ElementTree).

Kept pure (no libvirt import) so it is unit-tested against a golden file. Lab facts that must
survive a migration (lab name, address, image) ride along in the domain's <metadata>, so any host
that holds the domain can say what it is.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ..errors import VMError

METADATA_NS = "urn:availlab:vm:1"

SKELETON = """\
<domain type="qemu">
  <name/>
  <uuid/>
  <metadata/>
  <memory unit="MiB"/>
  <vcpu/>
  <os>
    <type arch="x86_64" machine="q35">hvm</type>
    <kernel/>
    <initrd/>
    <cmdline/>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode="custom" match="exact" check="none"><model fallback="forbid">qemu64</model></cpu>
  <clock offset="utc"/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2" cache="none" discard="unmap"/>
      <source/>
      <target dev="vda" bus="virtio"/>
    </disk>
    <disk type="file" device="disk">
      <driver name="qemu" type="raw" cache="none"/>
      <source/>
      <target dev="vdb" bus="virtio"/>
      <readonly/>
    </disk>
    <interface type="bridge">
      <mac/>
      <source/>
      <model type="virtio"/>
      <rom enabled="no"/>
    </interface>
    <serial type="file">
      <source append="on"/>
      <target port="0"/>
    </serial>
    <channel type="unix">
      <target type="virtio" name="org.qemu.guest_agent.0"/>
    </channel>
    <rng model="virtio"><backend model="random">/dev/urandom</backend></rng>
    <memballoon model="none"/>
  </devices>
</domain>
"""


@dataclass(frozen=True)
class DomainSpec:
    name: str
    uuid: str
    lab: str
    address: str
    domain_type: str  # "qemu" (TCG) or "kvm"
    memory_mib: int
    vcpus: int
    kernel: Path
    initrd: Path
    cmdline: str
    disk: Path
    config_disk: Path
    mac: str
    bridge: str
    console_log: Path
    image: str


def child(el: ET.Element, path: str) -> ET.Element:
    """The element at `path`, which a domain XML must have (availlab's skeleton has it by
    construction; a saved or libvirt-written one may not, and is then refused by name)."""
    found = el.find(path)
    if found is None:
        raise VMError(f"domain XML: no <{path}> under <{el.tag}>")
    return found


def render(spec: DomainSpec) -> str:
    root = ET.fromstring(SKELETON)
    root.set("type", spec.domain_type)
    child(root, "name").text = spec.name
    child(root, "uuid").text = spec.uuid
    ET.register_namespace("availlab", METADATA_NS)
    meta = ET.SubElement(child(root, "metadata"), f"{{{METADATA_NS}}}vm")
    for key in ("lab", "address", "image"):
        meta.set(key, getattr(spec, key))
    child(root, "memory").text = str(spec.memory_mib)
    child(root, "vcpu").text = str(spec.vcpus)
    os_ = child(root, "os")
    child(os_, "kernel").text = str(spec.kernel)
    child(os_, "initrd").text = str(spec.initrd)
    child(os_, "cmdline").text = spec.cmdline
    dev = child(root, "devices")
    disks = dev.findall("disk")
    child(disks[0], "source").set("file", str(spec.disk))
    child(disks[1], "source").set("file", str(spec.config_disk))
    nic = child(dev, "interface")
    child(nic, "mac").set("address", spec.mac)
    child(nic, "source").set("bridge", spec.bridge)
    child(dev, "serial/source").set("path", str(spec.console_log))
    ET.indent(root, "  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def read_metadata(xml: str) -> dict[str, str]:
    """The availlab metadata of a domain XML (empty if the domain is not a lab VM)."""
    node = ET.fromstring(xml).find(f"metadata/{{{METADATA_NS}}}vm")
    return dict(node.attrib) if node is not None else {}
