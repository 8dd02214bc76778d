"""Hostile names and paths are refused at every entry, and `lab down` removes only what the lab made.

Everything here runs inside a throw-away AVAILLAB_STATE (tmp_path): no test may point `lab down`
at a real directory. The real-lab counterpart is tests/integration/test_ownership.py.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from availlab import cli, names
from availlab.errors import BackupError, TopologyError, UsageError
from availlab.events import catalog
from availlab.lab import local, ownership, state, sweep
from availlab.lab import providers as lab
from availlab.lab.state import LabState
from availlab.lab.topology import parse_topology

HOSTILE = ["..", ".", "/", "a/b", "ab\n", "", "../x", "-a", "A", "a" * 32, "a b", "a\0b"]


@pytest.mark.parametrize("bad", HOSTILE)
def test_a_hostile_lab_name_is_refused_everywhere_it_enters(bad, state_root):
    with pytest.raises(UsageError, match="invalid lab name"):
        names.lab_name(bad)
    with pytest.raises(UsageError):
        state.lab_root(bad)
    with pytest.raises(UsageError):
        local.residue(bad)


@pytest.mark.parametrize("good", ["default", "a", "a-b", "x" * 31, "itest2"])
def test_ordinary_lab_names_pass(good, state_root):
    assert state.lab_root(good) == state_root / good


@pytest.mark.parametrize("bad", HOSTILE)
def test_lab_down_with_a_hostile_name_exits_2_and_changes_nothing(bad, state_root, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("a hostile name reached the teardown")

    # the throw-away state root does not contain `/`: make sure nothing could delete anything
    for fn in ("_down", "_up"):
        monkeypatch.setattr(local, fn, never)
    monkeypatch.setattr(sweep, "stop_processes", never)
    monkeypatch.setattr("shutil.rmtree", never)
    other = state_root / "other"
    other.mkdir()
    (other / "state.json").write_text("{}")
    if "\0" not in bad:  # an environment variable cannot hold NUL; the flag is the only route
        monkeypatch.setenv("AVAILLAB_LAB", bad)
        assert cli.main(["lab", "down"]) == 2
        monkeypatch.delenv("AVAILLAB_LAB")
    assert cli.main([f"--lab={bad}", "lab", "down"]) == 2
    assert "invalid lab name" in capsys.readouterr().err
    assert sorted(p.name for p in state_root.iterdir()) == ["other"]
    assert (other / "state.json").read_text() == "{}"


def test_an_empty_lab_name_never_falls_back_to_the_default_lab(state_root, monkeypatch):
    monkeypatch.setenv("AVAILLAB_LAB", "")
    with pytest.raises(UsageError, match="AVAILLAB_LAB"):
        cli._lab_name(cli.build_parser().parse_args(["lab", "down"]))
    monkeypatch.delenv("AVAILLAB_LAB")
    with pytest.raises(UsageError, match="--lab"):
        cli._lab_name(cli.build_parser().parse_args(["--lab", "", "lab", "down"]))


def test_a_runbook_refuses_a_hostile_lab_parameter(state_root):
    from availlab import paths
    from availlab.scenarios import runbook

    nb = paths.project_root() / "runbooks" / "10-live-migration.ipynb"
    with pytest.raises(UsageError, match="parameter 'lab'"):
        runbook.validate_parameters(nb, {"lab": ".."})


@pytest.mark.parametrize("name", ["ab\n", "a/b", ".."])
def test_topology_names_are_matched_in_full(name):
    with pytest.raises(TopologyError, match="name"):
        parse_topology({"name": name, "hosts": [{"name": "h1"}]}, "t")
    with pytest.raises(TopologyError, match="hosts.0.name"):
        parse_topology({"name": "t", "hosts": [{"name": name}]}, "t")


@pytest.mark.parametrize("storage, field", [
    ({"shared": "relative/shared"}, "storage.shared"),
    ({"dr_site": "dr"}, "storage.dr_site"),
    ({"shared": "/srv/a/../b"}, "storage.shared"),
    ({"shared": "/"}, "storage.shared"),
    ({"shared": "/srv/lab", "dr_site": "/srv/lab"}, "dr_site"),
    ({"shared": "/srv/lab", "dr_site": "/srv/lab/dr"}, "dr_site"),
    ({"shared": "/srv/lab/shared", "dr_site": "/srv/lab"}, "dr_site"),
])
def test_storage_paths_are_absolute_and_apart_at_parse_time(storage, field):
    with pytest.raises(TopologyError, match=field.replace(".", r"\.")):
        parse_topology({"name": "t", "hosts": [{"name": "h1"}], "storage": storage}, "t")


def test_storage_side_by_side_is_accepted():
    topo = parse_topology({"name": "t", "hosts": [{"name": "h1"}],
                           "storage": {"shared": "/srv/lab/shared", "dr_site": "/srv/lab/dr"}}, "t")
    assert str(topo.storage.dr_site) == "/srv/lab/dr"


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "", "x\n", "..", "a/../b"])
def test_a_path_component_from_a_file_or_flag_is_plain(bad):
    with pytest.raises(UsageError):
        names.component(bad, "set")


def test_inside_follows_symlinks(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)
    assert names.inside(root, root / "a" / "b", "x") == root / "a" / "b"
    for bad in (root, root / "..", root / "out" / "f", Path("/etc")):
        with pytest.raises(UsageError, match="not inside"):
            names.inside(root, bad, "x")


# --- backup catalogues: what set.json says becomes paths ----------------------------------------

def _set_dir(site: Path, set_id: str, **over) -> Path:
    d = site / set_id
    d.mkdir(parents=True)
    files = []
    for n in catalog.REQUIRED_FILES:
        (d / n).write_text(n)
    files = catalog.describe_files(d, list(catalog.REQUIRED_FILES))
    data = {"id": set_id, "vm": "sql1", "type": "full", "parent": None, "checkpoint": "ck",
            "time": 1.0, "consistency": "application", "files": files, **over}
    (d / "set.json").write_text(json.dumps(data))
    return d


def test_a_well_formed_set_is_read(tmp_path):
    b = catalog.read_set(_set_dir(tmp_path, "sql1-20261127T000000000-full"), "dr")
    assert b.id == "sql1-20261127T000000000-full" and len(b.files) == 2


@pytest.mark.parametrize("over, message", [
    ({"files": []}, "does not list vda.qcow2, domain.xml"),
    ({"id": "../x"}, "id"),
    ({"id": "other-id"}, "names it 'other-id'"),
    ({"parent": "../x"}, "parent"),
    ({"parent": "/etc"}, "parent"),
    ({"files": [{"name": "../../etc/passwd", "size": 1, "sha256": "0"}]}, "files"),
    ({"unexpected": 1}, "unreadable catalogue"),
    ({"files": {"vda.qcow2": 1, "domain.xml": 2}}, "files must be a list"),
    ({"files": [{"name": "vda.qcow2"}, {"name": "domain.xml"}]}, "files must be a list"),
])
def test_a_hostile_or_empty_catalogue_is_refused(tmp_path, over, message):
    d = _set_dir(tmp_path, "s1", **over)
    with pytest.raises(BackupError, match=message.replace("(", r"\(")):
        catalog.read_set(d, "dr")


@pytest.mark.parametrize("loop", [("s1", "s1"), ("s1", "s2", "s1")])
def test_a_chain_that_loops_is_refused_not_followed_forever(tmp_path, loop):
    st = LabState(lab="t", status="up", topology={}, dr_dir=str(tmp_path))
    for child, parent in itertools.pairwise(loop):
        if not (tmp_path / child).exists():
            _set_dir(tmp_path, child, parent=parent, type="incremental")
    with pytest.raises(BackupError, match="loops"):
        catalog.chain(st, loop[0], "dr")


def test_find_refuses_a_set_id_that_is_a_path(tmp_path):
    st = LabState(lab="t", status="up", topology={}, dr_dir=str(tmp_path))
    _set_dir(tmp_path.parent, "victim")
    with pytest.raises(UsageError, match="not a plain name"):
        catalog.find(st, "../victim", "dr")


def test_a_half_written_set_is_not_listed(tmp_path, state_root):
    st = LabState(lab="t", status="up", topology={}, dr_dir=str(tmp_path / "dr"))
    _set_dir(tmp_path / "dr", "s1.partial", id="s1")
    _set_dir(tmp_path / "dr", "s2")
    assert [b.id for b in catalog.list_sets(st, "dr")] == ["s2"]


# --- shared storage: the lab removes what it made, nothing else ---------------------------------

def _lab_state(state_root: Path, shared: Path, dr: Path) -> LabState:
    st = LabState(lab="own", status="creating", topology={}, shared_dir=str(shared), dr_dir=str(dr))
    state.save(st)
    return st


def test_down_leaves_what_was_in_shared_storage_before_the_lab(tmp_path, state_root):
    shared, dr = tmp_path / "shared", tmp_path / "dr"
    shared.mkdir(mode=0o755)
    (shared / "before.txt").write_text("user data")
    st = _lab_state(state_root, shared, dr)
    for d in [shared, *ownership.refuse_foreign_storage(shared, state.lab_root("own")), dr]:
        ownership.claim_dir(st, d)
    assert st.owned == [str(shared / "vms"), str(shared / "logs"), str(dr)]
    assert shared.stat().st_mode & 0o777 == 0o755  # an existing directory keeps its mode
    (shared / "vms" / "sql1").mkdir()
    (shared / "vms" / "sql1" / "disk.qcow2").write_text("disk")
    removed: list[str] = []
    ownership.remove_owned(st, state.lab_root("own"), removed)
    assert sorted(p.name for p in shared.iterdir()) == ["before.txt"]
    assert (shared / "before.txt").read_text() == "user data"
    assert not dr.exists()  # made by the lab and empty: gone
    assert len(removed) == 3


def test_down_keeps_a_dr_site_with_backups_and_a_shared_dir_with_foreign_files(tmp_path, state_root):
    shared, dr = tmp_path / "new-shared", tmp_path / "new-dr"
    st = _lab_state(state_root, shared, dr)
    for d in [shared, *ownership.refuse_foreign_storage(shared, state.lab_root("own")), dr]:
        ownership.claim_dir(st, d)
    assert shared.stat().st_mode & 0o777 == 0o700
    (dr / "set1").mkdir()
    (shared / "later.txt").write_text("someone else's")
    ownership.remove_owned(st, state.lab_root("own"), [])
    assert (dr / "set1").is_dir() and (shared / "later.txt").is_file()
    assert not (shared / "vms").exists()


def test_a_shared_dir_already_holding_vms_is_refused_before_anything_is_made(tmp_path):
    shared = tmp_path / "shared"
    (shared / "vms").mkdir(parents=True)
    with pytest.raises(Exception, match="not made by this lab"):
        ownership.refuse_foreign_storage(shared, tmp_path / "state" / "x")


def test_down_never_follows_a_symlink_out_of_shared_storage(tmp_path, state_root):
    shared, outside = tmp_path / "shared", tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("x")
    st = _lab_state(state_root, shared, tmp_path / "dr")
    ownership.claim_dir(st, shared)
    (shared / "vms").symlink_to(outside)
    st.owned.append(str(shared / "vms"))
    ownership.remove_owned(st, state.lab_root("own"), [])
    assert (outside / "precious").read_text() == "x"


def test_leftovers_of_an_unfinished_up_in_shared_storage_are_the_labs_own(tmp_path):
    shared = tmp_path / "shared"
    (shared / "vms").mkdir(parents=True)
    parts = ownership.refuse_foreign_storage(shared, tmp_path / "state" / "x", [str(shared / "vms")])
    assert parts == [shared / "vms", shared / "logs"]
    inside_root = tmp_path / "state" / "x" / "shared"
    (inside_root / "vms").mkdir(parents=True)
    assert ownership.refuse_foreign_storage(inside_root, tmp_path / "state" / "x")


def test_lab_up_never_deletes_vms_or_backups_to_start_again(state_root, monkeypatch):
    """A lab left 'failed' or 'creating' that still holds VMs or backups is refused, untouched."""
    from availlab.lab.state import VMState
    from availlab.lab.topology import parse_topology as parse

    def never(*args, **kwargs):
        raise AssertionError("lab up went past its refusal")

    monkeypatch.setattr(local, "_require_root", lambda: None)
    for fn in ("ensure_image", "choose_accel", "residue", "_down", "_build"):
        monkeypatch.setattr(local, fn, never)
    st = LabState(lab="kept", status="failed", topology={})
    st.vms["sql1"] = VMState("sql1", "10.213.0.100", "h1", "/x/disk", "/x/config", "/x/log", "u", 0.0)
    state.save(st)
    before = state.state_file("kept").read_text()
    with pytest.raises(Exception, match="holds VMs or backups"):
        lab.up(parse({"name": "kept", "hosts": [{"name": "h1"}]}, "t"))
    assert state.state_file("kept").read_text() == before
    st.vms.clear()
    state.save(st)
    (state.lab_root("kept") / "backups" / "s1").mkdir(parents=True)
    with pytest.raises(Exception, match="holds VMs or backups"):
        lab.up(parse({"name": "kept", "hosts": [{"name": "h1"}]}, "t"))
    assert (state.lab_root("kept") / "backups" / "s1").is_dir()
