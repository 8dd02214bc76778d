"""Ctrl-C during a run: the history survives, a partial report marked INCOMPLETE is written,
the exit code says so, and no client process is left behind."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from availlab import netns, paths

from .conftest import clean_lab

LAB = "iint"


def test_ctrl_c_leaves_history_and_an_incomplete_report():
    with clean_lab(LAB):
        cmd = [sys.executable, "-m", "availlab.cli", "--lab", LAB, "--quiet", "run",
               str(paths.project_root() / "runbooks" / "10-live-migration.ipynb"),
               "-p", "migrations", "40", "-p", "settle_s", "1.0"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            runs = paths.project_root() / "runs" / "10-live-migration"
            before = set(runs.iterdir()) if runs.exists() else set()
            deadline = time.monotonic() + 240
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
        doc = json.loads((run_dir / "results.json").read_text())
        assert doc["verdict"] == "INCOMPLETE" and doc["figures"]["ops"] > 0
        assert 'data-verdict="INCOMPLETE"' in (run_dir / "report.html").read_text()
        time.sleep(2)
        left = [p for p in netns.pids_in(f"availlab-{LAB}-client")
                if "availlab.workload" in open(f"/proc/{p}/cmdline").read()]
        assert left == [], "clients outlived the interrupted run"
