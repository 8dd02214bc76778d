"""A watch: clients on a database VM while someone else's tool moves it (runbook 50, `availlab watch`).

availlab changes nothing here: the operator's command (`virsh migrate`, `qm migrate`,
`pwsh -c Move-VM`, a backup job) does what it does, the clients and the probe record what the
database answered, and a read-only watcher records what the hypervisor did (events/watchers.py).
The command runs as the operator would run it, in availlab's own process tree: its output goes
to `command.log` in the run folder, its start, end and exit code to events.jsonl as a window.
`availlab mark RUN TEXT` adds an operator's word to a watch that is running (a GUI click: "moved").
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..clients.sql import run_sql
from ..clients.workload import WorkloadSpec, under_load
from ..dialects import dialect
from ..errors import UsageError
from ..events.watchers import watcher_class
from ..history import JsonlWriter, clock_anchor, now_ns
from ..lab import providers
from ..progress import step
from ..records import Rec, RunFiles
from .lab_view import Lab
from .run import Run

COMMAND_LOG = "command.log"
TAIL_CHARS = 2000


@dataclass
class Watched:
    """What the watch saw, for the notebook to show before the checks judge it."""
    command: dict[str, Any] | None
    watcher: dict[str, Any] | None
    client_ops: int

    def _repr_markdown_(self) -> str:
        lines = [f"{self.client_ops} client operations recorded."]
        if self.command:
            lines.append(f"Command `{' '.join(self.command['argv'])}`: exit {self.command['exit_code']} after "
                         f"{(self.command['t1'] - self.command['t0']) / 1e9:.1f} s (output: `{self.command['output']}`).")
        if self.watcher:
            lines.append(f"Watcher {self.watcher['watcher']}: {self.watcher['events']} hypervisor event(s); "
                         f"the VM runs on {', '.join(self.watcher['where']) or 'no host it watched'}.")
        return "\n\n".join(lines)


@contextlib.contextmanager
def watching(kind: str, lab: Lab, vm: str, events: JsonlWriter) -> Iterator[dict[str, Any]]:
    """The watcher of `kind` ('' for none) running for the block; its summary in the yielded dict."""
    summary: dict[str, Any] = {}
    if not kind:
        yield summary
        return
    try:
        cls = watcher_class(kind)
    except UsageError as exc:
        raise UsageError(f"watcher: {exc}") from None
    if not lab.st.hosts:  # a database given by its connection string: no hypervisor known
        step("watch: no hypervisor host to watch; the clients' evidence only")
        yield summary
        return
    w = cls(vm, list(lab.st.hosts), providers.provider(lab.st).observe)
    w.start(events)
    try:
        yield summary
    finally:
        summary.update(w.stop())


def run_command(argv: list[str], run_dir: Path, events: JsonlWriter, cwd: str = "") -> dict[str, Any]:
    """The operator's command, to its end: a window in events.jsonl with its exit code and the
    tail of its output (all of it in command.log). Interrupted, it is ended by its PID and the
    window still recorded, so a cut-short watch says what the command was doing."""
    log = run_dir / COMMAND_LOG
    t0 = now_ns()
    events.write({"type": Rec.COMMAND_START, "t": t0, "argv": argv})
    step(f"command: {' '.join(argv)}")
    code: int | None = None
    try:
        with log.open("wb") as out:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        cwd=cwd or None)
            except OSError as exc:
                out.write(f"availlab: could not start the command: {exc}\n".encode())
                code = 127
            else:
                try:
                    code = proc.wait()
                finally:
                    if proc.poll() is None:  # interrupted: ours, by its handle
                        proc.terminate()
                        try:
                            proc.wait(10)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                            proc.wait()
                        code = proc.returncode
    finally:
        t1 = now_ns()
        tail = _tail(log)
        rec = {"type": Rec.COMMAND, "t": t1, "t0": t0, "t1": t1, "argv": argv, "exit_code": code,
               "output": str(log), "tail": tail}
        events.write(rec)
    step(f"command: exit {code} after {(t1 - t0) / 1e9:.1f} s")
    return rec


def _tail(log: Path) -> str:
    """The end of the command's output (a chatty mover may write megabytes: only the end is read)."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - TAIL_CHARS))
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def watch_under_load(run: Run, lab: Lab, vm: str, spec: WorkloadSpec, *, duration_s: float = 0.0,
                     command: list[str] | None = None, watcher: str = "libvirt", warmup_s: float = 3.0,
                     cooldown_s: float = 3.0, command_cwd: str = "", drop_table: bool = False) -> Watched:
    """Clients on `vm` for at least `duration_s`, and until the operator's `command` (if any),
    started once they are warm, has ended; then the cool-down and the final read. `drop_table`:
    then the workload's table goes too (a database that is not a lab's keeps nothing of ours)."""
    if not command and duration_s <= 0:
        raise UsageError("watch: give a duration (--for) or a command to watch (after --)")
    if lab.st.hosts and providers.locate_vm(lab.st, vm) is None:
        raise UsageError(f"vm: {vm!r} does not run in lab {lab.name!r}; a watch observes a running VM, it "
                         "starts none")
    with JsonlWriter(run.history_path) as hist, JsonlWriter(run.events_path) as ev:
        hist.write(clock_anchor())
        ran: dict[str, Any] | None = None
        with watching(watcher, lab, vm, ev) as seen, \
                under_load(lab.st, vm, spec, hist, warmup_s=warmup_s, cooldown_s=cooldown_s):
            until = time.monotonic() + duration_s
            if command:
                ran = run_command(command, run.directory, ev, command_cwd)
            time.sleep(max(0.0, until - time.monotonic()))
        n = hist.count
    if drop_table:  # after the evidence is saved: the final read came first
        run_sql(lab.st, vm, dialect(lab.st.vms[vm].database).drop())
        step(f"watch: dropped availlab's table from {vm} (--keep keeps it)")
    return Watched(ran, seen or None, n)


def mark(run_dir: str | Path, text: str) -> dict[str, Any]:
    """An operator's mark in a watch that is running: a timestamped `mark` event in its folder."""
    files = RunFiles(Path(run_dir))
    if not text.strip():
        raise UsageError("mark: say what happened (the text is empty)")
    if not files.events.is_file():
        raise UsageError(f"run {run_dir}: no events.jsonl there; give the folder `availlab watch` printed")
    if (files.directory / "results.json").exists():
        raise UsageError(f"run {run_dir}: already judged; a mark now would not be in its report")
    rec = {"type": Rec.MARK, "t": now_ns(), "wall": time.time(), "text": text.strip()}
    with JsonlWriter(files.events) as ev:
        ev.write(rec)
    return rec
