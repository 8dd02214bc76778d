"""The one nemesis shape (events.nemesis): checked before the clients start, set up in order,
invoked in order, torn down in reverse whatever happened (the real nemeses on a lab:
tests/integration)."""

from __future__ import annotations

import pytest

from availlab.clients import workload as clients
from availlab.errors import UsageError
from availlab.events.dirtier import MemoryDirtier
from availlab.events.nemesis import Nemeses, Nemesis, Stage
from availlab.events.ops import Backup, Migrate, Strike, Wait

calls: list[str] = []


class Named(Nemesis[Stage]):
    def __init__(self, name: str, fail: str = ""):
        self.name, self.fail = name, fail

    def _do(self, what: str) -> str:
        calls.append(f"{what} {self.name}")
        if what == self.fail:
            raise RuntimeError(f"{self.name}: {what} failed")
        return self.name

    def require(self, stage):
        self._do("require")

    def setup(self, stage):
        self._do("setup")

    def invoke(self, stage):
        return self._do("invoke")

    def teardown(self, stage):
        self._do("teardown")


@pytest.fixture(autouse=True)
def clean():
    calls.clear()


def stage() -> Stage:
    return Stage(st=None, vm="sql1")  # type: ignore[arg-type]  # no lab: the order only


def test_a_scenario_is_its_nemeses_in_order_torn_down_in_reverse():
    n = Nemeses(stage(), [Named("a"), Named("b")])
    assert calls == ["require a", "require b"]  # on making: before any client starts
    with n:
        assert n.invoke() == ["a", "b"]
    assert calls[2:] == ["setup a", "setup b", "invoke a", "invoke b", "teardown b", "teardown a"]


def test_a_refused_nemesis_refuses_the_scenario_before_anything_is_set_up():
    with pytest.raises(RuntimeError, match="b: require failed"):
        Nemeses(stage(), [Named("a"), Named("b", fail="require")])
    assert calls == ["require a", "require b"]


def test_a_setup_that_fails_half_way_is_torn_down_with_those_before_it():
    with pytest.raises(RuntimeError, match="b: setup failed"):
        with Nemeses(stage(), [Named("a"), Named("b", fail="setup"), Named("c")]):
            pass
    assert calls[3:] == ["setup a", "setup b", "teardown b", "teardown a"]  # c was never set up


def test_a_failed_invoke_stops_the_list_and_tears_every_one_down():
    n = Nemeses(stage(), [Named("a", fail="invoke"), Named("b")])
    with pytest.raises(RuntimeError, match="a: invoke failed"):
        with n:
            n.invoke()
    assert calls[2:] == ["setup a", "setup b", "invoke a", "teardown b", "teardown a"]


def test_under_load_sets_the_nemeses_up_after_the_clients_start_and_down_before_they_stop(monkeypatch):
    class FakeWorkload:
        def __init__(self, *a, **k):
            pass

        def __getattr__(self, name):
            return lambda *a, **k: calls.append(name) or []

    class History:
        def write(self, r):
            pass

    monkeypatch.setattr(clients, "Workload", FakeWorkload)
    monkeypatch.setattr(clients, "lab_environment", lambda st: {})
    n = Nemeses(stage(), [Named("m")])
    with clients.under_load(None, "sql1", None, History(), warmup_s=0, nemeses=n):  # type: ignore[arg-type]
        n.invoke()
    assert calls == ["require m", "start", "setup m", "wait_all_succeeded", "calibrate",
                     "invoke m", "teardown m", "stop", "final_read"]


def test_the_lab_nemeses_are_nemeses_and_check_their_input():
    for n in (Migrate("h2"), Wait(1), Backup(incremental=True), Strike("kill-db-sessions"), MemoryDirtier(64)):
        assert isinstance(n, Nemesis)
    with pytest.raises(UsageError, match="dirty_memory_mib"):
        MemoryDirtier(5000)


def test_a_list_can_stop_at_an_outcome_and_still_tears_every_one_down():
    """A rollout stops at a host that failed (on_failure stop): the rest are not invoked."""
    n = Nemeses(stage(), [Named("a"), Named("b"), Named("c")])
    with n:
        assert n.invoke(stop=lambda outcome: outcome == "b") == ["a", "b"]
    assert calls[3:] == ["setup a", "setup b", "setup c", "invoke a", "invoke b", "teardown c", "teardown b",
                         "teardown a"]
