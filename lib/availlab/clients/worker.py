"""Workload client worker: runs INSIDE the client namespace (`python -m availlab.clients.worker`).

One process per client, each with its own pyodbc connection, running a mix of single-row reads
and unique-key writes at a target rate or flat out. Every operation is printed as two JSON lines,
`invoke` before the statement and `ok` | `fail` | `info` after it (Jepsen's vocabulary: info =
outcome unknown, e.g. the connection died mid-write), flushed per line; the parent stores them in
history.jsonl. An op whose completion never arrives is therefore still in the history, as invoked.

Reconnect policy mirrors SQL Server's ConnectRetryCount / ConnectRetryInterval: a lost connection
is re-established before the next operation with up to `connect_retry_count` retries. The SQL it
runs and how it judges an error come from the VM's database profile (availlab.dialects).
"""

from __future__ import annotations

import json
import random
import sys
import time

import pyodbc

from ..dialects import DEFAULT_DATABASE, dialect
from ..records import Rec
from .sqlrunner import Recorder, close_quietly, die_with_parent, sqlstate_of


def value_for(key: str) -> str:
    """The value a client writes under `key` (run:client:seq -> v<seq>): a restored row whose value
    is not this was never written by a client (scenarios.dr checks every restored row by it)."""
    return "v" + key.rsplit(":", 1)[-1]


class Client(Recorder):
    def __init__(self, req: dict, out=sys.stdout):
        super().__init__(req, out)
        self.id = int(req["client"])
        self.run_id = str(req["run_id"])
        self.dialect = dialect(req.get("dialect", DEFAULT_DATABASE))
        self.rng = random.Random(req.get("seed", self.id))
        self.read_fraction = float(req.get("read_fraction", 0.5))
        self.read_only = bool(req.get("read_only", False))  # every op the profile's cheapest read
        self.rate = float(req.get("rate", 0))
        self.retry_count = int(req.get("connect_retry_count", 3))
        self.retry_interval = float(req.get("connect_retry_interval_s", 1.0))
        self.conn: pyodbc.Connection | None = None
        self.acked: list[str] = []
        self.seq = 0
        self.described = False  # its driver and server said once, at the first connect

    def connect(self) -> pyodbc.Connection:
        last: Exception | None = None
        for attempt in range(self.retry_count + 1):
            try:
                self.conn = conn = pyodbc.connect(self.req["connstr"], autocommit=True)
                if not self.described:
                    self.describe(conn)
                return conn
            except pyodbc.Error as exc:
                last = exc
                if attempt < self.retry_count and not self.stopping:
                    time.sleep(self.retry_interval)
        raise last  # type: ignore[misc]

    def describe(self, conn: pyodbc.Connection) -> None:
        """What answered, as the ODBC driver reports it: the provenance of every figure."""
        info: dict[str, str | None] = {}
        for key, what in (("odbc_driver", "SQL_DRIVER_NAME"), ("odbc_driver_version", "SQL_DRIVER_VER"),
                          ("driver_manager_version", "SQL_DM_VER"), ("dbms", "SQL_DBMS_NAME"),
                          ("dbms_version", "SQL_DBMS_VER")):
            try:
                info[key] = str(conn.getinfo(getattr(pyodbc, what)))
            except (pyodbc.Error, AttributeError):
                info[key] = None
        self.emit({"type": Rec.CLIENT_INFO, "client": self.id, "t": time.monotonic_ns(), **info})
        self.described = True

    def drop(self) -> None:
        close_quietly(self.conn)
        self.conn = None

    def one_op(self) -> None:
        self.seq += 1
        if self.read_only:
            kind, key = "read", ""
        elif self.acked and self.rng.random() < self.read_fraction:
            kind, key = "read", self.rng.choice(self.acked)
        else:
            kind, key = "write", f"{self.run_id}:{self.id}:{self.seq}"
        base = {"client": self.id, "op": self.seq, "f": kind, "key": key}
        t0 = time.monotonic_ns()
        self.emit({"type": Rec.INVOKE, "t": t0, **base})
        rec: dict[str, object]
        try:
            conn = self.conn if self.conn is not None else self.connect()
            if kind == "write":
                conn.execute(self.dialect.insert, key, value_for(key), self.id, self.run_id)
                rec = {"type": Rec.OK}
            elif self.read_only:
                conn.execute(self.dialect.probe).fetchone()
                rec = {"type": Rec.OK}
            else:
                row = conn.execute(self.dialect.read, key).fetchone()
                rec = {"type": Rec.OK, "found": row is not None}
        except pyodbc.Error as exc:
            state = sqlstate_of(exc)
            msg = self.scrub(" ".join(str(a) for a in exc.args[1:] or exc.args))
            rec = {"type": self.dialect.classify(kind, state, msg), "sqlstate": state, "error": msg[:500]}
            if self.conn is None or self.dialect.is_connection_error(state, msg):
                self.drop()
        t1 = time.monotonic_ns()
        self.emit({**rec, "t": t1, "t0": t0, "latency_ms": round((t1 - t0) / 1e6, 3), **base})
        if rec["type"] == Rec.OK and kind == "write":
            self.acked.append(key)

    def run(self) -> None:
        self.stop_on_signals()
        end = time.monotonic() + float(self.req.get("duration_s", 3600))
        self.emit({"type": Rec.CLIENT_START, "client": self.id, "t": time.monotonic_ns()})
        period = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = time.monotonic()
        while not self.stopping and time.monotonic() < end:
            self.one_op()
            if period:
                next_at += period
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                else:
                    next_at = time.monotonic()  # fell behind: no catch-up burst
        self.drop()
        self.emit({"type": Rec.CLIENT_STOP, "client": self.id, "t": time.monotonic_ns()})


def main() -> int:
    die_with_parent()
    Client(json.loads(sys.stdin.readline())).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
