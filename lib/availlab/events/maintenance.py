"""What maintenance of an emptied host does: the seed's "perform whatever maintenance the host
requires", really done, never a sleep.

An action runs only on a host that the rollout proved empty (scenarios/rolling.py), and says
what proves it happened: `restart-daemon` stops the host's libvirtd by its PID, waits until the
process is gone, starts it again, and reads the host's capabilities through the new daemon (the
host answers as a hypervisor again, with its UUID); `restart-host` restarts the whole host as a
reboot would (every process of it ended, its namespace and daemon made again: lab/reboot.py),
proven by the new namespace, the new PID and the same host UUID; `none` does nothing and says so
(a drain and resume only, the one choice on a cluster availlab does not run). An action is a
class with `name` and `perform(st, host) -> details`, registered in ACTIONS.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Protocol

from ..errors import LabError, UsageError
from ..lab import hostd, local, reboot
from ..lab.providers import provider
from ..lab.state import LabState
from ..progress import step


class Action(Protocol):
    name: ClassVar[str]
    local_only: ClassVar[bool]

    def perform(self, st: LabState, host: str) -> dict[str, Any]: ...


ACTIONS: dict[str, type[Action]] = {}


def registered(cls: type[Action]) -> type[Action]:
    ACTIONS[cls.name] = cls
    return cls


def action(name: str, st: LabState) -> Action:
    """The action called `name`, refused where the lab cannot do it (a real cluster's daemons are
    not availlab's to restart)."""
    if name not in ACTIONS:
        raise UsageError(f"action: unknown {name!r} (known: {', '.join(ACTIONS)})")
    chosen = ACTIONS[name]()
    if chosen.local_only:
        provider(st).require("host_maintenance", what=name)
    return chosen


@registered
class Nothing:
    """Drain and resume only: what a rollout can do on a cluster that is not availlab's."""
    name: ClassVar[str] = "none"
    local_only: ClassVar[bool] = False

    def perform(self, st: LabState, host: str) -> dict[str, Any]:
        return {"done": "nothing (action none)"}


@registered
class RestartDaemon:
    """The host's libvirtd stopped and started again: its hypervisor service restarted, as a
    patch of it would need. Proven by a new PID and by the capabilities the new daemon answers."""
    name: ClassVar[str] = "restart-daemon"
    local_only: ClassVar[bool] = True

    def perform(self, st: LabState, host: str) -> dict[str, Any]:
        daemon = local.host_daemon(st.hosts[host])
        old = daemon.pid()
        if old is None:
            raise LabError(f"host {host}: its libvirtd is not running; nothing to restart")
        t0 = time.monotonic()
        hostd.stop_pid(old, f"libvirtd of {host}")  # ours: the PID its pidfile names, checked as libvirtd
        local.restart_daemons(st)
        new = daemon.pid()
        if new is None or new == old:
            raise LabError(f"host {host}: libvirtd did not come back after its restart (pid {old} -> {new})")
        with provider(st).connect(st.hosts[host]) as hv:  # the host answers as a hypervisor again
            uuid, versions = hv.host_uuid(), hv.versions()
        took = round(time.monotonic() - t0, 2)
        step(f"host {host}: libvirtd restarted (pid {old} -> {new}) in {took:g} s; it answers (host uuid {uuid})")
        return {"done": "libvirtd restarted", "old_pid": old, "new_pid": new, "host_uuid": uuid,
                "libvirt_version": versions.get("libvirt"), "restart_s": took}


@registered
class RestartHost:
    """The whole host restarted, as a reboot for a kernel or firmware patch: every process of it
    ended, its network namespace and daemon made again (lab/reboot.py); it comes back with its
    own host UUID, or the action fails."""
    name: ClassVar[str] = "restart-host"
    local_only: ClassVar[bool] = True

    def perform(self, st: LabState, host: str) -> dict[str, Any]:
        return reboot.restart_host(st, host)
