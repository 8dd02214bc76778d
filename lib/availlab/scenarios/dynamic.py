"""Dynamic resource management: the monitor feeds the tip engine; tips are shown, and applied
automatically or on approval (PRO Tips in VMM), while clients run.

The controller runs in its own thread: sample -> record (events.jsonl) -> tips -> in automatic
mode live-migrate at once, in manual mode wait for `apply(tip id)` (a runbook cell, or
`availlab tips apply ID`, which reads the lab's tips file).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..errors import AvailLabError, StateError, UsageError
from ..events.dirtier import NoisyNeighbour
from ..events.migration import MigrationTuning, live_migrate
from ..events.nemesis import Nemeses, Nemesis, Stage
from ..history import JsonlWriter, now_ns
from ..lab import state
from ..lab.monitor import Monitor
from ..lab.state import LabState, lab_root
from ..progress import step
from ..records import Rec
from ..waiting import wait_until
from .lab_view import Lab
from .tips import Engine, Policy, Rule, Tip


def tips_file(lab: str) -> Path:
    """Where a lab's tips persist, so `availlab tips apply` in another process sees them."""
    return lab_root(lab) / "tips.json"


def read_tips(lab: str) -> list[dict]:
    """The saved tips ([] before the first); a file that is not a list of tips is refused, named."""
    path = tips_file(lab)
    try:
        tips = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise StateError(f"{path}: not JSON ({exc}); remove it to start the tips afresh") from None
    keys = {"id", "action", "vm", "target", "applied", "reason"}
    if not isinstance(tips, list) or not all(isinstance(t, dict) and keys <= set(t) for t in tips):
        raise StateError(f"{path}: not a list of tips (each with {', '.join(sorted(keys))}); "
                         "remove it to start the tips afresh")
    return tips


