"""Integration tests run the real lab: namespaces, libvirtd, QEMU, PostgreSQL, pyodbc.

They need root. Without it they FAIL (CI runs as root): a skipped lab test must never look like
a pass. Every lab a test creates is torn down in a finalizer, also when the test fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from availlab import lab
from availlab.topology import Topology, parse_topology

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _need_root():
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (network namespaces, cgroups, libvirtd); "
                    "CI runs as root — run `sudo make test`", pytrace=False)


def topology(name: str, hosts: int = 2) -> Topology:
    return parse_topology({"name": name, "accel": "auto",
                           "hosts": [{"name": f"h{i + 1}", "cores": 1} for i in range(hosts)]},
                          f"<test lab {name}>")


def residue_report(name: str) -> dict[str, list]:
    """Everything of lab `name` still on the machine, by every route down() uses and more."""
    from availlab import cgroups, netns

    procs = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if stat != "Z" and f"/availlab/{name}/" in cmd:
            procs.append(f"{pid}: {cmd[:160]}")
    return {
        "namespaces": netns.list_lab_namespaces(name),
        "cgroups": [str(p) for p in cgroups.lab_cgroup_dirs(name)],
        "processes": procs,
    }


@pytest.fixture
def lab_factory():
    """Create labs; always tear them down afterwards, whatever the test did."""
    made: list[str] = []

    def make(name: str, hosts: int = 2):
        made.append(name)
        return lab.up(topology(name, hosts))

    yield make
    for name in made:
        lab.down(name)
