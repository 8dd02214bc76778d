"""Booted templates: what the key fixes, what a restored VM may differ in, how its identity is
given. The restore itself runs on the real lab (tests/integration/test_template.py)."""

import base64
import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from availlab import template
from availlab.domain_xml import DomainSpec, render
from availlab.errors import HypervisorError, VMError
from availlab.image import GuestImage

KEY = template.TemplateKey(image="d" * 64, database="postgresql", name="sql1", memory_mib=512, vcpus=1,
                           address="10.213.0.101/24", domain_type="qemu", libvirt=9000000, qemu=7002000)


def test_every_field_of_the_key_names_another_template():
    seen = {KEY.digest()}
    for field, other in (("image", "e" * 64), ("database", "mariadb"), ("name", "sql2"), ("memory_mib", 1024),
                         ("vcpus", 2),
                         ("address", "10.213.0.102/24"), ("domain_type", "kvm"), ("libvirt", 9001000),
                         ("qemu", 8000000), ("version", template.TEMPLATE_VERSION + 1)):
        seen.add(replace(KEY, **{field: other}).digest())
    assert len(seen) == 11
    assert KEY.uuid() == replace(KEY).uuid() != replace(KEY, address="10.213.0.102/24").uuid()


def _spec(**over) -> DomainSpec:
    base = DomainSpec(name="sql1", uuid=KEY.uuid(), lab="lab-a", address="10.213.0.101", domain_type="qemu",
                      memory_mib=512, vcpus=1, kernel=Path("/c/images/d/vmlinuz"), initrd=Path("/c/images/d/initrd"),
                      cmdline="console=ttyS0", disk=Path("/s/vms/sql1/disk.qcow2"),
                      config_disk=Path("/s/vms/sql1/config.img"), mac="52:54:00:d5:00:65", bridge="br0",
                      console_log=Path("/s/logs/sql1.console.log"), image="d" * 64)
    return replace(base, **over)


def _abi(xml: str) -> str:
    """The XML without what a restore leaves free: metadata and host file paths."""
    root = ET.fromstring(xml)
    root.find("metadata").clear()
    for src in root.iter("source"):
        for attr in ("file", "path"):
            src.attrib.pop(attr, None)
    return ET.tostring(root, encoding="unicode")


def test_a_vm_differs_from_its_template_only_where_libvirt_allows():
    vm = render(_spec())
    tmpl = render(_spec(lab="template", disk=Path("/c/t/disk.qcow2"),
                        config_disk=Path("/c/t/config.img"), console_log=Path("/c/t/console.log")))
    assert vm != tmpl and _abi(vm) == _abi(tmpl)
    assert _abi(render(_spec(mac="52:54:00:d5:00:66"))) != _abi(vm)  # the MAC is checked: it is in the key
    assert _abi(render(_spec(uuid="00000000-0000-0000-0000-000000000001"))) != _abi(vm)
    assert _abi(render(_spec(name="sql2"))) != _abi(vm)  # so is the name: it is in the key too


@pytest.mark.parametrize("database", sorted(template.PASSWORD_SETTERS))
def test_the_password_goes_on_stdin_quoted(database):
    client, args, statement = template.PASSWORD_SETTERS[database]
    sql = statement("it's;a}pw")
    assert "'it''s;a}pw'" in sql and "it's" not in " ".join([client, *args])


class Agent:
    """A guest agent that answers like qemu-ga (a stand-in beside the real restore test)."""

    def __init__(self, fail_pings=0, exitcode=0, err=b""):
        self.calls, self.fail_pings, self.exitcode, self.err = [], fail_pings, exitcode, err

    def agent_command(self, vm, cmd, timeout_s=10):
        self.calls.append(cmd)
        if cmd["execute"] == "guest-ping" and self.fail_pings:
            self.fail_pings -= 1
            raise HypervisorError("h1: guest agent of VM sql1: guest-ping: QEMU guest agent is not connected")
        if cmd["execute"] == "guest-exec":
            return {"pid": 7}
        if cmd["execute"] == "guest-exec-status":
            return {"exited": True, "exitcode": self.exitcode, "err-data": base64.b64encode(self.err).decode()}
        return {}


def test_identity_waits_for_the_agent_then_sets_clock_and_password(monkeypatch, tmp_path):
    agent = Agent(fail_pings=2)
    template.give_identity(agent, "lab-a", "sql1", "postgresql", "s3cret9")
    kinds = [c["execute"] for c in agent.calls]
    assert kinds[:3] == ["guest-ping"] * 3 and kinds[3] == "guest-set-time"
    (run,) = [c["arguments"] for c in agent.calls if c["execute"] == "guest-exec"]
    assert "s3cret9" not in json.dumps(run["arg"]) and "s3cret9" not in run["path"]
    assert "s3cret9" in base64.b64decode(run["input-data"]).decode()


def test_a_password_that_does_not_take_fails_without_showing_it(monkeypatch, tmp_path):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    from availlab.credentials import ensure_db_password

    pw = ensure_db_password("lab-a")
    agent = Agent(exitcode=1, err=f"ERROR: at ALTER ROLE ... PASSWORD '{pw}'".encode())
    with pytest.raises(VMError, match="could not set") as exc:
        template.give_identity(agent, "lab-a", "sql1", "postgresql", pw)
    assert pw not in str(exc.value)


def test_only_a_complete_template_of_the_same_key_is_found(tmp_path):
    image = GuestImage(directory=tmp_path, disk=tmp_path / "disk.qcow2", kernel=tmp_path / "k",
                       initrd=tmp_path / "i", digest="d" * 64)
    d = template.directory(image, KEY)
    assert template.find(image, KEY) is None
    d.mkdir(parents=True)
    (d / "memory.save").write_bytes(b"x")
    assert template.find(image, KEY) is None  # no record: a build that never finished
    (d / "template.json").write_text(json.dumps({"key": asdict(KEY), "boot_s": 20.0, "save_s": 2.0}))
    assert template.find(image, KEY) is None  # no disk
    (d / "disk.qcow2").write_bytes(b"q")
    assert template.find(image, KEY).boot_s == 20.0
    assert template.find(image, replace(KEY, vcpus=2)) is None  # another shape, another directory
    (d / "template.json").write_text(json.dumps({"key": asdict(replace(KEY, qemu=1))}))
    assert template.find(image, KEY) is None  # a record that disagrees with its place
