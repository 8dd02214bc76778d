"""The smoke runbook through the real CLI and papermill: lab + VM come up from nothing. Then, in
the lab it left, Ctrl-C during a run: the history survives, a partial report marked INCOMPLETE is
written, the exit code says so, and no client process is left behind."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from availlab import paths
from availlab.lab import netns
from availlab.lab import providers as lab
from availlab.waiting import wait_until

from .conftest import NO_RESIDUE, residue_report

LAB = "irb"


@pytest.fixture(scope="module")
def from_nothing():
    lab.down(LAB)
    try:
        yield LAB
    finally:
        lab.down(LAB)
        assert residue_report(LAB) == NO_RESIDUE


def test_smoke_runbook_brings_lab_and_vm_up(from_nothing):
    r = subprocess.run([sys.executable, "-m", "availlab.cli", "--lab", LAB, "run",
                        str(paths.project_root() / "runbooks" / "00-lab-smoke.ipynb"), "-p", "hosts", "2"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    nb_path = Path(r.stdout.split("executed notebook: ")[1].split()[0])
    nb = nbformat.read(nb_path, as_version=4)
    text = "".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "PASS: sql1 answers SQL at 10.213.0.101" in text
    assert "PostgreSQL 15" in text
    assert f"lab = \"{LAB}\"" in "".join(c.source for c in nb.cells)  # papermill injected it


def test_bad_runbook_parameter_is_refused_before_the_lab_is_touched():
    r = subprocess.run([sys.executable, "-m", "availlab.cli", "--lab", "neverup", "run",
                        str(paths.project_root() / "runbooks" / "00-lab-smoke.ipynb"),
                        "-p", "hosts", "many"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "invalid 00-lab-smoke parameters" in r.stderr and "hosts: Input should be a valid integer" in r.stderr
    assert residue_report("neverup") == NO_RESIDUE


def test_a_lab_that_is_not_up_is_built_only_when_told_how():
    """Issue 28: `-p lab X` on a lab that is not up silently built a local lab named X, where the
    user may have meant a remote cluster of that name. Without `-p hosts N`: exit 2, nothing made."""
    r = subprocess.run([sys.executable, "-m", "availlab.cli", "--lab", "neverup", "run",
                        str(paths.project_root() / "runbooks" / "00-lab-smoke.ipynb")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "-p hosts N" in r.stderr and "neverup" in r.stderr, r.stderr
    assert "run folder:" not in r.stdout
    assert residue_report("neverup") == NO_RESIDUE


def test_ctrl_c_leaves_history_and_an_incomplete_report(from_nothing):
    cmd = [sys.executable, "-m", "availlab.cli", "--lab", LAB, "--quiet", "run",
           str(paths.project_root() / "runbooks" / "10-live-migration.ipynb"),
           "-p", "migrations", "40", "-p", "settle_s", "1.0", "-p", "hosts", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        runs = paths.project_root() / "runs" / "10-live-migration"
        before = set(runs.iterdir()) if runs.exists() else set()
        deadline = time.monotonic() + 600  # lab and VM come up first if the smoke test did not leave them
        hist = None
        while time.monotonic() < deadline and proc.poll() is None:
            new = [d for d in (set(runs.iterdir()) if runs.exists() else set()) - before
                   if (d / "events.jsonl").exists() and '"migration"' in (d / "events.jsonl").read_text()]
            if new:
                hist = new[0] / "history.jsonl"
                break
            time.sleep(0.5)
        assert hist is not None, "the run never got to its first migration"
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends; our own child, by its handle
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, out, err[-2000:])
    run_dir = Path(re.search(r"run folder: (\S+)", out).group(1))
    assert "INCOMPLETE" in err
    assert "verdict: INCOMPLETE  report:" in out  # no outcomes/timings verdict for a cut-off run
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["verdict"] == "INCOMPLETE" and doc["figures"]["ops"] > 0
    assert 'data-verdict="INCOMPLETE"' in (run_dir / "report.html").read_text()

    def clients_left() -> list[int]:
        left = []
        for p in netns.pids_in(f"availlab-{LAB}-client"):
            try:
                if "availlab.clients.worker" in Path(f"/proc/{p}/cmdline").read_text():
                    left.append(p)
            except OSError:  # ended between the listing and the read
                pass
        return left

    # synchronised on the clients' end, not on a sleep: they end within the runner's own clean-up
    assert wait_until(lambda: not clients_left(), 10), f"clients outlived the interrupted run: {clients_left()}"
