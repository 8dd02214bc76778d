"""Issue 29: the hypervisor behind a protocol (lab/hypervisor.py). Only lab/ speaks libvirt; a
migration is asked for in neutral words and libvirt's call is derived from them in one place; a
lifecycle event arrives named. The real calls run in every integration test that migrates."""

import re
from pathlib import Path

import libvirt

from availlab.lab.hypervisor import MigrateRequest
from availlab.lab.virt_const import lifecycle_names, migrate_call, migrate_flag_names

LIB = Path(__file__).resolve().parents[2] / "lib" / "availlab"


def test_nothing_outside_lab_speaks_libvirt():
    """Events, VM steps, scenarios and the CLI reach a host through HypervisorAPI only."""
    speaking = [f"{p.relative_to(LIB)}:{i}" for p in sorted(LIB.rglob("*.py")) if p.relative_to(LIB).parts[0] != "lab"
                for i, line in enumerate(p.read_text().splitlines(), 1)
                if re.search(r"^\s*(import libvirt|from libvirt|from \.\.?lab\.virt(_const|_backup)? import|"
                             r"from \.\.?lab import .*\bvirt\b)", line)]
    assert speaking == []


def test_a_request_becomes_libvirts_flags_and_parameters_in_one_place():
    plain = MigrateRequest(address="10.213.0.12")
    params, flags = migrate_call(plain)
    assert flags == (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
                     | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
    assert params == {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://10.213.0.12"}
    every = MigrateRequest(address=None, bandwidth_mib_s=32, parallel_connections=4, auto_converge=True,
                           postcopy=True, compressed=True, unsafe=True, copy_disks=("vda",), dest_xml="<domain/>")
    params, flags = migrate_call(every)
    assert migrate_flag_names(every) == ["LIVE", "PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE", "UNSAFE",
                                         "AUTO_CONVERGE", "POSTCOPY", "PARALLEL", "COMPRESSED", "NON_SHARED_INC"]
    for name in migrate_flag_names(every):
        assert flags & getattr(libvirt, f"VIR_MIGRATE_{name}")
    assert params == {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 32, libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: 4,
                      libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"], libvirt.VIR_MIGRATE_PARAM_DEST_XML: "<domain/>"}
    assert "PARALLEL" not in migrate_flag_names(MigrateRequest(parallel_connections=1))


def test_lifecycle_events_arrive_named():
    assert lifecycle_names(libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED) == (
        "suspended", "migrated")
    assert lifecycle_names(libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_POSTCOPY) == (
        "resumed", "postcopy")
    assert lifecycle_names(99, 7) == ("99", "7")  # a newer libvirt's event: said as its number
