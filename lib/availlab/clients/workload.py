"""Start, record and stop the workload clients (availlab.clients.worker) in the client namespace.

Each client is its own process with its own connection; a reader thread per client stores its
lines in history.jsonl as they arrive (one writer, flushed per line). After the run a final read
lists every key the run's writes left in the table: the lost-writes checker compares it with the
writes that were acknowledged.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

from ..dialects import dialect
from ..errors import AvailLabError, UsageError
from ..history import JsonlWriter, now_ns
from ..lab.provenance import lab_environment
from ..lab.providers import guest_boot_id, guest_console, kernel_crash_lines
from ..lab.state import LabState
from ..progress import step
from ..records import Rec, RunFiles
from ..validation import build
from .sql import client_command, dsn_for, run_sql, worker_request

CALIBRATE_S = 2.0  # the probe runs fast this long at the end of the warm-up
READY_TIMEOUT_S = 60.0  # for every client's first success: its connect retries, a cold server


class WorkloadSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    clients: int = Field(4, ge=1, le=64)
    read_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of single-row reads")
    rate: float = Field(0.0, ge=0.0, le=10000, description="ops/s per client; 0 = flat out")
    connect_retry_count: int = Field(3, ge=0, le=100)
    connect_retry_interval_s: float = Field(1.0, ge=0.0, le=60)
    # off for the library's own users (benches, scenarios built by hand); runbooks 10 and 20 set 5
    probe_interval_ms: float = Field(0.0, ge=0.0, le=1000,
                                     description="the blackout probe's period in events (0: no probe)")
    probe_idle_interval_ms: float = Field(100.0, ge=1.0, le=10_000,
                                          description="its period between events (it costs the workload)")
    read_only: bool = Field(False, description="no table, no writes: every operation is the profile's cheapest "
                                               "read (for a database user without write rights)")


def workload_spec(**kw: object) -> WorkloadSpec:
    return build(WorkloadSpec, kw, "workload parameters")


class Workload:
    def __init__(self, st: LabState, vm: str, spec: WorkloadSpec, history: JsonlWriter,
                 run_id: str | None = None):
        self.st, self.vm, self.spec, self.history = st, vm, spec, history
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._dsn = dsn_for(st, vm)
        self.dialect = dialect(self._dsn.dialect)
        self._procs: list[subprocess.Popen] = []
        self._readers: list[threading.Thread] = []
        self._errors: list[str] = []
        self._probe: subprocess.Popen | None = None
        self._succeeded: set[int] = set()  # clients that completed an operation
        self._all_succeeded = threading.Event()
        self._console_at = 0  # the guest console's length when the run began: only later lines are its

    def prepare(self) -> None:
        for statement in self.dialect.prepare():
            run_sql(self.st, self.vm, statement)

    def identify(self, when: str) -> None:
        """Which server answers (address, version, its own instance id, when it started), recorded
        before the load and after it: checks.client.server tells a replica or a restart by it."""
        asked = time.time()
        rows = run_sql(self.st, self.vm, self.dialect.identity, timeout_s=60)
        server, version, instance, started = rows[0][:4]
        clock = rows[0][4] if len(rows[0]) > 4 else None  # the server's now: how far its clock is off
        offset = None if clock is None else round(float(clock) - (asked + time.time()) / 2, 3)
        self.history.write({"type": Rec.SERVER_IDENTITY, "t": now_ns(), "when": when, "vm": self.vm,
                            "database": self.dialect.name, "server": str(server), "version": str(version),
                            "instance": None if instance is None else str(instance),
                            "started_at": None if started is None else float(started), "clock_offset_s": offset,
                            "boot_id": guest_boot_id(self.st, self.vm), "kernel_crash": self._kernel_crash(when)})

    def _kernel_crash(self, when: str) -> list[str] | None:
        """What the guest kernel printed of a failure on its console since the run began (a panic
        names its cause there, which a changed boot id cannot); None where the lab keeps no console."""
        console = guest_console(self.st, self.vm)
        if console is None:
            return None
        try:
            with console.open("rb") as f:
                if when == "before":
                    self._console_at = f.seek(0, 2)
                    return []
                f.seek(self._console_at)
                return kernel_crash_lines(f.read().decode(errors="replace"))
        except FileNotFoundError:
            return []
        except OSError:
            return None

    def start(self) -> Workload:
        if not self.spec.read_only:  # a read-only user may create nothing
            self.prepare()
        cmd = client_command(self.st, sys.executable, "-m", "availlab.clients.worker")
        self.history.write({"type": Rec.WORKLOAD_START, "t": now_ns(), "run_id": self.run_id,
                            "vm": self.vm, "database": self.dialect.name, "spec": self.spec.model_dump()})
        self.identify("before")
        for i in range(self.spec.clients):
            self._spawn(cmd, worker_request(self._dsn, client=i, run_id=self.run_id, seed=i,
                                            dialect=self.dialect.name,
                                            **self.spec.model_dump(exclude={"clients", "probe_interval_ms",
                                                                             "probe_idle_interval_ms"})), client=i)
        if self.spec.probe_interval_ms:  # judged apart from the clients (availlab.checks.probe)
            # fast inside the run's event windows, which it reads from the run's events.jsonl
            self._probe = self._spawn(
                client_command(self.st, sys.executable, "-m", "availlab.clients.probe"),
                worker_request(self._dsn, dialect=self.dialect.name, interval_ms=self.spec.probe_interval_ms,
                               slow_interval_ms=self.spec.probe_idle_interval_ms,
                               events_path=str(RunFiles(self.history.path.parent).events)), keep_stdin=True)
        step(f"workload: {self.spec.clients} clients on {self.vm} "
             f"({self.spec.read_fraction:.0%} reads, "
             f"{'flat out' if not self.spec.rate else f'{self.spec.rate:g} ops/s each'})"
             + (f", probe every {self.spec.probe_interval_ms:g} ms" if self.spec.probe_interval_ms else ""))
        return self

    def _spawn(self, cmd: list[str], request: str, keep_stdin: bool = False,
               client: int | None = None) -> subprocess.Popen:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self._procs.append(p)  # before anything can fail: stop() ends it
        assert p.stdin is not None  # stdin=PIPE
        p.stdin.write(request)
        if keep_stdin:
            p.stdin.flush()
        else:
            p.stdin.close()
        t = threading.Thread(target=self._pump, args=(p, client), daemon=True)
        t.start()
        self._readers.append(t)
        return p

    def calibrate(self, seconds: float) -> None:
        """Run the probe fast for `seconds` with no event running: its resolution and the noise
        floor are measured there (and inside every event)."""
        p = self._probe
        if p is not None and p.poll() is None and p.stdin and not p.stdin.closed:
            try:
                p.stdin.write(f"calibrate {seconds:g}\n")
                p.stdin.flush()
            except OSError:  # the probe died: stop() reports its stderr
                pass

    def _pump(self, p: subprocess.Popen, client: int | None) -> None:
        waiting = client is not None  # for this client's first success (its lines are parsed until then)
        assert p.stdout is not None  # stdout=PIPE
        for line in p.stdout:
            if line.strip():
                self.history.write_line(line)
                if waiting and client is not None and '"ok"' in line and _is_ok(line):
                    waiting = False
                    self._succeeded.add(client)
                    if len(self._succeeded) == self.spec.clients:
                        self._all_succeeded.set()

    def wait_all_succeeded(self, timeout_s: float = READY_TIMEOUT_S) -> list[int]:
        """Wait until every client has completed an operation; the clients that had not by then.
        The blackout is measured from the warm mark written after this (checks.client): a client
        still connecting then would see an event only in part."""
        self._all_succeeded.wait(timeout_s)
        return sorted(set(range(self.spec.clients)) - self._succeeded)

    def stop(self, timeout_s: float = 60) -> None:
        """End the clients: each finishes the operation it is in, all within one `timeout_s`, then
        is killed. A client can wait for ever: one whose server's kernel died after acknowledging its
        query sends nothing and is told nothing (seen: a guest kernel panic). Its operation stays
        without a completion, so the checks count it indeterminate, never as done."""
        if self._probe is not None and self._probe.stdin and not self._probe.stdin.closed:
            with contextlib.suppress(OSError):
                self._probe.stdin.close()
        self._probe = None
        for p in self._procs:
            if p.poll() is None:
                p.terminate()  # our own children, by handle
        deadline = time.monotonic() + timeout_s  # one wait for all, not one per client
        for p in self._procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stderr is None:  # stderr=PIPE: always there
                continue
            err = p.stderr.read().replace(self._dsn.password, "***").strip()
            if p.returncode not in (0, -15) and err:
                self._errors.append(err[-1000:])
            p.stderr.close()
        for t in self._readers:
            t.join(timeout=10)
        self.history.write({"type": Rec.WORKLOAD_STOP, "t": now_ns(), "run_id": self.run_id,
                            "client_errors": self._errors})
        self._procs, self._readers = [], []
        if self._errors:
            raise AvailLabError("workload client crashed: " + " | ".join(self._errors))

    def final_read(self) -> int:
        """Record every key of this run present in the database now (after the workload); a
        read-only workload wrote none, so it reads none: only the server's identity after."""
        if self.spec.read_only:
            self.identify("after")
            return 0
        t0 = now_ns()
        try:
            rows = run_sql(self.st, self.vm, self.dialect.keys_of_run, (self.run_id,), timeout_s=120)
        except AvailLabError as exc:
            self.history.write({"type": Rec.FINAL_READ, "t": now_ns(), "t0": t0, "ok": False,
                                "error": str(exc)})
            raise
        keys = [r[0] for r in rows]
        self.history.write({"type": Rec.FINAL_READ, "t": now_ns(), "t0": t0, "ok": True,
                            "run_id": self.run_id, "keys": keys})
        self.identify("after")
        return len(keys)

    def __enter__(self) -> Workload:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        if self._procs:
            self.stop()



