"""Backup catalogue, replication and chain rules on small real files (no lab needed)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from availlab import paths
from availlab.errors import BackupError, UsageError
from availlab.events import catalog
from availlab.events.catalog import BackupSet, chain, describe_files, list_sets, verify, write_set
from availlab.events.replicate import _copy_resumable, replicate
from availlab.events.restore import chain_spec


@pytest.fixture
def lab_state(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path / "state"))
    return SimpleNamespace(lab="t", dr_dir=str(tmp_path / "dr"), provider="local")


def make_set(st, set_id, parent=None, payload=b"x" * 100_000):
    d = catalog.site_dir(st, "primary") / set_id
    d.mkdir(parents=True)
    (d / "vda.qcow2").write_bytes(payload)
    (d / "domain.xml").write_text("<domain/>")
    b = BackupSet(id=set_id, vm="sql1", type="incremental" if parent else "full", parent=parent,
                  checkpoint=f"ck-{set_id}", time=len(list_sets(st, "primary")),
                  consistency="application", files=describe_files(d, ["vda.qcow2", "domain.xml"]))
    write_set(d, b)
    return catalog.find(st, set_id, "primary")


def flip_byte(path, offset=1234):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_intact_set_verifies_and_lists(lab_state):
    b = make_set(lab_state, "s-full")
    verify(b)
    [listed] = list_sets(lab_state)
    pub = listed.public()
    assert pub["id"] == "s-full" and pub["site"] == "primary" and pub["parent"] is None
    assert all(p.startswith("/") for p in pub["files"])


def test_one_flipped_byte_is_named_with_both_checksums(lab_state):
    b = make_set(lab_state, "s-full")
    f = catalog.site_dir(lab_state, "primary") / "s-full" / "vda.qcow2"
    flip_byte(f)
    with pytest.raises(BackupError) as exc:
        verify(b)
    msg = str(exc.value)
    assert str(f) in msg and b.files[0]["sha256"] in msg and paths.sha256_file(f) in msg


def test_replication_refuses_a_corrupted_set_and_ships_nothing(lab_state):
    make_set(lab_state, "s-full")
    flip_byte(catalog.site_dir(lab_state, "primary") / "s-full" / "vda.qcow2")
    with pytest.raises(BackupError, match="checksum mismatch"):
        replicate(lab_state, "s-full")
    assert list_sets(lab_state, "dr") == []


def test_replication_copies_the_chain_and_verifies_it(lab_state):
    make_set(lab_state, "a-full")
    make_set(lab_state, "b-inc", parent="a-full", payload=b"y" * 5000)
    r = replicate(lab_state, "b-inc")
    assert r.set_ids == ["a-full", "b-inc"] and r.bytes_copied > 105_000
    assert [b.id for b in chain(lab_state, "b-inc", "dr")] == ["a-full", "b-inc"]
    assert replicate(lab_state, "b-inc").set_ids == []  # already there
    # a set holds the database: private at the DR site even inside a directory open to all
    for f in (Path(lab_state.dr_dir) / "a-full").iterdir():
        assert f.stat().st_mode & 0o077 == 0, f
    assert (Path(lab_state.dr_dir) / "a-full").stat().st_mode & 0o077 == 0


def test_missing_parent_is_refused_by_name(lab_state):
    make_set(lab_state, "b-inc", parent="a-full")
    with pytest.raises(BackupError, match="parent set a-full is missing"):
        chain(lab_state, "b-inc", "primary")
    with pytest.raises(BackupError, match="parent set a-full is missing"):
        replicate(lab_state, "b-inc")


def test_unknown_set_and_site_are_usage_errors(lab_state):
    with pytest.raises(UsageError, match="no backup set 'nope' at the dr site"):
        catalog.find(lab_state, "nope", "dr")
    with pytest.raises(UsageError, match="site: must be one of"):
        catalog.site_dir(lab_state, "moon")


def test_interrupted_copy_resumes_and_a_bad_partial_is_recopied(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(bytes(range(256)) * 40_000)
    part = tmp_path / "part"
    part.write_bytes(src.read_bytes()[:1_000_000])  # a copy cut off half-way
    assert _copy_resumable(src, part) == src.stat().st_size - 1_000_000
    assert part.read_bytes() == src.read_bytes()
    bad = tmp_path / "bad"
    bad.write_bytes(b"garbage" * 1000)  # not a prefix of the source: start over
    assert _copy_resumable(src, bad) == src.stat().st_size
    assert bad.read_bytes() == src.read_bytes()


def test_chain_spec_reads_incrementals_over_the_full(tmp_path):
    sets = [SimpleNamespace(directory=str(tmp_path / n)) for n in ("full", "inc1", "inc2")]
    spec = json.loads(chain_spec(sets).removeprefix("json:"))
    assert spec["file"]["filename"].endswith("inc2/vda.qcow2")
    assert spec["backing"]["file"]["filename"].endswith("inc1/vda.qcow2")
    assert spec["backing"]["backing"]["file"]["filename"].endswith("full/vda.qcow2")
    assert "backing" not in spec["backing"]["backing"]


def _rewrite(b, **fields):
    path = Path(b.directory) / "set.json"
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("field, value, why", [("vm", "../etc", "not a plain name"),
                                               ("address", "10.0.0.1; rm", "not an IPv4 address"),
                                               ("database", "oracle", "not a known profile"),
                                               ("type", "weird", "type must be one of")])
def test_catalogue_fields_a_restore_builds_on_are_checked(lab_state, field, value, why):
    """set.json is not signed: every field a restore uses is validated when the set is read."""
    b = make_set(lab_state, "s-full")
    _rewrite(b, **{field: value})
    with pytest.raises(BackupError, match=why):
        catalog.find(lab_state, "s-full", "primary")


def test_a_chain_never_merges_another_vms_set(lab_state):
    make_set(lab_state, "s-full")
    b = make_set(lab_state, "s-inc", parent="s-full")
    _rewrite(catalog.find(lab_state, "s-full", "primary"), vm="other")
    with pytest.raises(BackupError, match="its parent s-full is a set of VM other"):
        chain(lab_state, b.id, "primary")


GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "domain-sql1.xml"
DIGEST = "0123456789abcdef"


@pytest.fixture
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "cache" / "images" / DIGEST
    d.mkdir(parents=True)
    for f in ("vmlinuz", "initrd.img", "rootfs.qcow2"):
        (d / f).write_bytes(b"\0")
    return d


def _set_with_xml(lab_state, xml):
    b = make_set(lab_state, "s-full")
    (Path(b.directory) / "domain.xml").write_text(xml)
    return b


def test_a_restored_domain_is_rendered_by_availlab_never_taken_from_the_set(lab_state, image_cache):
    """Issue 28, seen: a set's domain.xml that gained a host file as a disk was restored with it.
    Only memory, vCPUs and the image are read from it; the domain is availlab's template."""
    import xml.etree.ElementTree as ET

    from availlab.events.restore import set_shape
    from availlab.lab.recipe import GuestImage
    from availlab.lab.state import LabState, VMState
    from availlab.vm.create import domain_spec
    from availlab.vm.domain_xml import render

    evil = GOLDEN.read_text().replace('image="abc"', f'image="{DIGEST}"').replace(
        "</devices>", "<disk type='file' device='disk'><source file='/etc/shadow'/><target dev='vdz'/></disk>"
                      "<emulator>/bin/sh</emulator></devices>")
    assert "/etc/shadow" in evil
    memory, vcpus, digest, boot = set_shape([_set_with_xml(lab_state, evil)])
    assert (memory, vcpus, digest, boot) == (512, 1, DIGEST, (image_cache / "vmlinuz", image_cache / "initrd.img"))
    image = GuestImage(directory=image_cache, disk=image_cache / "x", kernel=boot[0], initrd=boot[1], digest=digest)
    st = LabState(lab="t", status="up", topology={}, accel={"accel": "tcg"})
    vm = VMState(name="sql9", address="10.213.0.109", host="h1", disk="/s/vms/sql9/disk.qcow2",
                 config_disk="/s/vms/sql9/config.img", console_log="/s/logs/sql9.log", uuid="u", created_at=0)
    root = ET.fromstring(render(domain_spec(st, vm, image, memory, vcpus)))
    assert sorted(d.find("source").get("file") for d in root.findall("devices/disk")) == \
        ["/s/vms/sql9/config.img", "/s/vms/sql9/disk.qcow2"]
    assert root.find("devices/emulator") is None and root.findtext("os/kernel") == str(image.kernel)


