"""A lab acts only on what it can prove it made: its directory's marker, its state root's checks,
and its processes by membership and executable (issue 28).

Every test runs in a throw-away AVAILLAB_STATE (tmp_path); nothing here reaches a real directory.
The real-lab counterparts are in tests/integration/test_ownership.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from availlab import cli, paths
from availlab.errors import LabError, OwnershipError, UsageError
from availlab.lab import identity, local, state, sweep
from availlab.lab import providers as lab
from availlab.lab.state import LabState
from availlab.lab.topology import parse_topology


def _users_dir(root: Path) -> Path:
    victim = root / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "notes.txt").write_text("mine")
    (victim / "sub" / "data").write_text("also mine")
    return victim


def _tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def test_lab_down_of_an_ordinary_directory_exits_2_and_leaves_every_file(state_root, capsys):
    victim = _users_dir(state_root)
    before = _tree(victim)
    assert cli.main(["--lab", "victim", "lab", "down"]) == 2
    err = capsys.readouterr().err
    assert str(victim) in err and "no lab marker" in err, err
    assert _tree(victim) == before
    with pytest.raises(OwnershipError):
        lab.down("victim")
    assert _tree(victim) == before


def test_lab_up_refuses_an_ordinary_directory_before_anything(state_root, monkeypatch):
    victim = _users_dir(state_root)
    monkeypatch.setattr(local, "_up", lambda topo: pytest.fail("reached the provider"))
    with pytest.raises(OwnershipError, match="no lab marker"):
        lab.up(parse_topology({"name": "victim", "hosts": [{"name": "h1"}]}))
    assert (victim / "notes.txt").read_text() == "mine"


def test_another_labs_marker_is_refused(state_root):
    state.save(LabState(lab="one", status="up", topology={}))
    os.rename(state_root / "one", state_root / "two")
    with pytest.raises(OwnershipError, match="marked as lab 'one'"):
        identity.prove("two", "lab down")


def test_a_marker_not_owned_by_us_or_not_a_file_proves_nothing(state_root):
    state.save(LabState(lab="m", status="up", topology={}))
    (state_root / "m" / "state.json").unlink()  # no legacy route either
    marker = state_root / "m" / identity.MARKER
    os.chown(marker, 65534, 65534)
    with pytest.raises(OwnershipError):
        identity.prove("m", "lab down")
    marker.unlink()
    marker.symlink_to("/etc/hostname")
    with pytest.raises(OwnershipError):
        identity.prove("m", "lab down")


def test_the_first_save_makes_the_directory_with_its_marker_and_a_stable_id(state_root):
    state.save(LabState(lab="fresh", status="creating", topology={}))
    data = json.loads((state_root / "fresh" / identity.MARKER).read_text())
    assert data["lab"] == "fresh" and data["uid"] == os.getuid()
    assert identity.prove("fresh", "x") == data["id"] == identity.lab_id("fresh")
    assert identity.claim("fresh") == data["id"]
    assert not [p for p in state_root.iterdir() if ".creating-" in p.name]


def test_a_lab_made_before_the_marker_is_proven_by_its_state_and_marked(state_root):
    root = state_root / "old"
    root.mkdir()
    (root / "state.json").write_text(json.dumps({"lab": "old", "status": "up", "topology": {}}))
    found = identity.prove("old", "lab down")
    assert found and json.loads((root / identity.MARKER).read_text())["id"] == found
    (state_root / "old2").mkdir()
    (state_root / "old2" / "state.json").write_text(json.dumps({"lab": "other"}))  # not this lab's
    with pytest.raises(OwnershipError):
        identity.prove("old2", "lab down")


def test_a_missing_lab_directory_is_no_refusal(state_root):
    assert identity.prove("nothing", "lab down") is None


@pytest.mark.parametrize("raw, why", [("relative/state", "absolute"), ("/", "system or home"),
                                      ("/etc", "system or home"), ("/tmp", "system or home"),
                                      ("/usr/", "system or home"), ("/var/lib", "system or home")])
def test_a_state_root_that_is_not_a_directory_of_its_own_is_refused(raw, why, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", raw)
    with pytest.raises(UsageError, match=f"AVAILLAB_STATE.*{why}"):
        paths.state_root()
    assert cli.main(["--lab", "x", "lab", "down"]) == 2


def test_the_home_directory_a_file_and_a_foreign_owner_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(Path.home()))
    with pytest.raises(UsageError, match="home"):
        paths.state_root()
    f = tmp_path / "file"
    f.write_text("")
    monkeypatch.setenv("AVAILLAB_STATE", str(f))
    with pytest.raises(UsageError, match="not a directory"):
        paths.state_root()
    d = tmp_path / "theirs"
    d.mkdir()
    os.chown(d, 65534, 65534)
    monkeypatch.setenv("AVAILLAB_STATE", str(d))
    with pytest.raises(UsageError, match="owned by uid 65534"):
        paths.state_root()
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path / "new"))
    assert paths.state_root() == tmp_path / "new"


def test_lab_up_without_state_never_takes_disks_or_backups_for_leftovers(state_root, monkeypatch):
    state.save(LabState(lab="lost", status="up", topology={}))
    (state_root / "lost" / "state.json").unlink()
    disk = state_root / "lost" / "shared" / "vms" / "sql1.qcow2"
    disk.parent.mkdir(parents=True)
    disk.write_text("a VM's disk")
    monkeypatch.setattr(local, "residue", lambda name: ["namespace availlab-lost-h1"])
    monkeypatch.setattr(local, "_down", lambda *a: pytest.fail("cleaned the lab's data as leftovers"))
    monkeypatch.setattr(local, "_require_root", lambda: None)
    with pytest.raises(LabError, match="holds VM disks or backups"):
        local._up(parse_topology({"name": "lost", "hosts": [{"name": "h1"}]}))
    assert disk.read_text() == "a VM's disk"


def test_a_process_naming_the_lab_path_is_no_member_and_not_ours(state_root):
    """The `tail -f` of a lab log that `lab down` once killed: found by no route, and even if it
    were, its executable is not one availlab starts."""
    state.save(LabState(lab="pl", status="up", topology={}))
    log = state_root / "pl" / "daemon.log"
    log.write_text("")
    tail = subprocess.Popen(["tail", "-f", str(log)])
    try:
        assert tail.pid not in sweep._lab_pids("pl", state.load("pl"))
        assert not sweep._ours(tail.pid, "pl")
        assert not sweep._ours(os.getpid(), "pl")  # pytest: python, but not an availlab module
    finally:
        tail.kill()
        tail.wait()


def test_a_kept_dr_site_keeps_the_marker_so_the_lab_can_come_back(state_root):
    root = state_root / "keepdr"
    st = LabState(lab="keepdr", status="up", topology={}, dr_dir=str(root / "dr-site"))
    state.save(st)
    (root / "dr-site" / "sql1-full").mkdir(parents=True)
    (root / "dr-site" / "sql1-full" / "set.json").write_text("{}")
    (root / "hosts").mkdir()
    removed = local._down("keepdr", st)
    assert sorted(p.name for p in root.iterdir()) == [identity.MARKER, "dr-site"], removed
    assert identity.prove("keepdr", "lab up")  # the next up (and down) still proves it
    shutil.rmtree(root / "dr-site")
    local._down("keepdr", None)
    assert not root.exists(), "with nothing kept, the marker goes with the directory"


@pytest.mark.parametrize("content", ["{not json", '{"id": 1}', '[{"id": 1}]', "\xff"])
def test_a_malformed_tips_file_is_an_error_naming_it_not_a_traceback(state_root, content, capsys):
    state.save(LabState(lab="tp", status="up", topology={}))
    (state_root / "tp" / "tips.json").write_text(content, errors="surrogateescape")
    assert cli.main(["--lab", "tp", "tips", "list"]) == 1
    assert "tips.json" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../x", "A", "", "sql1;rm"])
def test_vm_delete_with_a_bad_name_exits_2_before_the_lab_is_read(state_root, name, capsys):
    assert cli.main(["--lab", "nolab", "vm", "delete", name]) == 2
    assert "vm name" in capsys.readouterr().err


def test_a_backup_job_record_of_a_live_process_is_busy_and_of_a_dead_one_is_cleaned(state_root):
    """The job record's owner is a PID with its start time: this process is alive (refused, or
    left alone for a migration, which libvirt then refuses itself); a dead one's partial set goes."""
    import json as _json

    from availlab.errors import BackupError
    from availlab.events import jobs

    st = LabState(lab="jb", status="up", topology={})
    state.save(st)
    work = state_root / "jb" / "backups" / "sql1-x-full.partial"
    work.mkdir(parents=True)
    jobs.record(work, "sql1", "h9", "ck-x", None, work / "scratch.qcow2")
    with pytest.raises(BackupError, match="a backup of it is running"):
        jobs.recover(st, "sql1")
    assert jobs.recover(st, "sql1", running_ok=True) == [] and work.is_dir()
    assert jobs.recover(st, "other") == []  # another VM's record is not this VM's
    rec = _json.loads((work / jobs.RECORD).read_text())
    rec["start"] = "1"  # the same PID, started at another time: not the process that owned it
    (work / jobs.RECORD).write_text(_json.dumps(rec))
    done = jobs.recover(st, "sql1")
    assert not work.exists() and "sql1-x-full.partial removed" in done
