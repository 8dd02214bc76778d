"""Which hosts a drain may move VMs to (events/drain.py); the moves themselves run on the lab in
tests/integration/test_lab_lifecycle.py."""

from types import SimpleNamespace

import pytest

from availlab.errors import UsageError
from availlab.events import drain


def lab(drained=None, lost=()):
    hosts = {h: SimpleNamespace(name=h) for h in ("h1", "h2", "h3", "dr1")}
    topo = {"hosts": [{"name": "h1"}, {"name": "h2", "site": "primary"}, {"name": "h3"},
                      {"name": "dr1", "site": "dr"}]}
    return SimpleNamespace(hosts=hosts, topology=topo, lost_hosts=list(lost), drained=drained or {}, lab="x")


def test_targets_are_the_sites_other_hosts_that_are_up_and_not_drained(monkeypatch):
    monkeypatch.setattr(drain, "provider", lambda st: SimpleNamespace(reachable=lambda h: h.name != "h3"))
    assert drain._targets(lab(), "h1") == ["h2"]  # not the DR site's host, not h3 (daemon down)
    assert drain._targets(lab(drained={"h2": []}), "h1") == []
    assert drain._targets(lab(), "dr1") == []


def test_unknown_lost_and_undrained_hosts_are_refused():
    with pytest.raises(UsageError, match="unknown host 'h9'"):
        drain._check_host(lab(), "h9")
    with pytest.raises(UsageError, match="h2 was lost"):
        drain._check_host(lab(lost=["h2"]), "h2")
    with pytest.raises(UsageError, match="h1: it is not drained"):
        drain.resume(lab(), "h1")
