"""Backup catalogue, replication and chain rules on small real files (no lab needed)."""

import json
from types import SimpleNamespace

import pytest

from availlab import paths
from availlab.events import catalog
from availlab.events.catalog import BackupSet, chain, describe_files, list_sets, verify, write_set
from availlab.errors import BackupError, UsageError
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
