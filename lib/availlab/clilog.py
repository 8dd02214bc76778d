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
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import AvailLabError

LOG = logging.getLogger("availlab")
ENV = "AVAILLAB_LOG"  # a log file of one's own (CI: inside the job's artefacts)


def default_path() -> Path:
    return paths.state_root() / ".logs" / "availlab.log"


def _file(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = logging.handlers.RotatingFileHandler(path, maxBytes=4 << 20, backupCount=3)
    os.chmod(path, 0o600)
    fh.setFormatter(logging.Formatter("%(asctime)s pid %(process)d %(levelname)s %(message)s"))
    return fh


@dataclass
class Log:
    """Where one command's log goes. The default file lives in the state root, which a command
    refused before anything exists must not create (an AVAILLAB_STATE of its own stays absent):
    until the root exists its lines are held, and written at the end if a command made it (the
    first `lab up`)."""
    path: Path | None  # None: no log file (a bad AVAILLAB_STATE, a read-only home)
    explicit: bool  # AVAILLAB_LOG: written wherever it says
    held: logging.handlers.BufferingHandler | None = None  # the lines, while `root` does not exist
    root: Path | None = None  # the state root the held lines wait for

    def where(self) -> Path | None:
        """The file the command's lines are (or will be) in, for a failure's message."""
        if self.path is None or (self.root is not None and not self.root.is_dir()):
            return None
        return self.path

    def flush_held(self) -> None:
        path = self.where()
        if self.held is None or path is None:
            return
        with contextlib.suppress(OSError):
            fh = _file(path)
            for record in self.held.buffer:
                fh.handle(record)
            fh.close()


@contextlib.contextmanager
def session(argv: list[str], debug: bool) -> Iterator[Log]:
    """The log file (and, with `debug`, stderr) attached for one command, which is recorded. A
    command never fails for its log. Detached at the end: a process may run several commands
    (tests, a notebook)."""
    handlers: list[tuple[logging.Logger, logging.Handler]] = []
    root_level = logging.getLogger().level
    if debug:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))
        handlers.append((logging.getLogger(), err))
        logging.getLogger().setLevel(logging.DEBUG)
    log = Log(None, bool(os.environ.get(ENV)))
    try:  # a bad AVAILLAB_STATE is the command's to report (exit 2), not the log's
        log.path = Path(os.environ.get(ENV) or default_path())
        if log.explicit or paths.state_root().is_dir():
            handlers.append((LOG, _file(log.path)))
        else:
            log.held, log.root = logging.handlers.BufferingHandler(capacity=1 << 16), paths.state_root()
            handlers.append((LOG, log.held))
    except (OSError, AvailLabError):
        log.path = None
        handlers.append((LOG, logging.NullHandler()))  # else logging's last resort prints the errors
    LOG.setLevel(logging.INFO)
    LOG.propagate = False  # its lines are on stderr already (progress), or belong in the file only
    for logger, h in handlers:
        logger.addHandler(h)
    try:
        LOG.info("availlab %s", shlex.join(argv))
        yield log
    finally:
        for logger, h in handlers:
            logger.removeHandler(h)
        log.flush_held()
        for _, h in handlers:
            h.close()
        logging.getLogger().setLevel(root_level)


def failed(exc: BaseException, code: int, log: Log | None, debug: bool) -> str:
    """Record an error with its traceback; what to add to the one-line message on stderr."""
    LOG.error("exit %d: %s: %s", code, type(exc).__name__, exc, exc_info=exc)
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    path = log.where() if log else None
    return f" (details: {path})" if path and not debug else ""
