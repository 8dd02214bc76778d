"""A process in a running guest, started and stopped through the guest agent (guest-exec) on
whichever host the VM runs on now. Used for load the scenarios put inside a VM: the memory
dirtier, the noisy neighbour's CPU burner."""

from __future__ import annotations

from .lab import running_host
from .state import LabState
from .virt import Hypervisor


class GuestProcess:
    def __init__(self, st: LabState, vm: str, path: str, args: list[str]):
        self.st, self.vm, self.path, self.args = st, vm, path, args
        self.pid: int | None = None

    def _exec(self, path: str, args: list[str]) -> dict:
        h = self.st.hosts[running_host(self.st, self.vm)]
        with Hypervisor(h.name, h.uri) as hv:
            return hv.agent_command(self.vm, {"execute": "guest-exec",
                                              "arguments": {"path": path, "arg": args}})

    def start(self) -> int:
        self.pid = int(self._exec(self.path, self.args)["pid"])
        return self.pid

    def stop(self) -> None:
        """Kill it in the guest (a no-op if it was never started or already stopped)."""
        if self.pid is not None:
            self._exec("/bin/kill", [str(self.pid)])
            self.pid = None