class Controller:
    """Sample, raise tips and (in automatic mode) act on them, in a thread beside the workload."""
    def __init__(self, st: LabState, rules: list[Rule], pol: Policy, events: JsonlWriter,
                 interval_s: float = 1.0, tuning: MigrationTuning | None = None):
        if not 0.2 <= interval_s <= 60:
            raise UsageError(f"interval_s: must be 0.2..60 (got {interval_s})")
        self.st, self.events, self.interval_s = st, events, interval_s
        self.engine = Engine(rules, pol)
        self.policy = pol
        self.tuning = tuning or MigrationTuning()
        self.template_prefix = "sqlx"  # names of VMs started by start-vm tips
        self.monitor = Monitor(st)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="tips-controller", daemon=True)

    def start(self) -> Controller:
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
        """Write the tips, keeping what `availlab tips apply` in another process recorded
        meanwhile: a tip applied there stays applied (and is marked so here), never applied twice."""
        with state.locked(self.st.lab):
            try:
                on_disk = {t["id"]: t for t in json.loads(tips_file(self.st.lab).read_text())}
            except (OSError, ValueError, TypeError, KeyError):
                on_disk = {}
            for tip in self.engine.tips:
                saved = on_disk.get(tip.id)  # the same tip: ids restart with each run, times do not
                if saved and saved.get("time") == tip.time and saved.get("applied") and not tip.applied:
                    tip.applied, tip.applied_at, tip.detail = True, saved.get("applied_at"), saved.get("detail") or {}
            paths.write_atomic(tips_file(self.st.lab), json.dumps([t.to_dict() for t in self.engine.tips], indent=1))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                s = self.monitor.sample()
            except AvailLabError as exc:
                self.events.write({"type": Rec.MONITOR_ERROR, "t": now_ns(), "error": str(exc)})
                continue
            if s is None:
                continue
            self.events.write(s)
            with self._lock:
                new = self.engine.feed(s)
                for tip in new:
                    self.events.write({"type": Rec.TIP, "t": tip.time, **tip.to_dict()})
                    step(f"PRO tip {tip.id}: {tip.reason}")
                if new:
                    self._save()
            if self.policy.mode == "automatic":
                for tip in new:
                    if tip.action in ("migrate", "start-vm"):
                        self._apply(tip)

    def _apply(self, tip: Tip) -> Tip:
        if tip.action == "start-vm":
            ok, detail = self._start_vm(tip)
        elif tip.vm is None or tip.target is None:  # the engine names both for a move; said if not
            ok, detail = False, {"error": f"tip #{tip.id} moves no VM or names no target"}
        else:
            rec = live_migrate(self.st, tip.vm, tip.target, self.tuning, self.events)
            ok, detail = rec.ok, {"migration_ok": rec.ok, "downtime_ms": rec.downtime_ms, "error": rec.error}
            if rec.ok:
                self.engine.note_moved(tip.vm, rec.t1)
        with self._lock:
            tip.applied, tip.applied_at, tip.detail = ok, now_ns(), detail
            self.events.write({"type": Rec.TIP_APPLIED, "t": tip.applied_at, "tip": tip.id, "ok": ok})
            self._save()
        return tip

    def _start_vm(self, tip: Tip) -> tuple[bool, dict]:
        """Start another database VM from the template (the lab's guest image) on the target."""
        from ..vm import create as vms

        if tip.target is None:
            return False, {"error": f"tip #{tip.id} names no host to start a VM on"}
        existing = set(state.require_up(self.st.lab).vms)
        name = next(f"{self.template_prefix}{i}" for i in range(1, 1000)
                    if f"{self.template_prefix}{i}" not in existing)
        try:
            ready = vms.create(self.st.lab, name, tip.target)
        except AvailLabError as exc:
            return False, {"error": str(exc)}
        self.st = state.require_up(self.st.lab)
        self.events.write({"type": Rec.VM_STARTED, "t": now_ns(), "vm": name, "host": tip.target,
                           "boot_to_db_s": ready.boot_to_db_s})
        return True, {"vm": name, "boot_to_db_s": ready.boot_to_db_s}

    def apply(self, tip_id: int) -> Tip:
        """Approve a tip (manual mode): carry out its migration now."""
        with self._lock:  # what another process applied meanwhile counts (lock order: ours, then the lab's)
            self._save()
        tip = next((t for t in self.tips if t.id == tip_id), None)
        if tip is None:
            raise UsageError(f"tip: no tip {tip_id} (tips: {[t.id for t in self.tips]})")
        if tip.action not in ("migrate", "start-vm") or tip.applied:
            raise UsageError(f"tip {tip_id}: nothing to apply ({tip.action}, applied={tip.applied})")
        self.events.write({"type": Rec.TIP_APPROVED, "t": now_ns(), "tip": tip_id})
        return self._apply(tip)


def apply_saved_tip(lab: str, tip_id: int) -> dict:
    """`availlab tips apply ID` from another process: migrate as the saved tip says. Under the
    lab's lock from read to write, so two approvals of one tip migrate once."""
    with state.locked(lab):
        st = state.require_up(lab)
        tips = read_tips(lab)
        if not tips:
            raise UsageError(f"tip: lab {lab!r} has no tips yet")
        tip = next((t for t in tips if t["id"] == tip_id), None)
        if tip is None or tip["action"] != "migrate" or tip["applied"]:
            raise UsageError(f"tip: no pending migrate tip {tip_id}")
        rec = live_migrate(st, tip["vm"], tip["target"])
        tip.update(applied=rec.ok, applied_at=now_ns(), detail={"migration_ok": rec.ok, "error": rec.error})
        paths.write_atomic(tips_file(lab), json.dumps(tips, indent=1))
    return tip


class Watching(Nemesis[Stage]):
    """The controller as a nemesis: it watches, and in automatic mode moves, from setup to teardown."""

    def __init__(self, controller: Controller):
        self.controller = controller

    def setup(self, stage: Stage) -> None:
        self.controller.start()

    def teardown(self, stage: Stage) -> None:
        self.controller.stop()


