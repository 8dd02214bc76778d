"""`lab down` after the `lab up` process was SIGKILLed half-way removes everything."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from availlab.lab import providers as lab
from availlab.lab import state

from .conftest import residue_report

LAB = "ikill"


def _stage(st: dict) -> str:
    if st.get("hosts", {}).get("h1", {}).get("pid"):
        return "h1-daemon-started"
    return "state-written" if st.get("status") == "creating" else ""


@pytest.mark.parametrize("kill_at", ["state-written", "h1-daemon-started"])
def test_down_after_killing_up_half_way(kill_at):
    lab.down(LAB)
    proc = subprocess.Popen([sys.executable, "-m", "availlab.cli", "--lab", LAB, "lab", "up"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                st = json.loads(state.state_file(LAB).read_text())
            except (OSError, ValueError):
                st = {}
            if _stage(st) == kill_at:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"lab up ended before it could be killed: {proc.stderr.read()}"
        proc.send_signal(signal.SIGKILL)  # our own child, by its handle
        proc.wait()
        left = residue_report(LAB)
        if kill_at == "h1-daemon-started":
            assert left["namespaces"] and left["processes"], f"nothing to clean up? {left}"
        assert state.load(LAB).status == "creating"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        removed = lab.down(LAB)
    if kill_at == "h1-daemon-started":
        assert any("libvirtd" in r for r in removed), removed
    assert residue_report(LAB) == {"namespaces": [], "cgroups": [], "processes": []}
    assert not state.lab_root(LAB).exists()
