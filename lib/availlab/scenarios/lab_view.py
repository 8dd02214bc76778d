"""The lab a runbook uses: loaded once, at the edge, and handed to every step.

Before, each step took the lab's name and read state.json again, so one run saw several copies
of the lab that could disagree. Now `steps.ensure_lab` (or `Lab.load` in a script) loads it once;
a step that changes the lab (creates or revives a VM, loses or repairs a host, restores a VM)
reloads it with `refresh()`, and that is the only other read. Commands below the steps (vm
create, restore) still read the state fresh under the lab's lock: they write it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..lab import state
from ..lab.state import LabState


@dataclass
class Lab:
    """One run's view of its lab: the state as loaded at the edge, refreshed only by the steps
    that change the lab."""
    st: LabState

    @classmethod
    def load(cls, name: str) -> Lab:
        """A lab that is up, for a script or a test that did not bring it up itself."""
        return cls(state.require_up(name))

    @property
    def name(self) -> str:
        return self.st.lab

    @property
    def hosts(self) -> list[str]:
        return list(self.st.hosts)

    def refresh(self) -> Lab:
        """Reload after a step that changed the lab; returns itself."""
        self.st = state.require_up(self.name)
        return self

    def _repr_markdown_(self) -> str:
        """What a runbook shows about the lab it uses: which accelerator the figures were measured under."""
        accel = self.st.accel
        return (f"**Lab `{self.name}`** is up: hosts {', '.join(self.hosts)}; "
                f"accelerator **{str(accel.get('accel', '?')).upper()}** ({accel.get('reason', '')}).")