@dataclass
class Overload:
    """A running overload scenario: workload, controller, noisy neighbour. finish() stops all.
    It spans notebook cells, so its frame (files, clients under load, the nemeses) is an ExitStack
    that finish() closes, not a with-block; closing it stops the neighbour, then the controller,
    then the clients (and their final read), then the files."""

    st: LabState
    controller: Controller
    frame: contextlib.ExitStack
    finished: bool = False

    def wait_for_tip(self, timeout_s: float) -> list[Tip]:
        """Until a migrate tip fired (and, in automatic mode, was applied), or timeout."""
        auto = self.controller.policy.mode == "automatic"

        def handled() -> list[Tip] | None:
            tips = self.controller.tips
            return tips if any(t.action in ("migrate", "none") and (t.applied or not auto or t.action == "none")
                               for t in tips) else None

        return wait_until(handled, timeout_s, 0.2) or self.controller.tips

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.frame.close()


def register_cleanup(o: Overload) -> None:
    """A notebook that fails between cells must not leave clients or a burning CPU behind."""
    def finish() -> None:
        if not o.finished:
            o.finish()

    atexit.register(finish)


# --- the scenario and its checks -----------------------------------------------------------------

def start_overload(run, lab: Lab, vm: str, hog: str, host: str, spec, rules: list[Rule], pol: Policy,
                   interval_s: float = 1.0, baseline_s: float = 8.0) -> Overload:
    """SQL VM and a CPU-hog VM on `host`, clients running, the controller watching; after
    `baseline_s` the hog starts burning a CPU."""
    from ..clients.workload import under_load
    from ..history import clock_anchor
    from ..lab.providers import locate_vm

    st = lab.st
    neighbour = NoisyNeighbour(hog)
    neighbour.require(Stage(st=st, vm=vm))  # before any move or client
    for name in (vm, hog):
        where = locate_vm(st, name)
        if where and where[0] != host:
            live_migrate(st, name, host)  # set the scene: both on the host that will overload
    frame = contextlib.ExitStack()
    try:
        hist = frame.enter_context(JsonlWriter(run.history_path))
        ev = frame.enter_context(JsonlWriter(run.events_path))
        hist.write(clock_anchor())
        ctl = Controller(st, rules, pol, ev, interval_s)
        o = Overload(st, ctl, frame)
        register_cleanup(o)
        nemeses = Nemeses(Stage(st=st, vm=vm, events=ev), [Watching(ctl), neighbour])
        frame.enter_context(under_load(st, vm, spec, hist, warmup_s=2.0, nemeses=nemeses))
        time.sleep(max(0.0, baseline_s - 2.0))
        nemeses.invoke()  # the neighbour starts burning
    except BaseException:
        frame.close()
        raise
    return o


def finish_overload(o: Overload, after_s: float) -> str:
    """Let the load run `after_s` more, then stop the hog, the controller and the clients."""
    time.sleep(after_s)
    o.finish()
    applied = [t for t in o.controller.tips if t.applied]
    return (f"overload ended; {len(o.controller.tips)} tip(s), {len(applied)} applied: "
            + "; ".join(f"#{t.id} {t.action} {t.vm} -> {t.target}" for t in o.controller.tips))


def approve_first(o: Overload, approve: bool) -> str:
    """Manual mode: the operator's approval of the first migrate tip (a runbook parameter)."""
    if o.controller.policy.mode == "automatic":
        return "automatic mode: tips were applied as they fired"
    pending = [t for t in o.controller.tips if t.action == "migrate" and not t.applied]
    if not pending:
        return "manual mode: no pending migrate tip"
    if not approve:
        return f"manual mode: tip {pending[0].id} recorded and NOT approved: nothing moves"
    t = o.controller.apply(pending[0].id)
    return f"manual mode: tip {t.id} approved: {t.vm} -> {t.target} ({'done' if t.applied else 'FAILED'})"
