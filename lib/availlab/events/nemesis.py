"""The nemesis protocol, as in Jepsen: one shape for everything done to the VM while the clients
run (a migration, a backup, a dump, a memory dirtier, a noisy neighbour, a fault).

A nemesis is set up once the clients start (a dirtier begins to dirty, before the warm-up),
invoked in the scenario's order (a migration moves, a backup copies), and torn down whatever
happened (the dirtier stops), before the clients stop. A scenario is an ordered list of them
(`Nemeses`) inside `clients.workload.under_load`. Most are in events.ops, the guest processes in
events.dirtier; a scenario may bring its own (scenarios.dynamic.Watching, scenarios.rolling.MaintainHost).

Faults are nemeses too, with more to them: what one fault acts on (Scene), the evidence that it
struck, the registry of faults and the frame of each family (when a fault strikes: mid-migration,
inside a backup, at once). The faults live in faults_migration, faults_backup and faults_db;
events.faults runs and records them, and `ops.Strike` puts one in a scenario's list.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from ..history import RecordSink
from ..lab.state import LabState


@dataclass(kw_only=True)
class Stage:
    """What every nemesis acts on and records to: the lab, the scenario's VM, its events file."""
    st: LabState
    vm: str
    events: RecordSink | None = None


S = TypeVar("S", bound=Stage)


class Nemesis(Generic[S]):
    """Checked before any client starts (`require`: what the provider must offer), set up before
    the warm-up, invoked in order, torn down always (even when setup or invoke failed, or the run
    was interrupted), like chaostoolkit's rollbacks. `invoke` returns what the notebook shows (a
    MigrationRecord, a BackupSet); each nemesis writes its own records."""

    def require(self, stage: S) -> None:
        pass

    def setup(self, stage: S) -> None:
        pass

    def invoke(self, stage: S) -> Any:
        return None

    def teardown(self, stage: S) -> None:
        pass


class Nemeses:
    """A scenario's nemeses, in order, on one stage. Made, it checks each one's `require` (so a
    scenario is refused before its clients start); entered (by under_load) it sets each up; left,
    it tears down, in reverse, each one whose setup began."""

    def __init__(self, stage: Stage, nemeses: Sequence[Nemesis[Any]]):
        self.stage, self.nemeses = stage, list(nemeses)
        self._stack = contextlib.ExitStack()
        for n in self.nemeses:
            n.require(stage)

    def __enter__(self) -> Nemeses:
        try:
            for n in self.nemeses:
                self._stack.callback(n.teardown, self.stage)  # first: a setup that failed half-way is undone too
                n.setup(self.stage)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def invoke(self, stop: Callable[[Any], bool] | None = None) -> list[Any]:
        """Each invoke in order; `stop(outcome)` true ends the list there (a rollout stops at a
        host that failed), and the outcomes so far are returned."""
        out: list[Any] = []
        for n in self.nemeses:
            out.append(n.invoke(self.stage))
            if stop is not None and stop(out[-1]):
                break
        return out


# --- faults: nemeses in a frame ------------------------------------------------------------------

@dataclass(kw_only=True)
class Scene(Stage):
    """What one fault acts on, and what it leaves behind: the repairs it made and what it saw."""
    target: str
    source: str
    cut_s: float = 5.0
    timeout_s: float = 30.0
    repairs: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # setups undone at teardown
    before_copy: Callable[[Path], None] | None = None


class Fault(Nemesis[Scene]):
    """A nemesis whose family's frame decides when it strikes (`invoke`: mid-migration, inside a
    backup, at once); `teardown` repairs and always runs. It must also say whether it struck."""
    name: ClassVar[str]
    family: ClassVar[str]  # migration | backup | db: the frame it runs in and what is expected of it

    def invoke(self, sc: Scene) -> None:
        pass

    def struck(self, sc: Scene, ok: bool, err: str) -> tuple[bool, str]:
        """Did it act, and what shows it? Like a Jepsen nemesis a fault records what it did: one
        that did not strike (nothing to kill, the job finished first) proves nothing, and its row
        is UNKNOWN (checks.faults), never PASS. `ok`, `err`: how the action it hit ended."""
        return False, "this fault states no evidence that it acted"


REGISTRY: dict[str, Fault] = {}


Frame = Callable[["Fault", Scene], tuple[str, int | None, bool, str]]  # -> action, injected at, ok, error
FRAMES: dict[str, Frame] = {}  # family -> its frame


def frame(family: str) -> Callable[[Frame], Frame]:
    def register(fn: Frame) -> Frame:
        FRAMES[family] = fn
        return fn
    return register


def registered(cls: type[Fault]) -> type[Fault]:
    REGISTRY[cls.name] = cls()
    return cls


@contextlib.contextmanager
def _repairing(fault: Fault, sc: Scene) -> Iterator[None]:
    """setup ... teardown, the teardown (and whatever setup entered into sc.stack) guaranteed; a
    failing repair is recorded, never hides the fault's own error."""
    try:
        fault.setup(sc)
        yield
    finally:
        for undo in (lambda: fault.teardown(sc), sc.stack.close):
            try:
                undo()
            except Exception as exc:  # noqa: BLE001 - a repair that failed is evidence, not a crash
                sc.repairs.append(f"repair FAILED: {type(exc).__name__}: {exc}")
