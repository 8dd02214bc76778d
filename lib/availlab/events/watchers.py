"""Read-only watchers: what the hypervisor did to the VM while someone else's tool moved it.

A watch (scenarios/observe.py) judges a migration or a backup availlab did not start: `virsh`,
Proxmox, OpenStack, Hyper-V. The clients' evidence does not depend on the hypervisor; a watcher
adds the hypervisor's side, so the report can set the pause the hypervisor made beside the
blackout the clients saw. A watcher never changes anything: the libvirt one holds only libvirt's
own read-only connections (virConnectOpenReadOnly), which the daemon enforces (a test asks one for
a change and is refused).

The protocol is three calls: `start(events)` (connect, record where the VM is), `stop()` (record
where it is now, disconnect, return a summary) and, in between, the watcher writes
`watch-event` records itself as things happen (libvirt pushes lifecycle events; a watcher of a
polled API, Proxmox's tasks or OpenStack's server migrations, polls in its own thread). A new
watcher is one class with `kind` and `@registered`; `records.paused_windows` turns any
watcher's suspended/resumed events into windows the checks set the clients' gaps against.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import libvirt

from ..errors import AvailLabError, UsageError
from ..history import JsonlWriter, now_ns
from ..lab.virt import Hypervisor
from ..records import Rec


class Watcher(Protocol):
    kind: ClassVar[str]

    def start(self, events: JsonlWriter) -> None: ...

    def stop(self) -> dict[str, Any]: ...


WATCHERS: dict[str, type] = {}


def registered(cls: type) -> type:
    WATCHERS[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def _names(prefix: str) -> dict[int, str]:
    return {getattr(libvirt, n): n[len(prefix):].lower() for n in dir(libvirt)
            if n.startswith(prefix) and n[len(prefix):].isupper() and "_" not in n[len(prefix):]}


# libvirt's lifecycle events and their details, by libvirt's own names (suspended/migrated, …)
EVENTS = _names("VIR_DOMAIN_EVENT_")
DETAILS = {ev: {getattr(libvirt, n): n[len(f"VIR_DOMAIN_EVENT_{name.upper()}_"):].lower()
                for n in dir(libvirt) if n.startswith(f"VIR_DOMAIN_EVENT_{name.upper()}_")}
           for ev, name in EVENTS.items()}


@registered
@dataclass
class LibvirtWatcher:
    """Every host's lifecycle events for the VM, over read-only connections: where it ran, when
    it was suspended and resumed (a migration's pause, a backup's freeze does not pause), started
    or stopped. `connect(host)` gives a read-only connection (Provider.observe)."""

    kind: ClassVar[str] = "libvirt"
    vm: str
    hosts: list[str]
    connect: Callable[[str], Hypervisor]
    _events: JsonlWriter | None = None
    _conns: list[tuple[Hypervisor, list[int]]] = field(default_factory=list)
    seen: int = 0

    def where(self) -> dict[str, str]:
        """host -> the VM's state there, for every host that has it defined and active."""
        out = {}
        for hv, _ in self._conns:
            with contextlib.suppress(AvailLabError):
                for d in hv.domains():
                    if d.name == self.vm and d.state != "shut off":
                        out[hv.name] = d.state
        return out

    def start(self, events: JsonlWriter) -> None:
        if not self.hosts:
            raise UsageError("watch: no hypervisor host to watch")
        self._events = events
        try:
            for name in self.hosts:
                hv = self.connect(name)
                self._conns.append((hv, []))
                if not hv.read_only:  # an observer that could change what it observes is refused
                    raise UsageError(f"watch: the connection to {name} is not read-only")
                self._conns[-1] = (hv, hv.on_domain_events(self.vm, self._on(name)))
        except BaseException:  # a host that did not answer: the others' connections are closed too
            self._close()
            raise
        events.write({"type": Rec.WATCH_START, "t": now_ns(), "watcher": self.kind, "vm": self.vm,
                      "hosts": sorted(self.hosts), "read_only": True, "where": self.where()})

    def _on(self, host: str):
        def seen(kind: str, detail: Any, t: int) -> None:
            if kind != "lifecycle" or self._events is None:
                return
            event, why = detail
            self.seen += 1
            self._events.write({"type": Rec.WATCH_EVENT, "t": t, "watcher": self.kind, "vm": self.vm, "host": host,
                                "event": EVENTS.get(event, str(event)),
                                "detail": DETAILS.get(event, {}).get(why, str(why))})
        return seen

    def _close(self) -> None:
        for hv, handles in self._conns:
            hv.remove_callbacks(handles)
            hv.close()
        self._conns = []

    def stop(self) -> dict[str, Any]:
        summary = {"watcher": self.kind, "vm": self.vm, "events": self.seen, "where": self.where()}
        self._close()
        if self._events is not None:
            self._events.write({"type": Rec.WATCH_STOP, "t": now_ns(), **summary})
        return summary
