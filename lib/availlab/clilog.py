"""The command line's log file, and `--debug`.

After a failed `availlab` command an operator has one line on the terminal; the traceback and the
steps before it are what a bug report needs. So every invocation appends to one log file (kept
small by rotation, private to its owner): the command, each progress line, the exit status, and the
traceback of any error. `--debug` also prints the traceback and the libraries' own debug lines
(papermill, pyroute2) on stderr. A library user (a notebook) gets neither unless it asks:
the handlers belong to the command line only.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

from . import paths
from .errors import AvailLabError

LOG = logging.getLogger("availlab")
ENV = "AVAILLAB_LOG"  # a log file of one's own (CI: inside the job's artefacts)


def default_path() -> Path:
    return paths.state_root() / ".logs" / "availlab.log"


@contextlib.contextmanager
def session(argv: list[str], debug: bool) -> Iterator[Path | None]:
    """The log file (and, with `debug`, stderr) attached for one command, which is recorded; the
    file's path, or None where it cannot be written (a read-only home): a command never fails for
    its log. Detached at the end: a process may run several commands (tests, a notebook)."""
    handlers: list[tuple[logging.Logger, logging.Handler]] = []
    root_level = logging.getLogger().level
    if debug:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))
        handlers.append((logging.getLogger(), err))
        logging.getLogger().setLevel(logging.DEBUG)
    path: Path | None = None
    try:  # a bad AVAILLAB_STATE is the command's to report (exit 2), not the log's
        path = Path(os.environ.get(ENV) or default_path())
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(path, maxBytes=4 << 20, backupCount=3)
        os.chmod(path, 0o600)
        fh.setFormatter(logging.Formatter("%(asctime)s pid %(process)d %(levelname)s %(message)s"))
        handlers.append((LOG, fh))
    except (OSError, AvailLabError):
        path = None
        handlers.append((LOG, logging.NullHandler()))  # else logging's last resort prints the errors
    LOG.setLevel(logging.INFO)
    LOG.propagate = False  # its lines are on stderr already (progress), or belong in the file only
    for logger, h in handlers:
        logger.addHandler(h)
    try:
        LOG.info("availlab %s", shlex.join(argv))
        yield path
    finally:
        for logger, h in handlers:
            logger.removeHandler(h)
            h.close()
        logging.getLogger().setLevel(root_level)


def failed(exc: BaseException, code: int, path: Path | None, debug: bool) -> str:
    """Record an error with its traceback; what to add to the one-line message on stderr."""
    LOG.error("exit %d: %s: %s", code, type(exc).__name__, exc, exc_info=exc)
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    return f" (details: {path})" if path and not debug else ""
