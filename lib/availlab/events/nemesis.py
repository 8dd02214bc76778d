"""The nemesis protocol, as in Jepsen: what one fault acts on (Scene), what a fault is (setup,
invoke, teardown, and the evidence that it struck), the registry of faults and the frame of each
family (when a fault strikes: mid-migration, inside a backup, at once). The faults themselves
live in faults_migration, faults_backup and faults_db; events.faults runs and records them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..history import RecordSink
from ..lab.state import LabState


@dataclass
class Scene:
    """What one fault acts on, and what it leaves behind: the repairs it made and what it saw."""
    st: LabState
    vm: str
    target: str
    source: str
    cut_s: float = 5.0
    timeout_s: float = 30.0
    events: RecordSink | None = None
    repairs: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # setups undone at teardown
    before_copy: Callable[[Path], None] | None = None


class Fault:
    """A nemesis, as in Jepsen: `setup` prepares, `invoke` strikes (the family's frame decides
    when: mid-migration, inside a backup, at once), `teardown` repairs and always runs, even when
    setup or invoke failed, like chaostoolkit's rollbacks."""
    name: ClassVar[str]
    family: ClassVar[str]  # migration | backup | db: the frame it runs in and what is expected of it

    def setup(self, sc: Scene) -> None:
        pass

    def invoke(self, sc: Scene) -> None:
        pass

    def teardown(self, sc: Scene) -> None:
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
