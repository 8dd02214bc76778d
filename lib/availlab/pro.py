"""Dynamic resource management: the monitor feeds the tip engine; tips are shown, and applied
automatically or on approval (PRO Tips in VMM), while clients run.

The controller runs in its own thread: sample -> record (events.jsonl) -> tips -> in automatic
mode live-migrate at once, in manual mode wait for `apply(tip id)` (a runbook cell, or
`availlab tips apply ID`, which reads the lab's tips file).
"""

from __future__ import annotations

import atexit
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import state
from .errors import AvailLabError, UsageError
from .events.migration import MigrationTuning, live_migrate
from .history import JsonlWriter, now_ns
from .monitor import Monitor
from .progress import step
from .state import LabState, lab_root
from .tips import Engine, Policy, Rule, Tip


def tips_file(lab: str) -> Path:
    return lab_root(lab) / "tips.json"


class Controller:
    def __init__(self, st: LabState, rules: list[Rule], pol: Policy, events: JsonlWriter,
                 interval_s: float = 1.0, tuning: MigrationTuning | None = None):
        if not 0.2 <= interval_s <= 60:
            raise UsageError(f"interval_s: must be 0.2..60 (got {interval_s})")
        self.st, self.events, self.interval_s = st, events, interval_s
        self.engine = Engine(rules, pol)
        self.policy = pol
        self.tuning = tuning or MigrationTuning()
        self.monitor = Monitor(st)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="pro-controller", daemon=True)

    def start(self) -> "Controller":
        self.monitor.prime()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.monitor.close()

    @property
    def tips(self) -> list[Tip]:
        with self._lock:
            return list(self.engine.tips)

    def _save(self) -> None:
        tips_file(self.st.lab).write_text(json.dumps([t.to_dict() for t in self.engine.tips], indent=1))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                s = self.monitor.sample()
            except AvailLabError as exc:
                self.events.write({"type": "monitor-error", "t": now_ns(), "error": str(exc)})
                continue
            if s is None:
                continue
            self.events.write(s)
            with self._lock:
                new = self.engine.feed(s)
                for tip in new:
                    self.events.write({"type": "tip", "t": tip.time, **tip.to_dict()})
                    step(f"PRO tip {tip.id}: {tip.reason}")
                if new:
                    self._save()
            if self.policy.mode == "automatic":
                for tip in new:
                    if tip.action == "migrate":
                        self._apply(tip)

    def _apply(self, tip: Tip) -> Tip:
        rec = live_migrate(self.st, tip.vm, tip.target, self.tuning, self.events)
        with self._lock:
            tip.applied, tip.applied_at = rec.ok, now_ns()
            tip.detail = {"migration_ok": rec.ok, "downtime_ms": rec.downtime_ms, "error": rec.error}
            if rec.ok:
                self.engine.note_moved(tip.vm, rec.t1)
            self.events.write({"type": "tip-applied", "t": tip.applied_at, "tip": tip.id, "ok": rec.ok})
            self._save()
        return tip

    def apply(self, tip_id: int) -> Tip:
        """Approve a tip (manual mode): carry out its migration now."""
        tip = next((t for t in self.tips if t.id == tip_id), None)
        if tip is None:
            raise UsageError(f"tip: no tip {tip_id} (tips: {[t.id for t in self.tips]})")
        if tip.action != "migrate" or tip.applied:
            raise UsageError(f"tip {tip_id}: nothing to apply ({tip.action}, applied={tip.applied})")
        self.events.write({"type": "tip-approved", "t": now_ns(), "tip": tip_id})
        return self._apply(tip)


def apply_saved_tip(lab: str, tip_id: int) -> dict:
    """`availlab tips apply ID` from another process: migrate as the saved tip says."""
    st = state.require_up(lab)
    try:
        tips = json.loads(tips_file(lab).read_text())
    except FileNotFoundError:
        raise UsageError(f"tip: lab {lab!r} has no tips yet") from None
    tip = next((t for t in tips if t["id"] == tip_id), None)
    if tip is None or tip["action"] != "migrate" or tip["applied"]:
        raise UsageError(f"tip: no pending migrate tip {tip_id}")
    rec = live_migrate(st, tip["vm"], tip["target"])
    tip.update(applied=rec.ok, applied_at=now_ns(), detail={"migration_ok": rec.ok, "error": rec.error})
    tips_file(lab).write_text(json.dumps(tips, indent=1))
    return tip


HOG_SCRIPT = "1 while 1"  # one busy vCPU: a noisy neighbour


@dataclass
class Overload:
    """A running overload scenario: workload, controller, noisy neighbour. finish() stops all."""

    st: LabState
    controller: Controller
    workload: object
    hog_vm: str
    hog_pid: int | None
    t_hog: int | None = None
    finished: bool = False

    def start_hog(self) -> None:
        from .lab import locate_vm

        where = locate_vm(self.st, self.hog_vm)
        h = self.st.hosts[where[0]]
        from .virt import Hypervisor

        with Hypervisor(h.name, h.uri) as hv:
            ret = hv.agent_command(self.hog_vm, {"execute": "guest-exec", "arguments": {
                "path": "/usr/bin/perl", "arg": ["-e", HOG_SCRIPT]}})
        self.hog_pid = int(ret["pid"])
        self.t_hog = now_ns()
        self.controller.events.write({"type": "overload-start", "t": self.t_hog, "vm": self.hog_vm})
        step(f"noisy neighbour: {self.hog_vm} burns a CPU (guest pid {self.hog_pid})")

    def stop_hog(self) -> None:
        if self.hog_pid is None:
            return
        from .lab import locate_vm
        from .virt import Hypervisor

        where = locate_vm(self.st, self.hog_vm)
        if where:
            h = self.st.hosts[where[0]]
            with Hypervisor(h.name, h.uri) as hv:
                hv.agent_command(self.hog_vm, {"execute": "guest-exec", "arguments": {
                    "path": "/bin/kill", "arg": [str(self.hog_pid)]}})
        self.controller.events.write({"type": "overload-stop", "t": now_ns(), "vm": self.hog_vm})
        self.hog_pid = None

    def wait_for_tip(self, timeout_s: float) -> list[Tip]:
        """Until a migrate tip fired (and, in automatic mode, was applied), or timeout."""
        deadline = time.monotonic() + timeout_s
        auto = self.controller.policy.mode == "automatic"
        while time.monotonic() < deadline:
            tips = self.controller.tips
            if any(t.action in ("migrate", "none") and (t.applied or not auto or t.action == "none")
                   for t in tips):
                return tips
            time.sleep(0.2)
        return self.controller.tips

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        try:
            self.stop_hog()
        finally:
            try:
                self.controller.stop()
            finally:
                self.workload.stop()
                self.workload.final_read()


def register_cleanup(o: Overload) -> None:
    """A notebook that fails between cells must not leave clients or a burning CPU behind."""
    atexit.register(lambda: o.finished or o.finish())
