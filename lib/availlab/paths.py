"""Where availlab keeps things: the checkout (recipes, topologies), the image cache, lab state.

Images are large and reusable across labs and checkouts, so they live in a cache outside the repo
(AVAILLAB_CACHE). Lab state holds secrets and sockets, so it lives in one 0700 directory per lab
(AVAILLAB_STATE). Neither is ever inside the git tree unless a user points it there.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import os
import sys
import threading
from pathlib import Path

INSTALLED_DATA = Path("share") / "availlab"  # where a wheel puts runbooks/ and lab/ (pyproject's data-files)


SOCKET_PATH_MAX = 107  # bytes of a unix socket's path: sun_path holds 108, with its NUL


def project_root() -> Path:
    """Where lab/ and runbooks/ are: AVAILLAB_HOME; else the checkout this package runs from;
    else the copy an installed wheel put under its prefix (`pip install availlab` on a jump host)."""
    env = os.environ.get("AVAILLAB_HOME")
    if env:
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "runbooks").is_dir() and (checkout / "lab").is_dir():
        return checkout
    installed = Path(sys.prefix) / INSTALLED_DATA
    return installed if (installed / "runbooks").is_dir() else checkout


def runs_root() -> Path:
    """Where run folders go: AVAILLAB_RUNS; else runs/ in the checkout when working inside it
    (`make demo`, a runbook opened in JupyterLab from runbooks/); else runs/ under the current
    directory, where a user of an installed copy keeps the evidence."""
    env = os.environ.get("AVAILLAB_RUNS")
    if env:
        return Path(env).resolve()
    root, here = project_root(), Path.cwd().resolve()
    return root / "runs" if here == root or root in here.parents else here / "runs"


def lab_dir() -> Path:
    return project_root() / "lab"


def cache_dir() -> Path:
    env = os.environ.get("AVAILLAB_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "availlab"


# directories whose whole content is the system's or every user's: a state root here would make
# each lab directory a sibling of things availlab must never delete
_NOT_A_STATE_ROOT = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt", "/opt",
                     "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib",
                     "/var/tmp")


def state_root() -> Path:
    """Where every lab's directory lives. AVAILLAB_STATE is checked, because `lab down` deletes
    inside it: absolute, not a system directory or a home directory itself, and (when it exists)
    a directory owned by this user."""
    env = os.environ.get("AVAILLAB_STATE")
    if not env:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "availlab"
    return checked_state_root(env)


@functools.lru_cache(maxsize=8)  # asked for every lab path: checked once per value and process
def checked_state_root(raw: str) -> Path:
    from .errors import UsageError

    path = Path(raw)
    if not path.is_absolute():
        raise UsageError(f"AVAILLAB_STATE: {raw!r} is not an absolute path")
    real = path.resolve()
    homes = {Path.home().resolve(), *(p.resolve() for p in Path("/home").glob("*") if p.is_dir())}
    if str(real) in _NOT_A_STATE_ROOT or real in homes:
        raise UsageError(f"AVAILLAB_STATE: {raw!r} is a system or home directory itself; name a directory "
                         "of its own inside it (e.g. ~/.local/state/availlab)")
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"AVAILLAB_STATE: {raw!r} is not a directory")
        if path.stat().st_uid != os.getuid():
            raise UsageError(f"AVAILLAB_STATE: {raw!r} is owned by uid {path.stat().st_uid}, not by this user")
    return path


def private_dir(path: Path) -> Path:
    """Create (or tighten) a directory that only its owner may enter."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Replace a file so that a crash leaves the old or the new content, never a mix or nothing:
    a private temporary file beside it, fsynced, renamed over it, and the directory fsynced so
    the rename itself survives a power cut."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    write_private(tmp, data)
    os.replace(tmp, path)
    fsync(path.parent)
    return path


def fsync(path: Path) -> None:
    """Flush a file or a directory to the disk: a file someone else wrote (QEMU's backup
    target), or the directory that names a file just renamed into it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: str | bytes) -> Path:
    """Write a file readable by its owner only; created 0600 so it is never briefly world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def sha256_file(path: Path, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def new_run_dir(parent: Path) -> Path:
    """A run folder of its own under `parent`, named by the time: two runs started in the same
    second get `…T101500` and `…T101500-2`, never one folder for both (mkdir is the arbiter)."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    for n in range(1, 1000):
        d = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            d.mkdir()
        except FileExistsError:
            continue
        return d
    raise FileExistsError(f"{parent}: 999 run folders named {stamp}")


LATEST = "latest"


def point_latest(run_dir: Path) -> None:
    """`runs/<runbook>/latest` -> the newest run folder, once its run starts (a CI step or a user
    opens latest/report.html), replaced atomically; a `latest` that is not our link is left alone."""
    link = run_dir.parent / LATEST
    if link.exists() and not link.is_symlink():
        return
    tmp = run_dir.parent / f".{LATEST}-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError:  # a filesystem without symlinks: no link, the run goes on
        with contextlib.suppress(OSError):
            tmp.unlink()
