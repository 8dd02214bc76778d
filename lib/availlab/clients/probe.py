"""The blackout probe: runs INSIDE the client namespace (`python -m availlab.clients.probe`).

The workload clients run real statements, so their gaps mix the outage with their own latency
(median 7 ms, p99 tens of ms on TCG): a 40 ms gap may be nothing. The probe is one more
connection that runs the dialect's cheapest statement every `interval_ms` and nothing else, so its
gaps give the blackout at a known resolution (docs/results.md "The probe"). It records one
line per statement, `{"type": "probe", "t0", "t", "ok"}`, which the operation checkers never read
(it is judged apart: availlab.checks.probe).

It also samples this namespace's TCP counters (/proc/self/net is the namespace of the reading
process) every `tcp_every_ms`: a blackout longer than the pause is mostly TCP waiting for its
retransmission timer, and RetransSegs growing during a migration shows it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from itertools import pairwise

import pyodbc

from ..dialects import DEFAULT_DATABASE, dialect
from ..history import Tail
from ..records import CLOSES, OPENS, Rec  # the windows the probe runs fast in
from .sqlrunner import Recorder, close_quietly, die_with_parent, sqlstate_of

# /proc/net/snmp "Tcp:" and /proc/net/netstat "TcpExt:" fields, as the history names them
TCP_FIELDS = {("Tcp", "RetransSegs"): "retrans_segs", ("TcpExt", "TCPTimeouts"): "rto_timeouts",
              ("TcpExt", "TCPLossProbes"): "loss_probes"}


def tcp_counters(texts: list[str]) -> dict[str, int]:
    """The TCP_FIELDS of /proc/net/snmp- and netstat-format texts (header line, then values)."""
    out: dict[str, int] = {}
    for text in texts:
        lines = text.splitlines()
        for head, vals in pairwise(lines):
            name, _, keys = head.partition(":")
            vname, _, values = vals.partition(":")
            if name != vname or not keys.strip():
                continue
            for k, v in zip(keys.split(), values.split(), strict=False):  # the kernel's: never trusted to fail
                if (name, k) in TCP_FIELDS:
                    out[TCP_FIELDS[(name, k)]] = int(v)
    return out


def _read_tcp() -> dict[str, int]:
    texts = []
    for path in ("/proc/self/net/snmp", "/proc/self/net/netstat"):
        try:
            with open(path) as fh:
                texts.append(fh.read())
        except OSError:
            pass
    return tcp_counters(texts)


MAX_WINDOW_S = 900.0  # a window whose end was never written closes itself after this


class Pace:
    """Fast (every `interval_ms`) inside the run's event windows and while calibrating, slow
    otherwise: held at 5 ms it ran more statements than 4 flat-out clients, and on a TCG guest
    every statement costs the workload (bench/probe.py). Pure: fed records and times, it answers
    which period applies now."""

    def __init__(self, fast_s: float, slow_s: float) -> None:
        self.fast_s, self.slow_s = fast_s, slow_s
        self.open: dict[str, float] = {}  # event kind -> when its window opened
        self.calibrate_until = 0.0

    def see(self, rec: dict, now: float) -> None:
        kind = rec.get("type")
        if kind in OPENS:
            self.open[OPENS[kind]] = now
        elif kind in CLOSES:
            self.open.pop(CLOSES[kind], None)

    def calibrate(self, seconds: float, now: float) -> None:
        self.calibrate_until = max(self.calibrate_until, now + seconds)

    def why_fast(self, now: float) -> str:
        """"" when slow; else what keeps the probe fast."""
        self.open = {k: t for k, t in self.open.items() if now - t < MAX_WINDOW_S}
        if self.open:
            return ",".join(sorted(self.open))
        return "calibration" if now < self.calibrate_until else ""


class Probe(Recorder):
    def __init__(self, req: dict, out=sys.stdout, commands: int | None = None):
        super().__init__(req, out)
        self.dialect = dialect(req.get("dialect", DEFAULT_DATABASE))
        self.sql = self.dialect.probe
        fast = float(req.get("interval_ms", 5)) / 1000
        self.pace = Pace(fast, max(fast, float(req.get("slow_interval_ms", 100)) / 1000))
        self.tcp_every = float(req.get("tcp_every_ms", 100)) / 1000
        self.events = Tail(req["events_path"]) if req.get("events_path") else None
        self.commands = commands  # a non-blocking file descriptor: "calibrate SECONDS" lines
        self._pending = ""
        self.conn: pyodbc.Connection | None = None
        self.connect_failures = 0
        self.why: str | None = None

    def once(self) -> None:
        t0 = time.monotonic_ns()
        try:
            if self.conn is None:
                self.connect_failures += 1  # until it succeeds
                self.conn = pyodbc.connect(self.req["connstr"], autocommit=True)
                self.connect_failures = 0
            self.conn.execute(self.sql).fetchone()
            rec: dict = {"ok": True}
        except pyodbc.Error as exc:
            state = sqlstate_of(exc)
            msg = " ".join(str(a) for a in exc.args[1:] or exc.args)
            msg = self.scrub(msg)
            rec = {"ok": False, "sqlstate": state, "error": msg[:300]}
            if self.conn is None or self.dialect.is_connection_error(state, msg):
                self._drop()
        self.emit({"type": Rec.PROBE, "t0": t0, "t": time.monotonic_ns(), **rec})

    def _drop(self) -> None:
        close_quietly(self.conn)
        self.conn = None

    def _listen(self) -> None:
        """Take in the run's new event records and the parent's commands; record a change of pace."""
        now = time.monotonic()
        if self.events is not None:
            for rec in self.events.new_records():
                self.pace.see(rec, now)
        for line in self._command_lines():
            word, _, arg = line.strip().partition(" ")
            if word == "calibrate":
                self.pace.calibrate(float(arg or 2), now)
        why = self.pace.why_fast(now)
        if why != self.why:
            self.why = why
            self.emit({"type": Rec.PROBE_MODE, "t": time.monotonic_ns(), "fast": bool(why), "why": why or "idle",
                       "interval_ms": round((self.pace.fast_s if why else self.pace.slow_s) * 1000, 3)})

    def _command_lines(self) -> list[str]:
        """Whole lines the parent wrote since the last call (its end of the pipe closed: none)."""
        if self.commands is None:
            return []
        try:
            data = os.read(self.commands, 4096)
        except BlockingIOError:
            return []
        if not data:
            self.commands = None
            return []
        self._pending += data.decode(errors="replace")
        *lines, self._pending = self._pending.split("\n")
        return lines

    def _wait(self, until: float) -> None:
        """Sleep until `until`, listening every 10 ms: an event that starts cuts a slow wait short
        (not a back-off after a failed connect)."""
        while not self.stopping:
            self._listen()
            left = until - time.monotonic()
            if self.why and left > self.pace.fast_s and not self.connect_failures:
                return  # turned fast meanwhile
            if left <= 0:
                return
            time.sleep(min(left, 0.01))

    def run(self) -> None:
        self.stop_on_signals()
        self.emit({"type": Rec.PROBE_START, "t": time.monotonic_ns(), "interval_ms": self.pace.fast_s * 1000,
                   "slow_interval_ms": self.pace.slow_s * 1000, "sql": self.sql})
        next_tcp = time.monotonic()
        self._listen()
        while not self.stopping:
            now = time.monotonic()
            if now >= next_tcp:
                self.emit({"type": Rec.TCP, "t": time.monotonic_ns(), **_read_tcp()})
                next_tcp = now + self.tcp_every
            started = time.monotonic()
            self.once()
            period = self.pace.fast_s if self.why else self.pace.slow_s
            if self.connect_failures:  # a server refusing at once is not asked 200 times a second;
                # inside an event no more than 50 ms, or the back-off would widen the blackout it measures
                backoff = 0.05 * 2 ** min(self.connect_failures - 1, 5)
                period = max(period, min(0.05 if self.why else 1.0, backoff))
            self._wait(started + period)
        self.emit({"type": Rec.TCP, "t": time.monotonic_ns(), **_read_tcp()})
        self._drop()
        self.emit({"type": Rec.PROBE_STOP, "t": time.monotonic_ns()})


def main() -> int:
    die_with_parent()
    fd = sys.stdin.fileno()
    first = b""
    while not first.endswith(b"\n"):  # the request: one line, read unbuffered so no command is lost
        chunk = os.read(fd, 1)
        if not chunk:
            break
        first += chunk
    os.set_blocking(fd, False)  # later lines are commands, read between statements
    Probe(json.loads(first), commands=fd).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
