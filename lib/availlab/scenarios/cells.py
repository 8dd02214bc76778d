"""The runbooks' `parameters` cells, written from their models (availlab.scenarios.params).

papermill reads the values and their annotations from the cell, JupyterLab users edit them there;
the model stays the one list: `python -m availlab.scenarios.cells --write` rewrites every cell, and
a unit test fails if one differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .params import RUNBOOKS, Runbook

HEADER = ("# Parameters: papermill replaces these (`availlab run … -p name value`).\n"
          "# Written from availlab.scenarios.params.{model}: change them there, then\n"
          "# `python -m availlab.scenarios.cells --write`.")


def parameters_cell(model: type[Runbook]) -> str:
    """The notebook's `parameters` cell, written from the model (papermill reads the values and
    their annotations; JupyterLab users edit them here)."""
    lines = [HEADER.format(model=model.__name__)]
    for name, f in sorted(model.model_fields.items(), key=lambda kv: kv[0] == "run_dir"):  # run_dir last
        default = f.get_default(call_default_factory=True)
        kind = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}[type(default)]
        value = json.dumps(default) if isinstance(default, (str, list, dict)) else repr(default)
        what = (f.description or "").replace("RUNBOOK", model.NOTEBOOK)
        lines.append(f"{name}: {kind} = {value}" + (f"  # {what}" if what else ""))
    return "\n".join(lines)


def write_cells(root: Path) -> list[str]:
    """Rewrite each runbook's parameters cell from its model; returns the notebooks changed."""
    changed = []
    for stem, model in RUNBOOKS.items():
        path = root / f"{stem}.ipynb"
        nb = json.loads(path.read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        src = parameters_cell(model)
        if "".join(cell["source"]) != src:
            cell["source"] = src.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(path.name)
    return changed


if __name__ == "__main__":  # python -m availlab.scenarios.cells --write
    from ..paths import project_root

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m availlab.scenarios.cells --write  (rewrites runbooks/*.ipynb parameters cells)")
    print("\n".join(write_cells(project_root() / "runbooks")) or "every parameters cell is current")