@pytest.mark.parametrize("edit, why", [(("<memory unit=\"MiB\">512", "<memory unit=\"GiB\">4096"), "allowed"),
                                       (("<vcpu>1", "<vcpu>999"), "allowed"),
                                       (("<vcpu>1", "<vcpu>x"), "does not give"),
                                       (("image=\"0123456789abcdef\"", "image=\"../../x\""), "names no guest image"),
                                       (("image=\"0123456789abcdef\"", "image=\"fedcba9876543210\""),
                                        "nor in the cache any more")])
def test_a_set_asking_for_too_much_or_an_image_that_is_gone_is_refused(lab_state, image_cache, edit, why):
    from availlab.events.restore import set_shape

    xml = GOLDEN.read_text().replace('image="abc"', f'image="{DIGEST}"').replace(*edit)
    with pytest.raises(BackupError, match=why):
        set_shape([_set_with_xml(lab_state, xml)])


def test_a_full_set_boots_the_kernel_it_carries_not_the_image_caches(lab_state, tmp_path, monkeypatch):
    """A recipe change and an `image prune` must not leave old sets unbootable: the full set keeps
    the kernel and initrd (catalogued, so verified), and a restore boots those."""
    from availlab.events.restore import set_shape
    from availlab.lab.recipe import BOOT_FILES

    monkeypatch.setenv("AVAILLAB_CACHE", str(tmp_path / "empty-cache"))
    d = catalog.site_dir(lab_state, "primary") / "s-full"
    d.mkdir(parents=True)
    (d / "vda.qcow2").write_bytes(b"x")
    (d / "domain.xml").write_text(GOLDEN.read_text().replace('image="abc"', f'image="{DIGEST}"'))
    for n in BOOT_FILES:
        (d / n).write_bytes(b"boot")
    write_set(d, BackupSet(id="s-full", vm="sql1", type="full", parent=None, checkpoint="c", time=0,
                           consistency="application",
                           files=describe_files(d, ["vda.qcow2", "domain.xml", *BOOT_FILES])))
    full = catalog.find(lab_state, "s-full", "primary")
    assert set_shape([full])[3] == (d / "vmlinuz", d / "initrd.img")
    flip_byte(d / "vmlinuz", 0)
    with pytest.raises(BackupError, match="checksum mismatch"):
        verify(full)  # restore verifies every catalogued file before it boots any


