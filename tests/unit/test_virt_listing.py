"""A VM that leaves a host while it is being listed (a migration undefines it at the source) is
simply not listed; any other libvirt error still is one. libvirt's own objects are faked here:
the race is seen for real by the fault matrix (runbook 40) and by bench/defaults.py."""

from __future__ import annotations

import libvirt
import pytest

from availlab.errors import HypervisorError
from availlab.lab.virt import Hypervisor


def _error(code: int) -> libvirt.libvirtError:
    exc = libvirt.libvirtError("faked")
    exc.err = (code, 0, "faked", 0, "", "", "", 0, 0)
    return exc


class _Dom:
    def __init__(self, name: str, raises: int | None = None):
        self._name, self._raises = name, raises

    def name(self) -> str:
        if self._raises is not None:
            raise _error(self._raises)
        return self._name

    def UUIDString(self) -> str:
        return "00000000-0000-0000-0000-000000000000"

    def state(self) -> list[int]:
        return [libvirt.VIR_DOMAIN_RUNNING, 0]

    def isPersistent(self) -> int:
        return 1


class _Conn:
    def __init__(self, doms):
        self.doms = doms

    def listAllDomains(self, flags: int = 0):
        return self.doms


def _hv(doms) -> Hypervisor:
    hv = Hypervisor.__new__(Hypervisor)
    hv.name, hv.uri, hv._conn = "h1", "test:///", _Conn(doms)
    return hv


def test_a_vm_gone_between_listing_and_asking_is_not_listed():
    hv = _hv([_Dom("sql1", raises=libvirt.VIR_ERR_NO_DOMAIN), _Dom("by1")])
    assert [d.name for d in hv.domains()] == ["by1"]


def test_any_other_libvirt_error_is_still_raised():
    hv = _hv([_Dom("sql1", raises=libvirt.VIR_ERR_INTERNAL_ERROR)])
    with pytest.raises(HypervisorError, match="list VMs"):
        hv.domains()
