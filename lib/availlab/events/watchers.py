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
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ..errors import AvailLabError, UsageError
from ..history import JsonlWriter, RecordSink, now_ns
from ..lab.hypervisor import SHUT_OFF, HypervisorAPI
from ..records import Rec


class Watcher(Protocol):
    kind: ClassVar[str]

    def start(self, events: JsonlWriter) -> None: ...

    def stop(self) -> dict[str, Any]: ...


WATCHERS: dict[str, type] = {}
JOB_STATS_WAIT_S = 3.0  # a migration's completed statistics appear on its target soon after it resumes


def registered(cls: type) -> type:
    WATCHERS[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def watcher_class(kind: str) -> type:
    """The watcher registered as `kind`; an unknown one named with the known ones."""
    if kind not in WATCHERS:
        raise UsageError(f"unknown {kind!r} (known: {', '.join(WATCHERS)}, or '' for none)")
    return WATCHERS[kind]


@registered
@dataclass
class LibvirtWatcher:
    """Every host's lifecycle events for the VM, over read-only connections: where it ran, when
    it was suspended and resumed (a migration's pause, a backup's freeze does not pause), started
    or stopped. `connect(host)` gives a read-only connection (Provider.observe)."""

    kind: ClassVar[str] = "libvirt"
    vm: str
    hosts: list[str]
    connect: Callable[[str], HypervisorAPI]
    _events: RecordSink | None = None
    _conns: list[tuple[HypervisorAPI, list[int]]] = field(default_factory=list)
    _arrived: queue.Queue[str | None] = field(default_factory=queue.Queue)  # hosts a migration ended on
    _reader: threading.Thread | None = None
    seen: int = 0

    def where(self) -> dict[str, str]:
        """host -> the VM's state there, for every host that has it defined and active."""
        out = {}
        for hv, _ in self._conns:
            with contextlib.suppress(AvailLabError):
                for d in hv.domains():
                    if d.name == self.vm and d.state != SHUT_OFF:
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
        self._reader = threading.Thread(target=self._read_jobs, name="watch-jobs", daemon=True)
        self._reader.start()

    def _read_jobs(self) -> None:
        """libvirt's own figures of each migration it saw end (downtime, total time, memory sent),
        from the target's completed job statistics: read here, never inside an event callback,
        which runs on libvirt's event loop."""
        conns = {hv.name: hv for hv, _ in self._conns}
        while (host := self._arrived.get()) is not None:
            stats: dict[str, Any] = {}
            deadline = time.monotonic() + JOB_STATS_WAIT_S
            while "downtime" not in stats and time.monotonic() < deadline:
                with contextlib.suppress(AvailLabError):
                    stats = conns[host].job_stats(self.vm, completed=True)
                if "downtime" not in stats:
                    time.sleep(0.1)
            if self._events is not None:
                self._events.write({"type": Rec.WATCH_EVENT, "t": now_ns(), "watcher": self.kind, "vm": self.vm,
                                    "host": host, "event": "migration-completed", "detail": "job statistics",
                                    "downtime_ms": stats.get("downtime"), "total_ms": stats.get("time_elapsed"),
                                    "memory_mib": round(stats["memory_processed"] / 2**20, 1)
                                    if "memory_processed" in stats else None})

    def _on(self, host: str):
        def seen(kind: str, detail: Any, t: int) -> None:
            if kind != "lifecycle" or self._events is None:
                return
            said = tuple(detail)  # (event, reason), named by the hypervisor: ("resumed", "migrated")
            self.seen += 1
            self._events.write({"type": Rec.WATCH_EVENT, "t": t, "watcher": self.kind, "vm": self.vm, "host": host,
                                "event": said[0], "detail": said[1]})
            if said == ("resumed", "migrated"):  # arrived here: its job statistics, read off this thread
                self._arrived.put(host)
        return seen

    def _close(self) -> None:
        for hv, handles in self._conns:
            hv.remove_callbacks(handles)
            hv.close()
        self._conns = []

    def stop(self) -> dict[str, Any]:
        if self._reader is not None:  # the statistics of a migration that just ended, first
            self._arrived.put(None)
            self._reader.join(JOB_STATS_WAIT_S + 5)
        summary = {"watcher": self.kind, "vm": self.vm, "events": self.seen, "where": self.where()}
        self._close()
        if self._events is not None:
            self._events.write({"type": Rec.WATCH_STOP, "t": now_ns(), **summary})
        return summary
