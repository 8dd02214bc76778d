"""lab/demo.sh keeps a CI log whole: `make demo >log 2>&1` must keep what came before the run.

The real demo is `make demo` (papermill, the lab, the runbook); here the script runs in a copy of
the project whose `availlab` is a stub, so only the script's own plumbing is under test."""

import shutil
import stat
import subprocess

from availlab import paths

STUB = """#!/usr/bin/env bash
d="$PWD/runs/10-live-migration/T1"
mkdir -p "$d"
echo '<html>report</html>' > "$d/report.html"
echo '{"verdict": "PASS"}' > "$d/results.json"
echo "progress on stderr" >&2
echo "run folder: $d"
echo "executed notebook: $d/10-live-migration.ipynb"
echo "verdict: PASS (outcomes PASS, timings PASS)  report: $d/report.html"
"""


def test_a_log_file_keeps_the_lines_written_before_the_run(tmp_path):
    (tmp_path / "lab").mkdir()
    shutil.copy(paths.project_root() / "lab" / "demo.sh", tmp_path / "lab" / "demo.sh")
    stub = tmp_path / ".venv" / "bin" / "availlab"
    stub.parent.mkdir(parents=True)
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "log"
    r = subprocess.run(["bash", "-c", f"{{ echo 'setup: ok'; echo 'lab up: h1 h2'; bash lab/demo.sh; }} >{log} 2>&1"],
                       cwd=tmp_path, timeout=60)
    text = log.read_text()
    assert r.returncode == 0, text
    assert text.startswith("setup: ok\nlab up: h1 h2\n"), text
    assert "progress on stderr" in text and "verdict: PASS" in text and "== verdict PASS" in text
    assert (tmp_path / "reports" / "live-migration" / "index.html").is_file()
