"""Kept checkpoint descriptions are given back oldest first; one whose bitmap is gone is dropped,
and a host that cannot be asked drops nothing. The real round trip across two live migrations is
tests/integration/test_backup_chains.py."""

import pytest

from availlab.errors import CheckpointRefused, HypervisorError
from availlab.events import checkpoints
from availlab.lab.state import LabState

REFUSED = CheckpointRefused  # as lab/virt_backup.py raises libvirt's "inconsistent" and "not this domain"


def _xml(name: str, created: int) -> str:
    return f"<domaincheckpoint><name>{name}</name><creationTime>{created}</creationTime></domaincheckpoint>"


class FakeHost:
    def __init__(self, known, refuse=None):
        self.known, self.refuse, self.redefined = list(known), refuse or {}, []

    def checkpoints(self, vm):
        return list(self.known)

    def checkpoint_xml(self, vm, name):
        return _xml(name, 300)

    def redefine_checkpoint(self, vm, xml):
        name = xml.split("<name>")[1].split("<")[0]
        if name in self.refuse:
            raise self.refuse[name](f"h2: redefine {name}")
        self.redefined.append(name)


@pytest.fixture
def st(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    s = LabState(lab="ck", status="up", topology={})
    d = checkpoints.directory(s, "sql1")
    d.mkdir(parents=True)
    for name, created in (("ck-b", 200), ("ck-a", 100), ("ck-c", 300)):  # file names sort otherwise
        (d / f"{name}.xml").write_text(_xml(name, created))
    return s


def test_missing_ones_are_given_back_oldest_first(st):
    host = FakeHost(known=["ck-b"])
    assert checkpoints.adopt(st, host, "sql1") == (["ck-a", "ck-c"], [])
    assert host.redefined == ["ck-a", "ck-c"]


def test_one_whose_bitmap_is_gone_is_dropped_and_the_rest_adopted(st):
    host = FakeHost(known=[], refuse={"ck-a": REFUSED})
    adopted, dropped = checkpoints.adopt(st, host, "sql1")
    assert adopted == ["ck-b", "ck-c"] and dropped[0].startswith("ck-a (")
    assert [n for n, _ in checkpoints.kept(st, "sql1")] == ["ck-b", "ck-c"]


def test_a_host_that_cannot_be_asked_drops_nothing(st):
    host = FakeHost(known=[], refuse={"ck-b": HypervisorError})  # e.g. an internal error: not about the bitmap
    with pytest.raises(HypervisorError):
        checkpoints.adopt(st, host, "sql1")
    assert len(checkpoints.kept(st, "sql1")) == 3


def test_keep_and_forget(st):
    checkpoints.keep(st, FakeHost([]), "sql1", "ck-d")
    assert [n for n, _ in checkpoints.kept(st, "sql1")][-1] == "ck-d"
    checkpoints.forget(st, "sql1", "ck-d")
    assert "ck-d" not in [n for n, _ in checkpoints.kept(st, "sql1")]


def test_a_description_of_another_vm_of_that_name_is_dropped_not_fatal(st):
    """A VM restored or created again under the same name: libvirt refuses the old description
    (its uuid, or its bitmap, is not this VM's). Dropped, so backups of the new VM go on."""
    host = FakeHost(known=[], refuse={"ck-a": REFUSED, "ck-b": REFUSED,
                                      "ck-c": REFUSED})
    adopted, dropped = checkpoints.adopt(st, host, "sql1")
    assert adopted == [] and len(dropped) == 3 and checkpoints.kept(st, "sql1") == []
