"""Pruning the image cache: stale images go; current ones and any VM's base stay (real qcow2
chains made with qemu-img in a temporary cache and state root)."""

import json
import subprocess

from availlab import imagecache, state
from availlab.image import load_recipe
from availlab.state import LabState, VMState


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
