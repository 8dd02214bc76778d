"""A lab is a thing with an identity: a marker file written when its directory is made.

A directory named after a lab is no proof that availlab made it (a user's `<state>/victim` with
their files in it is named just the same), and everything under a lab's directory is the lab's to
delete. So the directory is created with the marker already inside (made under a temporary name,
renamed into place), and every path that deletes or kills first proves the marker: a regular
file, owned by this user, naming this lab. The lab id it holds also tags what the lab leaves
outside its directory (backup sets at a shared DR site).

Labs made before the marker existed are recognised by a state.json of this lab (the only other
thing availlab writes there first), and get their marker on that proof.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
import uuid
from pathlib import Path
from typing import Any

from .. import names, paths
from ..errors import OwnershipError

MARKER = ".availlab-lab"
STATE_FILE = "state.json"


def lab_root(lab: str) -> Path:
    """The lab's own directory; the name is checked here too, whatever entry it came through,
    because everything under this path is the lab's to delete (once its marker is proven)."""
    return paths.state_root() / names.lab_name(lab)


def _read(root: Path) -> dict[str, Any] | None:
    """The marker's content if it is ours to trust, else None."""
    try:
        st = os.lstat(root / MARKER)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            return None
        data = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _legacy(lab: str) -> bool:
    """A lab of an availlab before the marker: its own state.json, naming it, owned by us."""
    f = lab_root(lab) / STATE_FILE
    try:
        if os.lstat(f).st_uid != os.getuid() or not stat.S_ISREG(os.lstat(f).st_mode):
            return False
        return bool(json.loads(f.read_text()).get("lab") == lab)
    except (OSError, ValueError, AttributeError):
        return False


def _write(root: Path, lab: str) -> str:
    lab_id = uuid.uuid4().hex
    paths.write_atomic(root / MARKER, json.dumps({"lab": lab, "id": lab_id, "uid": os.getuid(),
                                                  "created": time.time(), "by": "availlab"}) + "\n")
    return lab_id


def lab_id(lab: str) -> str | None:
    """The lab's id, None when its directory is missing or not proven to be a lab's."""
    data = _read(lab_root(lab))
    return str(data["id"]) if data and data.get("lab") == lab and data.get("id") else None


def prove(lab: str, action: str) -> str | None:
    """The lab's id before `action` deletes or stops anything of it; None when it has no directory
    (then only what is named after it exists: namespaces, cgroups). Refused, naming the path, when
    the directory is not a lab's, or another lab's."""
    root = lab_root(lab)
    if not (root.exists() or root.is_symlink()):
        return None
    if root.is_symlink() or not root.is_dir():
        raise OwnershipError(f"{root} is not a directory availlab made for lab {lab!r}; {action} refused, "
                             "nothing was touched")
    data = _read(root)
    if data is None:
        if _legacy(lab):
            return _write(root, lab)
        raise OwnershipError(f"{root} has no lab marker ({MARKER}) of this user: it is not a lab availlab made, "
                             f"so {action} touches nothing in it. If it is yours, move it away; if it is "
                             "a lab's, its marker was removed by hand")
    if data.get("lab") != lab:
        raise OwnershipError(f"{root} is marked as lab {data.get('lab')!r}, not {lab!r}; {action} refused")
    return str(data.get("id"))


def release(lab: str) -> None:
    """Remove the lab's directory once nothing but its marker is left in it: the marker goes last
    and only with the directory, so a `down` cut short, or a DR site kept, stays provably the lab's."""
    root = lab_root(lab)
    if root.is_dir() and [p.name for p in root.iterdir()] in ([], [MARKER]):
        (root / MARKER).unlink(missing_ok=True)
        root.rmdir()


def claim(lab: str) -> str:
    """The lab's directory, created with its marker inside (or proven, if it exists); its id."""
    root = lab_root(lab)
    known = prove(lab, "lab up")
    if known:
        return known
    parent = root.parent  # the state root: maybe the user's own directory, its mode left as it is
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{root.name}.creating-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    paths.private_dir(tmp)
    new_id = _write(tmp, lab)
    try:
        if not root.exists():  # under the lab's lock: no one else makes it
            os.rename(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    found = prove(lab, "lab up")
    if found != new_id:
        raise OwnershipError(f"{root}: appeared while lab {lab!r} was being created; refused")
    return new_id
