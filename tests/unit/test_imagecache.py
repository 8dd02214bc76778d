"""Pruning the image cache: stale images go; current ones and any VM's base stay (real qcow2
chains made with qemu-img in a temporary cache and state root)."""

import json
import subprocess

from availlab.lab import imagecache, state
from availlab.lab.recipe import load_recipe
from availlab.lab.state import LabState, VMState


def _image(cache, digest, database="postgresql"):
    d = cache / "images" / digest
    d.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d / "rootfs.qcow2"), "16M"], check=True)
    (d / "image.json").write_text(json.dumps({"digest": digest, "built_at": 1.0,
                                              "recipe": {"database": database}}))
    (cache / "images" / f"{digest}.build.log").write_text("log")
    return d


def test_prune_keeps_current_and_backing_images_and_removes_the_rest(tmp_path, monkeypatch):
    cache, root = tmp_path / "cache", tmp_path / "state"
    monkeypatch.setenv("AVAILLAB_CACHE", str(cache))
    monkeypatch.setenv("AVAILLAB_STATE", str(root))
    current = _image(cache, load_recipe().digest())
    under_vm = _image(cache, "aaaaaaaaaaaaaaaa")
    stale = _image(cache, "bbbbbbbbbbbbbbbb", "mariadb")
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    str(under_vm / "rootfs.qcow2"), str(disk)], check=True)
    st = LabState(lab="pl", status="up", topology={})
    st.vms["sql1"] = VMState("sql1", "10.0.0.1", "h1", str(disk), "", "", "u", 0.0)
    state.save(st)

    by = {i.digest: i.status for i in imagecache.cached_images()}
    assert by == {current.name: "current", under_vm.name: "in use by pl/sql1", stale.name: "stale"}
    assert [i.digest for i in imagecache.prune(dry_run=True)] == [stale.name] and stale.is_dir()
    assert [i.digest for i in imagecache.prune()] == [stale.name]
    assert not stale.exists() and not (cache / "images" / f"{stale.name}.build.log").exists()
    assert current.is_dir() and under_vm.is_dir()


def test_an_unreadable_lab_state_keeps_everything(tmp_path, monkeypatch):
    cache, root = tmp_path / "cache", tmp_path / "state"
    monkeypatch.setenv("AVAILLAB_CACHE", str(cache))
    monkeypatch.setenv("AVAILLAB_STATE", str(root))
    old = _image(cache, "cccccccccccccccc")
    (root / "broken").mkdir(parents=True)
    (root / "broken" / "state.json").write_text("{not json")
    assert imagecache.prune() == [] and old.is_dir()
    assert "cannot be read" in imagecache.cached_images()[0].status


def test_a_disk_qemu_img_cannot_read_keeps_everything(tmp_path, monkeypatch):
    cache, root = tmp_path / "cache", tmp_path / "state"
    monkeypatch.setenv("AVAILLAB_CACHE", str(cache))
    monkeypatch.setenv("AVAILLAB_STATE", str(root))
    old = _image(cache, "dddddddddddddddd")
    bad = tmp_path / "disk.qcow2"
    bad.write_bytes(b"not a qcow2 at all" * 100)
    monkeypatch.setattr(imagecache, "backing_files", lambda disk: None)  # as qemu-img failing does
    st = LabState(lab="pl", status="up", topology={})
    st.vms["sql1"] = VMState("sql1", "10.0.0.1", "h1", str(bad), "", "", "u", 0.0)
    state.save(st)
    assert imagecache.prune() == [] and old.is_dir()
    assert "cannot be read" in imagecache.cached_images()[0].status


def test_a_vm_under_another_state_root_is_seen_through_the_cache(tmp_path, monkeypatch):
    """Labs under any AVAILLAB_STATE share the image cache: the cache records each overlay."""
    import pytest

    from availlab.errors import ImageError
    from availlab.lab.image import _refuse_in_use

    cache = tmp_path / "cache"
    monkeypatch.setenv("AVAILLAB_CACHE", str(cache))
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path / "state-a"))
    base = _image(cache, "eeeeeeeeeeeeeeee")
    disk = tmp_path / "elsewhere" / "disk.qcow2"
    disk.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    str(base / "rootfs.qcow2"), str(disk)], check=True)
    imagecache.register_user(base, disk, "other/sql9")
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path / "state-b"))  # knows nothing of that lab
    assert {i.digest: i.status for i in imagecache.cached_images()}[base.name] == "in use by other/sql9"
    assert imagecache.prune() == [] and base.is_dir()
    with pytest.raises(ImageError, match="other/sql9"):
        _refuse_in_use(base)
    disk.unlink()  # the VM is gone: its record no longer holds the image
    assert [i.digest for i in imagecache.prune()] == [base.name]
