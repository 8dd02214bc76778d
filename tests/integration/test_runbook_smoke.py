"""The smoke runbook through the real CLI and papermill: lab + VM come up from nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat

from availlab import lab, paths

from .conftest import residue_report

LAB = "irb"


def test_smoke_runbook_brings_lab_and_vm_up(tmp_path):
    lab.down(LAB)
    try:
        r = subprocess.run([sys.executable, "-m", "availlab.cli", "--lab", LAB, "run",
                            str(paths.project_root() / "runbooks" / "00-lab-smoke.ipynb")],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        nb_path = Path(r.stdout.split("executed notebook: ")[1].split()[0])
        nb = nbformat.read(nb_path, as_version=4)
        text = "".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert "PASS: sql1 answers SQL at 10.213.0.101" in text
        assert "PostgreSQL 15" in text
        assert f"lab = \"{LAB}\"" in "".join(c.source for c in nb.cells)  # papermill injected it
    finally:
        lab.down(LAB)
    assert residue_report(LAB) == {"namespaces": [], "cgroups": [], "processes": []}


def test_bad_runbook_parameter_is_refused_before_the_lab_is_touched():
    r = subprocess.run([sys.executable, "-m", "availlab.cli", "--lab", "neverup", "run",
                        str(paths.project_root() / "runbooks" / "00-lab-smoke.ipynb"),
                        "-p", "hosts", "many"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "parameter 'hosts': expected int" in r.stderr
    assert residue_report("neverup") == {"namespaces": [], "cgroups": [], "processes": []}
