"""On the real lab: hostile lab names change nothing, and `lab down` leaves what it did not make.

All of it inside a throw-away AVAILLAB_STATE (never the real state root): a running lab with its
shared storage in a directory that already held a user's file, a sentinel file beside the state
root, then `availlab lab down` with every hostile name, by flag and by environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from availlab import names
from availlab.errors import UsageError
from availlab.lab import providers as lab
from availlab.lab import state

from .conftest import NO_RESIDUE, residue_report

LAB = "itown"
HOSTILE = ["..", ".", "/", "a/b", "ab\n", ""]


@pytest.fixture
def scratch(monkeypatch):
    # short: libvirtd's socket paths under the state root must fit in 108 bytes
    base = Path(tempfile.mkdtemp(prefix="al-"))
    monkeypatch.setenv("AVAILLAB_STATE", str(base / "state"))
    monkeypatch.delenv("AVAILLAB_LAB", raising=False)
    try:
        yield base
    finally:
        lab.down(LAB)
        shutil.rmtree(base)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "availlab.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_hostile_names_change_nothing_and_down_leaves_the_users_files(scratch):
    shared, dr = scratch / "shared", scratch / "dr"
    shared.mkdir()
    (shared / "before.txt").write_text("the user's, from before the lab")
    sentinel = scratch / "sentinel"
    sentinel.write_text("beside the state root")
    config = scratch / "lab.yaml"
    config.write_text(yaml.safe_dump({"name": LAB, "hosts": [{"name": "h1"}],
                                      "storage": {"shared": str(shared), "dr_site": str(dr)}}))
    r = _cli("lab", "up", "--config", str(config))
    assert r.returncode == 0, r.stderr
    st = state.require_up(LAB)
    before = sorted(str(p) for p in scratch.rglob("*"))

    for bad in HOSTILE:
        with pytest.raises(UsageError):  # in-process first: the subprocess below must never get far
            names.lab_name(bad)
        for args, env in (([f"--lab={bad}", "lab", "down"], None), (["lab", "down"], {"AVAILLAB_LAB": bad})):
            r = _cli(*args, env=env)
            assert r.returncode == 2, (bad, args, env, r.stdout, r.stderr)
            assert "invalid lab name" in r.stderr, r.stderr
    assert sorted(str(p) for p in scratch.rglob("*")) == before
    assert sentinel.read_text() == "beside the state root"
    assert lab.health(st) == [], "a hostile name reached the running lab"

    # issue 28, seen twice: an ordinary directory named as a lab was emptied, and a user's `tail -f`
    # of a lab log was killed, because its command line named the lab's path
    victim = state.lab_root("victim")
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "notes.txt").write_text("the user's")
    r = _cli("--lab=victim", "lab", "down")
    assert r.returncode == 2 and str(victim) in r.stderr, (r.stdout, r.stderr)
    assert (victim / "sub" / "notes.txt").read_text() == "the user's"
    log = next(state.lab_root(LAB).glob("hosts/*/log/libvirtd.log"))
    tail = subprocess.Popen(["tail", "-f", str(log)], stdout=subprocess.DEVNULL)
    try:
        r = _cli(f"--lab={LAB}", "lab", "down")
        assert r.returncode == 0, r.stderr
        assert tail.poll() is None, "lab down killed a process that only named the lab's path"
    finally:
        tail.kill()
        tail.wait()
    shutil.rmtree(victim)
    assert sorted(p.name for p in shared.iterdir()) == ["before.txt"]
    assert (shared / "before.txt").read_text() == "the user's, from before the lab"
    assert not dr.exists(), "the lab made the DR site and it was empty: it goes with the lab"
    assert not state.lab_root(LAB).exists()
    assert sentinel.read_text() == "beside the state root"
    assert residue_report(LAB) == NO_RESIDUE


def test_a_relative_shared_path_is_refused_before_anything_exists(scratch):
    config = scratch / "lab.yaml"
    config.write_text(yaml.safe_dump({"name": LAB, "hosts": [{"name": "h1"}],
                                      "storage": {"shared": "shared", "dr_site": str(scratch / "dr")}}))
    r = _cli("lab", "up", "--config", str(config))
    assert r.returncode == 2 and "storage.shared" in r.stderr, r.stderr
    assert not (scratch / "state").exists() and not (scratch / "dr").exists()
