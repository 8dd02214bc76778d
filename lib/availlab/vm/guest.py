"""A process in a running guest, started and stopped through the guest agent (guest-exec) on
whichever host the VM runs on now. Used for load the scenarios put inside a VM: the memory
dirtier, the noisy neighbour's CPU burner."""

from __future__ import annotations

import base64

from ..errors import AvailLabError, VMError
from ..lab.hypervisor import HypervisorAPI
from ..lab.providers import provider, running_host
from ..lab.state import LabState
from ..waiting import wait_until


class GuestProcess:
    """A load generator in a lab guest (memory dirtier, CPU hog). It ends by itself after
    `lifetime_s` (coreutils `timeout` in the guest), so a runbook killed before its `stop()`
    leaves it running that long at most; on a real cluster it is refused: a production VM gets
    no process of ours, the refusal naming `what` asked for it (default: the program)."""

    def __init__(self, st: LabState, vm: str, path: str, args: list[str], lifetime_s: int = 3600,
                 what: str | None = None):
        provider(st).require("guest_process", vm=vm, what=what or path)
        self.st, self.vm = st, vm
        self.path, self.args = "/usr/bin/timeout", ["--signal=KILL", str(int(lifetime_s)), path, *args]
        self.pid: int | None = None

    def _exec(self, path: str, args: list[str]) -> dict:
        h = self.st.hosts[running_host(self.st, self.vm)]
        with provider(self.st).connect(h) as hv:
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


def _agent_pid(hv: HypervisorAPI, vm: str) -> int | None:
    """The running agent's pid, read through the agent itself (guest-file-*, no process started);
    None while no agent answers."""
    try:
        return int(hv.read_guest_file(vm, "/run/qemu-ga.pid", count=32, timeout_s=2) or 0) or None
    except (AvailLabError, ValueError):
        return None


def restart_agent(st: LabState, vm: str, writer: bool, timeout_s: float = 30) -> None:
    """Start the guest agent again with the freeze callback (`writer`: the VSS-writer stand-in a
    fault can make hang) or without it (how it normally runs: lab/guest/agent-restart says why).
    The guest's script is started detached, lets this call be answered, then replaces the agent;
    done once an agent with another pid answers (the old one answers for a while: under load the
    script itself takes a moment to start)."""
    h = st.hosts[running_host(st, vm)]
    with provider(st).connect(h) as hv:
        old = wait_until(lambda: _agent_pid(hv, vm), 10, 0.2)  # which agent is the old one, for sure
        if old is None:
            raise VMError(f"{vm}: the guest agent did not say its pid; not restarting it")
        hv.agent_command(vm, {"execute": "guest-exec", "arguments": {
            "path": "/usr/bin/setsid",
            "arg": ["-f", "/usr/local/sbin/availlab-agent-restart", *(["--writer"] if writer else [])]}})

        def replaced() -> bool:
            pid = _agent_pid(hv, vm)
            return pid is not None and pid != old

        if not wait_until(replaced, timeout_s, 0.2):
            raise VMError(f"{vm}: no new guest agent answered within {timeout_s:g} s of its restart")


def restart_database(st: LabState, vm: str) -> None:
    """Restart the database server in a lab guest, as an operator's restart would (a fast
    shutdown that ends every session, then a start): the guest's init does it on SIGHUP
    (lab/guest/init.sh). Returns once asked; the server is back a second or two later."""
    if run(st, vm, "/bin/kill", ["-HUP", "1"]) != 0:
        raise VMError(f"{vm}: the guest's init did not take the restart signal")


def run(st: LabState, vm: str, path: str, args: list[str], timeout_s: float = 15) -> int:
    """Run a short command in the guest and wait for it: its exit code."""
    h = st.hosts[running_host(st, vm)]
    with provider(st).connect(h) as hv:
        return exec_wait(hv, vm, path, args, timeout_s)[0]


def exec_wait(hv: HypervisorAPI, vm: str, path: str, args: list[str], timeout_s: float = 15) -> tuple[int, str]:
    """Run a command in the guest through its agent and wait for it: (exit code, stderr)."""
    pid = hv.agent_command(vm, {"execute": "guest-exec", "arguments": {
        "path": path, "arg": args, "capture-output": True}})["pid"]
    def exited() -> dict | None:
        status = hv.agent_command(vm, {"execute": "guest-exec-status", "arguments": {"pid": pid}})
        return status if status.get("exited") else None

    status = wait_until(exited, timeout_s, 0.02)
    if status:
        err = base64.b64decode(status.get("err-data", "")).decode(errors="replace").strip()
        return int(status.get("exitcode", -1)), err
    raise VMError(f"{vm}: {path} {' '.join(args)} did not finish in {timeout_s:g} s")
