"""The SQL worker that runs INSIDE the client namespace: `python -m availlab.clients.sqlrunner`.

Lab addresses exist only in lab namespaces, so SQL goes from a process started there with
`ip netns exec`. The request (including the connection string with the password) arrives as one
JSON object on stdin, never on the command line where `ps` would show it. Replies are JSON on
stdout, one object per request (`query`: rows; `wait`: poll until a login works). The workload
clients (availlab.clients.worker) are the long-running counterpart.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time

import pyodbc

from ..dialects import DEFAULT_DATABASE, dialect


class Recorder:
    """What every client process in the client namespace shares: one JSON line per record on
    stdout, flushed at once (the parent writes them into history.jsonl as they arrive); a stop
    flag that SIGTERM and SIGINT set, so the loop ends between operations, never inside one; and
    the lab's password scrubbed from every text it reports (a driver's error may echo it)."""

    def __init__(self, req: dict, out=sys.stdout) -> None:
        self.req, self.out = req, out
        self.secret = req.get("secret", "")
        self.stopping = False

    def emit(self, rec: dict) -> None:
        self.out.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.out.flush()

    def scrub(self, text: str) -> str:
        return text.replace(self.secret, "***") if self.secret else text

    def stop_on_signals(self) -> None:
        def _stop(*_a: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)


def die_with_parent() -> None:
    """If whoever started us is killed (even by SIGKILL), get SIGTERM: a client must never
    outlive the run that records it. `ip netns exec` execs us, so our parent is the recorder."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def sqlstate_of(exc: Exception) -> str | None:
    if exc.args and isinstance(exc.args[0], str) and len(exc.args[0]) == 5:
        return exc.args[0]
    return None


def close_quietly(conn: pyodbc.Connection | None) -> None:
    """Close a connection that may already be dead: a lost connection is what the caller handles."""
    if conn is not None:
        try:
            conn.close()
        except pyodbc.Error:
            pass


def _message(exc: Exception, secret: str) -> str:
    text = " ".join(str(a) for a in exc.args[1:] or exc.args)
    return text.replace(secret, "***") if secret else text


def _connect(req: dict) -> pyodbc.Connection:
    # No pyodbc login timeout: the connection string carries the driver's own (libpq's
    # connect_timeout through pqopt), and psqlODBC refuses both at once (`lab dsn` prints a string
    # without it, for clients that set pyodbc's timeout=).
    # Nor Connection.timeout: that is SQL_ATTR_CONNECTION_TIMEOUT, also unsupported by psqlODBC.
    return pyodbc.connect(req["connstr"], autocommit=True)


def _query(req: dict) -> dict:
    """Rows of the last result set that has any (so "SET ...; SELECT ..." returns the SELECT)."""
    with _connect(req) as conn:
        cur = conn.execute(req["sql"], *req.get("params", []))
        reply = {"ok": True, "columns": [], "rows": [], "rowcount": cur.rowcount}
        while True:
            if cur.description is not None:
                reply = {"ok": True, "columns": [d[0] for d in cur.description],
                         "rows": [list(r) for r in cur.fetchall()]}
            if not cur.nextset():
                return reply


def _wait(req: dict) -> dict:
    deadline = time.monotonic() + float(req.get("deadline_s", 60))
    attempts, last = 0, ""
    while time.monotonic() < deadline:
        attempts += 1
        try:
            with _connect(req) as conn:
                conn.execute("SELECT 1").fetchall()
                t_ns = time.monotonic_ns()
                if req.get("then_sql"):  # on the login that just worked (a restored VM's new password)
                    conn.execute(req["then_sql"])
                return {"ok": True, "attempts": attempts, "t_ns": t_ns}
        except pyodbc.Error as exc:
            last = _message(exc, req.get("secret", ""))
            state = sqlstate_of(exc) or ""
            # not "cannot connect (yet)": waiting will not help. In the profile's terms: MariaDB's
            # driver reports a server still booting ("Can't connect", 2002) as HY000, not 08001
            if not dialect(req.get("dialect", DEFAULT_DATABASE)).is_connection_error(state, last):
                return {"ok": False, "attempts": attempts, "sqlstate": state, "error": last}
            time.sleep(float(req.get("interval_s", 0.5)))
    return {"ok": False, "attempts": attempts, "error": last}


def main() -> int:
    die_with_parent()
    req = json.loads(sys.stdin.readline())
    try:
        reply = _wait(req) if req.get("mode") == "wait" else _query(req)
    except pyodbc.Error as exc:
        reply = {"ok": False, "sqlstate": sqlstate_of(exc), "error": _message(exc, req.get("secret", ""))}
    print(json.dumps(reply, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
