"""Names that become paths, namespaces and cgroups: checked in full wherever they enter.

A lab name is joined to the state root, to `/sys/fs/cgroup/availlab/` and to namespace prefixes,
and `lab down` deletes what it finds there; `..`, `.`, `/` or an empty name would make that the
parent directory, every lab, or the whole filesystem. So every name is matched in full
(`fullmatch`: a `$` pattern lets `"ab\\n"` through), at the edge (CLI, environment, topology,
runbook parameters, catalogue files) and again at the sink (`state.lab_root`), and every path
built from one is checked to stay inside its root before anything is created or removed there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UsageError

# Local lab names are shorter (topology.NAME_RE: they go into interface names); this is the
# widest name any lab may have, local or remote, so one check serves both.
LAB_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
LAB_NAME_RULE = "1-31 lower-case letters, digits or '-', starting with a letter"
# Backup set ids (`<vm>-<stamp>-full`) and the files inside a set: one path component, no dots
# at the start (no `..`, no hidden files), no separators.
COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def lab_name(value: object, where: str = "lab") -> str:
    """The lab name, or a UsageError naming where the bad one came from."""
    if not isinstance(value, str) or not LAB_NAME.fullmatch(value):
        raise UsageError(f"{where}: invalid lab name {value!r}: must be {LAB_NAME_RULE}")
    return value


DEFAULT_LAB = "default"


def chosen_lab(flag: str | None) -> str:
    """The lab named by --lab, else $AVAILLAB_LAB, else the default; checked in full, because a
    name such as `..` or `/` would turn `lab down` against the directories around the lab. An
    empty --lab or AVAILLAB_LAB is an error, never a silent fall-back to another lab."""
    if flag is not None:
        return lab_name(flag, "--lab")
    if "AVAILLAB_LAB" in os.environ:
        return lab_name(os.environ["AVAILLAB_LAB"], "AVAILLAB_LAB")
    return DEFAULT_LAB


def component(value: object, where: str) -> str:
    """One path component read from a file or the command line (a set id, a file in a set)."""
    if not isinstance(value, str) or not COMPONENT.fullmatch(value) or ".." in value:
        raise UsageError(f"{where}: {value!r} is not a plain name (letters, digits, '.', '_', '-'; "
                         "no '/', no leading '.', no '..')")
    return value


def inside(root: Path, path: Path, where: str) -> Path:
    """`path`, refused unless it resolves to a place strictly inside `root` (symlinks followed)."""
    r, p = Path(root).resolve(), Path(path).resolve()
    if p == r or r not in p.parents:
        raise UsageError(f"{where}: {path} is not inside {root}")
    return Path(path)
