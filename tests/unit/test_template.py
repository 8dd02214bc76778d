"""Booted templates: what the key fixes, what a restored VM may differ in, how its identity is
given. The restore itself runs on the real lab (tests/integration/test_template.py)."""

import base64
import json
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from availlab.errors import HypervisorError, VMError
from availlab.lab.recipe import GuestImage
from availlab.vm import template
from availlab.vm.domain_xml import DomainSpec, render

KEY = template.TemplateKey(image="d" * 64, database="postgresql", name="sql1", memory_mib=512, vcpus=1,
                           address="10.213.0.101/24", domain_type="qemu", libvirt=9000000, qemu=7002000)


def test_every_field_of_the_key_names_another_template():
    seen = {KEY.digest()}
    for field, other in (("image", "e" * 64), ("database", "mariadb"), ("name", "sql2"), ("memory_mib", 1024),
                         ("vcpus", 2),
                         ("address", "10.213.0.102/24"), ("domain_type", "kvm"), ("libvirt", 9001000),
                         ("qemu", 8000000), ("cmdline", "root=/dev/vda pti=on"),
                         ("version", template.TEMPLATE_VERSION + 1)):
        seen.add(replace(KEY, **{field: other}).digest())
    assert len(seen) == 12
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


def test_the_postgresql_verifier_completes_rfc_7677s_exchange(monkeypatch):
    """The stored keys we send let a server check RFC 7677's own client proof for "pencil" and
    produce its server signature: the lab password works without ever being sent."""
    import hashlib
    import hmac

    from availlab import dialects

    monkeypatch.setattr(dialects.secrets, "token_bytes", lambda n: base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
    verifier = dialects.scram_verifier("pencil")
    head, keys = verifier.split("$", 1)[1].split("$")
    assert verifier.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$") and head == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}".encode()
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_key = bytes(a ^ b for a, b in zip(proof, hmac.new(stored, auth, "sha256").digest(), strict=True))
    assert hashlib.sha256(client_key).digest() == stored
    assert base64.b64encode(hmac.new(server, auth, "sha256").digest()).decode() == \
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_the_mariadb_hash_is_mysql_native_password():
    from availlab.dialects import MARIADB, SQLSERVER, native_hash

    assert native_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
    assert MARIADB.password_statement("u", "password") == "SET PASSWORD = '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'"
    assert SQLSERVER.password_statement("u", "password") is None  # no lab image, no template


class Agent:
    """A guest agent that answers like qemu-ga (a stand-in beside the real restore test)."""

    def __init__(self, fail_pings=0):
        self.calls, self.fail_pings = [], fail_pings

    def agent_command(self, vm, cmd, timeout_s=10):
        self.calls.append(cmd)
        if cmd["execute"] == "guest-ping" and self.fail_pings:
            self.fail_pings -= 1
            raise HypervisorError("h1: guest agent of VM sql1: guest-ping: QEMU guest agent is not connected")
        if cmd["execute"] == "guest-exec":
            return {"pid": 7}
        if cmd["execute"] == "guest-exec-status":
            return {"exited": True, "exitcode": 0}
        return {}


def _restored(tmp_path, monkeypatch, reply):
    from availlab.clients import sql
    from availlab.lab.credentials import ensure_db_password
    from availlab.lab.state import LabState, VMState

    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    pw = ensure_db_password("lab-a")
    st = LabState(lab="lab-a", status="up", topology={}, client_namespace="availlab-lab-a-client")
    st.vms["sql1"] = VMState(name="sql1", address="10.213.0.101", host="h1", disk="", config_disk="",
                             console_log="", uuid="", created_at=0.0)
    calls = []
    monkeypatch.setattr(sql, "_call", lambda st_, dsn, req, timeout_s: calls.append((dsn, req)) or reply(pw))
    return st, template.Template(tmp_path, KEY, 20.0, 1.5, "template-pw"), pw, calls


def test_identity_logs_in_as_the_template_and_sends_only_a_hash(monkeypatch, tmp_path):
    st, t, pw, calls = _restored(tmp_path, monkeypatch, lambda pw: {"ok": True})
    agent = Agent(fail_pings=2)
    template.give_identity(agent, st, "sql1", t, pw)
    kinds = [c["execute"] for c in agent.calls]
    assert kinds == ["guest-ping"] * 3 + ["guest-exec", "guest-exec-status"]  # waited for the agent, set the clock
    run = agent.calls[3]["arguments"]
    assert run["path"] == "/bin/date" and abs(float(run["arg"][-1][1:]) - time.time()) < 5
    ((dsn, req),) = calls
    assert dsn.password == "template-pw" and req["mode"] == "wait"
    assert "SCRAM-SHA-256$4096:" in req["then_sql"] and pw not in req["then_sql"]


def test_a_password_that_does_not_take_fails_without_showing_it(monkeypatch, tmp_path):
    st, t, pw, _ = _restored(tmp_path, monkeypatch, lambda pw: {"ok": False, "error": f"rejected '{pw}'"})
    with pytest.raises(VMError, match="could not be set") as exc:
        template.give_identity(Agent(), st, "sql1", t, pw)
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
    assert template.find(image, KEY) is None  # no password
    (d / "password").write_text("tp\n")
    assert template.find(image, KEY).boot_s == 20.0 and template.find(image, KEY).password == "tp"
    assert template.find(image, replace(KEY, vcpus=2)) is None  # another shape, another directory
    (d / "template.json").write_text(json.dumps({"key": asdict(replace(KEY, qemu=1))}))
    assert template.find(image, KEY) is None  # a record that disagrees with its place


class Builder(Agent):
    """A host that 'boots' and 'saves' a template domain: what build() asks of libvirt."""

    def __init__(self, fail_at=None):
        super().__init__()
        self.fail_at, self.domains = fail_at, set()

    def create(self, xml):
        self.domains.add("sql1")

    def save(self, name, path):
        if self.fail_at == "save":
            raise HypervisorError("h1: save VM sql1: no space left on device")
        Path(path).write_bytes(b"memory")
        self.domains.discard(name)

    def destroy(self, name):
        self.domains.discard(name)


def _image(tmp_path):
    import subprocess

    base = tmp_path / "rootfs.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "16M"], check=True)
    return GuestImage(directory=tmp_path, disk=base, kernel=tmp_path / "k", initrd=tmp_path / "i", digest="d" * 64)


def _build(hv, image):
    return template.build(hv, image, KEY, lambda **kw: "<domain/>", lambda log, deadline: None, 60)


def test_a_build_that_fails_leaves_no_domain_and_no_template(tmp_path, monkeypatch):
    monkeypatch.setattr(template, "QUIESCE_S", 0)
    image, hv = _image(tmp_path), Builder(fail_at="save")
    with pytest.raises(HypervisorError):
        _build(hv, image)
    assert not hv.domains and template.find(image, KEY) is None
    assert not list((tmp_path / "templates").glob(f"{KEY.digest()}*"))


def test_a_build_replaces_what_an_interrupted_discard_left_and_a_discard_is_never_half_seen(tmp_path, monkeypatch):
    monkeypatch.setattr(template, "QUIESCE_S", 0)
    image = _image(tmp_path)
    leftover = template.directory(image, KEY)
    leftover.mkdir(parents=True)
    (leftover / "memory.save").write_bytes(b"half")  # no record: not a template
    t, fresh = _build(Builder(), image)
    assert fresh and template.find(image, KEY) == t and t.password
    assert _build(Builder(), image) == (t, False)  # built once: the next finds it
    assert oct(t.disk.stat().st_mode & 0o777) == "0o400"
    with template.using(image, KEY) as held:
        assert held == t
    rebuilt = replace(t, password="another build's")
    template.discard(image, rebuilt, "test")  # not the one on disk now: left alone
    assert template.find(image, KEY) == t
    template.discard(image, t, "test")
    assert template.find(image, KEY) is None and not list(leftover.parent.glob(".*trash*"))


def test_a_new_build_drops_templates_no_vm_can_restore(tmp_path, monkeypatch):
    monkeypatch.setattr(template, "QUIESCE_S", 0)
    image = _image(tmp_path)
    old = replace(KEY, qemu=KEY.qemu - 1000)
    stale = template.directory(image, old)
    stale.mkdir(parents=True)
    (stale / "template.json").write_text(json.dumps({"key": asdict(old)}))
    kept = template.directory(image, replace(KEY, name="sql2"))  # same versions, another shape
    kept.mkdir()
    (kept / "template.json").write_text(json.dumps({"key": asdict(replace(KEY, name="sql2"))}))
    _build(Builder(), image)
    assert not stale.exists() and kept.exists() and template.find(image, KEY)


def test_a_discard_waits_for_a_restore_in_progress(tmp_path, monkeypatch):
    import threading

    monkeypatch.setattr(template, "QUIESCE_S", 0)
    image = _image(tmp_path)
    t, _ = _build(Builder(), image)
    with template.using(image, KEY) as held:
        assert held == t
        gone = threading.Thread(target=template.discard, args=(image, t, "test"))
        gone.start()
        gone.join(timeout=0.5)
        assert gone.is_alive() and template.find(image, KEY) == t  # a VM is being restored from it
    gone.join(timeout=5)
    assert not gone.is_alive() and template.find(image, KEY) is None
