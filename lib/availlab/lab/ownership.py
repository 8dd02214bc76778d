"""What a lab owns outside its own state directory, so that `lab down` removes exactly that.

The lab root (`<state>/<lab>`) is the lab's alone. Shared storage and the DR site may be
directories the user named, which may hold their own files: the lab records in `state.json`
(`owned`) each directory it creates there, before it creates it, and `lab down` removes only those,
the shared and DR directories themselves only when nothing is left in them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from .. import names, paths
from ..errors import LabError
from ..progress import step
from . import state
from .state import LabState

SHARED_PARTS = ("vms", "logs")  # what the lab keeps in shared storage: VM disks, console logs


def refuse_foreign_storage(shared: Path, root: Path, owned: Sequence[str] = ()) -> list[Path]:
    """The lab's directories in shared storage, refused (before anything is created) when one
    already exists that this lab did not create (`owned`: an unfinished earlier `up` of it):
    `lab down` removes what the lab made, so it must never take the user's own `vms/` for the
    lab's. Shared storage inside the lab root is the lab's whole."""
    parts = [shared / p for p in SHARED_PARTS]
    if root in shared.parents:
        return parts
    foreign = [str(p) for p in parts if (p.exists() or p.is_symlink()) and str(p) not in owned]
    if foreign:
        raise LabError(f"storage.shared: {', '.join(foreign)} already exist(s) and were not made by this lab; "
                       "point storage.shared at another directory or move them away")
    return parts


def claim_dir(st: LabState, path: Path) -> None:
    """Create a directory the lab will own, recorded before it exists (intent first); an existing
    directory is used as it is (its mode kept) and never recorded, so `lab down` leaves it."""
    if path.is_dir():
        return
    if path.exists() or path.is_symlink():
        raise LabError(f"{path} exists and is not a directory")
    if str(path) not in st.owned:
        st.owned.append(str(path))
        state.save(st)
    paths.private_dir(path)


def remove_owned(st: LabState, root: Path, removed: list[str]) -> None:
    """Remove what the lab created outside its own directory: its parts of shared storage whole,
    the shared and DR directories only when nothing is left in them (a DR site holds backups,
    which outlive the lab; anything else there was put by someone else)."""
    for d in reversed(st.owned):
        p = Path(d)
        if not p.is_dir() or p.is_symlink() or p == root or root in p.resolve().parents:
            continue
        if p.name in SHARED_PARTS and p.parent == Path(st.shared_dir):
            names.inside(Path(st.shared_dir), p, "lab down")  # symlinks resolved: never outside
            shutil.rmtree(p)
            removed.append(f"directory {p}")
        elif not any(p.iterdir()):
            p.rmdir()
            removed.append(f"directory {p}")
        else:
            step(f"keeping {p}: it holds files the lab did not put there" if str(p) != st.dr_dir
                 else f"keeping DR site {p}: it holds backups, which outlive the lab")


def recorded_elsewhere(lab: str) -> list[str]:
    """What an unreadable state.json still names as the lab's outside its root, if anything."""
    try:
        owned = json.loads(state.state_file(lab).read_bytes().decode("utf-8")).get("owned", [])
        return [str(d) for d in owned if Path(str(d)).exists()] if isinstance(owned, list) else []
    except (OSError, ValueError, AttributeError):
        return []
