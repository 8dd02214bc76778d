"""A runbook's step lines reach the runner's terminal as they happen (issue 32: a user saw only
papermill's cell counter for minutes), and stay in the run folder's progress.log."""

from __future__ import annotations

import subprocess
import sys

from availlab import progress


def test_a_child_process_step_lines_are_shown_live_and_kept(tmp_path, capsys):
    log = tmp_path / "progress.log"
    with progress.follow(log):
        child = subprocess.run([sys.executable, "-c", "from availlab.progress import step\n"
                                "step('image: built'); step('VM sql1: database ready')"],
                               capture_output=True, text=True, check=True)
    assert "image: built" in child.stderr  # its own stderr still has them (the executed notebook)
    shown = capsys.readouterr().err
    assert "] image: built\n" in shown and shown.index("image: built") < shown.index("VM sql1: database ready")
    assert log.read_text().count("\n") == 2
    assert progress.ENV not in __import__("os").environ  # put back as it was


def test_quiet_keeps_the_lines_but_shows_none(tmp_path, capsys):
    with progress.follow(tmp_path / "progress.log", show=False):
        subprocess.run([sys.executable, "-c", "from availlab.progress import step; step('lab up')"], check=True,
                       capture_output=True)
    assert capsys.readouterr().err == "" and "lab up" in (tmp_path / "progress.log").read_text()