@contextlib.contextmanager
def under_load(st: LabState, vm: str, spec: WorkloadSpec, history: JsonlWriter, *, warmup_s: float,
               cooldown_s: float = 0.0, final_read: bool = True,
               nemeses: contextlib.AbstractContextManager | None = None, run_id: str | None = None) -> Iterator[Workload]:
    """Every scenario's frame, written once: start the clients, then set up the `nemeses` (the
    scenario's events.nemesis.Nemeses: a memory dirtier starts dirtying), wait for every client's
    first success, warm up (then the `warm` mark the blackout is measured from), run the block
    (which invokes the nemeses in order), cool down, tear the nemeses down and stop the clients
    whatever happened, then, if the block completed and `final_read`, record the final read for
    the lost-writes check. A scenario whose final read is elsewhere (runbook 20 reads the
    restored VM) says so."""
    if warmup_s < 0 or cooldown_s < 0:
        raise UsageError(f"warmup_s/cooldown_s: must not be negative (got {warmup_s:g}, {cooldown_s:g})")
    wl = Workload(st, vm, spec, history, run_id)
    history.write({"type": Rec.ENVIRONMENT, "t": now_ns(), **lab_environment(st)})  # what measured this run
    with contextlib.ExitStack() as stack:
        stack.callback(wl.stop)  # also the clients a start that failed half-way left running
        wl.start()
        if nemeses is not None:
            stack.enter_context(nemeses)
        missing = wl.wait_all_succeeded()
        if missing:  # the blackout check names them; the run goes on to keep what evidence there is
            step(f"workload: client(s) {missing} completed no operation in {READY_TIMEOUT_S:g} s; going on")
        calibration = min(CALIBRATE_S, warmup_s)  # the warm-up counts from every client's first success
        time.sleep(warmup_s - calibration)
        wl.calibrate(calibration)
        time.sleep(calibration)
        history.write({"type": Rec.WARM, "t": now_ns(), "after_s": warmup_s})
        yield wl
        time.sleep(cooldown_s)
    if final_read:
        wl.final_read()


def _is_ok(line: str) -> bool:
    try:
        return json.loads(line).get("type") == Rec.OK
    except ValueError:
        return False