def test_keep_boot_files_copies_what_the_domain_boots(tmp_path):
    kernel, initrd = tmp_path / "k", tmp_path / "i"
    kernel.write_bytes(b"kernel")
    initrd.write_bytes(b"initrd")
    xml = f"<domain><os><kernel>{kernel}</kernel><initrd>{initrd}</initrd></os></domain>"
    work = tmp_path / "set"
    work.mkdir()
    assert catalog.keep_boot_files(work, xml) == ["vmlinuz", "initrd.img"]
    assert (work / "vmlinuz").read_bytes() == b"kernel" and (work / "initrd.img").read_bytes() == b"initrd"
    with pytest.raises(BackupError, match="no kernel and initrd"):
        catalog.keep_boot_files(work, "<domain><os/></domain>")


def test_two_labs_sharing_a_dr_site_list_and_prune_only_their_own_sets(lab_state):
    """Issue 28: labs sharing a DR site saw and pruned each other's sets. A set carries the id of
    the lab that took it; another lab's set is neither listed nor pruned."""
    from availlab.events.retention import prune
    from availlab.lab import identity
    from availlab.lab import state as lab_state_mod
    from availlab.lab.state import LabState

    lab_state = LabState(lab="t", status="up", topology={}, dr_dir=lab_state.dr_dir)
    lab_state_mod.save(lab_state)
    mine = identity.lab_id("t")
    for i, tag in enumerate((mine, "f" * 32, mine, "f" * 32)):
        b = make_set(lab_state, f"s{i}-full")
        _rewrite(b, lab_id=tag)
    assert [b.id for b in list_sets(lab_state, "primary")] == ["s0-full", "s2-full"]
    prune(lab_state, "primary", 1, apply=True)
    left = sorted(p.name for p in catalog.site_dir(lab_state, "primary").iterdir())
    assert left == ["s1-full", "s2-full", "s3-full"], left  # the other lab's two untouched
    _rewrite(catalog.find(lab_state, "s2-full", "primary"), lab_id="../x")
    with pytest.raises(BackupError, match="lab_id"):
        catalog.find(lab_state, "s2-full", "primary")
