"""What produced a run: which availlab, which accelerator, which libvirt, QEMU and CPU on each host.

A report attached to a change request must say what measured it, or it can be neither reproduced
nor compared (issue 27). under_load records this once per workload, as an `environment` record in
the history, beside the clients' own `client-info` (ODBC driver, server version); the report's
`environment` section is put together from those records (availlab.report.provenance), so a
verdict recomputed from a run folder says the same.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from typing import Any

from .. import __version__, paths
from ..errors import AvailLabError
from .defects import caveats
from .providers import provider, reachable
from .state import LabState


def availlab_build() -> dict[str, Any]:
    """The version, and for a git checkout its commit and whether files differ from it."""
    out: dict[str, Any] = {"version": __version__, "commit": None, "dirty": None}
    root = paths.project_root()
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode == 0:
            status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10)
            out.update(commit=commit.stdout.strip(), dirty=bool(status.stdout.strip()) if status.returncode == 0 else None)
    except (OSError, subprocess.TimeoutExpired):
        pass  # no git here (an installed copy): the version alone
    return out


def _version(n: int) -> str:
    return f"{n // 1_000_000}.{n // 1000 % 1000}.{n % 1000}"


def host_facts(st: LabState) -> dict[str, dict[str, Any]]:
    """Per host: libvirt and QEMU versions and the host CPU as libvirt describes it; an error
    in place of the facts of a host that did not answer."""
    out: dict[str, dict[str, Any]] = {}
    for h in st.hosts.values():
        if not reachable(st, h):
            out[h.name] = {"error": "not reachable"}
            continue
        try:
            with provider(st).connect(h) as hv:
                v = hv.versions()
                cpu = ET.fromstring(hv.host_cpu_xml() or "<cpu/>")
            out[h.name] = {"libvirt": _version(v["libvirt"]), "qemu": _version(v["hypervisor"]),
                           "cpu_model": cpu.findtext("model"), "cpu_vendor": cpu.findtext("vendor"),
                           "arch": cpu.findtext("arch")}
        except AvailLabError as exc:
            out[h.name] = {"error": str(exc)}
    return out


def lab_environment(st: LabState) -> dict[str, Any]:
    hosts, accel = host_facts(st), st.accel.get("accel")
    return {"availlab": availlab_build(), "lab": st.lab, "provider": st.provider,
            "accel": accel, "accel_reason": st.accel.get("reason"), "hosts": hosts,
            "caveats": caveats(accel, (h.get("qemu") for h in hosts.values()))}
