"""Progress lines for long work (image build, lab up, VM boot), on stderr so stdout stays data.

A runbook's steps run in its papermill kernel, whose stderr lands in the executed notebook, not on
the terminal: a user saw only papermill's cell counter for minutes. So `availlab run` names a file
in $AVAILLAB_PROGRESS (the run folder's progress.log, kept as evidence); `step` in the kernel
appends each line there too, and `follow` prints the file's new lines on the runner's stderr as
they come.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ENV = "AVAILLAB_PROGRESS"
LOG = logging.getLogger("availlab")  # the command line's log file (clilog.py), when there is one
_T0 = time.monotonic()
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def step(message: str) -> None:
    line = f"[availlab {time.monotonic() - _T0:6.1f}s] {message}"
    LOG.info("%s", message)
    if not _quiet:
        print(line, file=sys.stderr, flush=True)
    shared = os.environ.get(ENV)
    if shared:  # a runbook's kernel: the runner shows it live (follow)
        with contextlib.suppress(OSError), open(shared, "a") as f:
            f.write(line + "\n")


@contextlib.contextmanager
def follow(path: Path, show: bool = True) -> Iterator[None]:
    """$AVAILLAB_PROGRESS set to `path` for the processes started inside (a papermill kernel),
    and their step lines printed on stderr as they are written (`show`), until the block ends."""
    path.touch()
    before = os.environ.get(ENV)
    os.environ[ENV] = str(path)
    done = threading.Event()

    def tail() -> None:
        partial = ""  # a line read before its writer finished it: kept until its newline comes
        with open(path) as f:
            while True:
                partial += f.readline()
                if partial.endswith("\n"):
                    LOG.info("kernel: %s", partial.rstrip("\n"))
                    if show:
                        print(f"  {partial}", end="", file=sys.stderr, flush=True)
                    partial = ""
                elif done.is_set():
                    return
                else:
                    time.sleep(0.2)

    t = threading.Thread(target=tail, name="progress", daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join(5)
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
