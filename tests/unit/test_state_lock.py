"""The lab lock: concurrent read-modify-writes of one lab's state lose nothing (real processes
and threads on a throw-away state root); files are replaced whole."""

from __future__ import annotations

import multiprocessing
import threading

from availlab import paths
from availlab.lab import state
from availlab.lab.state import LabState


def _bump(root: str, n: int) -> None:
    import os

    os.environ["AVAILLAB_STATE"] = root
    for _ in range(n):
        with state.update("lk") as st:
            st.timings["count"] = st.timings.get("count", 0) + 1


def test_concurrent_updates_from_processes_and_threads_lose_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    state.save(LabState(lab="lk", status="up", topology={}))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_bump, args=(str(tmp_path), 20)) for _ in range(3)]
    threads = [threading.Thread(target=_bump, args=(str(tmp_path), 20)) for _ in range(2)]
    for w in procs + threads:
        w.start()
    for w in procs + threads:
        w.join(120)
    assert all(p.exitcode == 0 for p in procs)
    assert state.load("lk").timings["count"] == 100


def test_the_lock_is_reentrant_in_one_thread(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    state.save(LabState(lab="lk", status="up", topology={}))
    with state.locked("lk"), state.update("lk") as st:  # up -> restart_daemons nests like this
        st.timings["x"] = 1.0
    assert state.load("lk").timings["x"] == 1.0


def test_a_failed_update_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    state.save(LabState(lab="lk", status="up", topology={}))
    try:
        with state.update("lk") as st:
            st.timings["half"] = 1.0
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert "half" not in state.load("lk").timings


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "f.json"
    paths.write_atomic(target, "one")
    paths.write_atomic(target, "two")
    assert target.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["f.json"]
    assert target.stat().st_mode & 0o777 == 0o600
