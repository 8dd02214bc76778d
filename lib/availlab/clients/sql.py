"""Run SQL against a lab VM from the client namespace, through pyodbc and the ODBC driver.

The caller side of availlab.clients.sqlrunner: it builds the connection string from lab state and the
lab's secret, starts the worker under `ip netns exec <client namespace>`, and turns the reply into
rows or an SQLError. Passwords travel on stdin only and are scrubbed from every error text.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

from ..dialects import DEFAULT_DATABASE, dialect
from ..errors import AvailLabError, SQLError, VMError
from ..lab.credentials import DB_NAME, DB_USER, db_password
from ..lab.state import LabState


@dataclass(frozen=True)
class DSN:
    server: str
    database: str = DB_NAME
    user: str = DB_USER
    password: str = field(default="", repr=False)
    dialect: str = DEFAULT_DATABASE
    port: int | None = None  # None: the profile's default
    driver: str | None = None  # None: the profile's default ODBC driver
    odbc_dsn: str | None = None  # a user's DSN from odbc.ini instead of driver + server
    connect_timeout_s: int = 5

    def connection_string(self, show_secret: bool = True) -> str:
        d = dialect(self.dialect)
        return d.connection_string(server=self.server, port=self.port or d.port, database=self.database,
                                   user=self.user, password=self.password if show_secret else "***",
                                   driver=self.driver, dsn=self.odbc_dsn, connect_timeout_s=self.connect_timeout_s)


def dsn_for(st: LabState, vm: str, database: str = DB_NAME) -> DSN:
    if vm not in st.vms:
        known = ", ".join(sorted(st.vms)) or "none"
        raise VMError(f"unknown VM {vm!r} in lab {st.lab!r} (VMs: {known})")
    v = st.vms[vm]
    if v.endpoint:  # a VM of a remote cluster: its own server, driver and password file
        from ..lab.remote import password

        e = v.endpoint
        return DSN(server=v.address, database=e["dbname"] if database == DB_NAME else database, user=e["user"],
                   password=password(st, vm), dialect=v.database, port=e.get("port"), driver=e.get("driver"),
                   odbc_dsn=e.get("odbc_dsn"))
    return DSN(server=v.address, database=database, password=db_password(st.lab),
               dialect=v.database)


def client_command(st: LabState, *argv: str) -> list[str]:
    """argv as a client of the lab runs it: inside the client namespace (the local lab; a remote
    cluster that names one), else on this machine's own network."""
    return (["ip", "netns", "exec", st.client_namespace] if st.client_namespace else []) + list(argv)


def _worker_cmd(st: LabState) -> list[str]:
    return client_command(st, sys.executable, "-m", "availlab.clients.sqlrunner")


def worker_request(dsn: DSN, **fields: object) -> str:
    return json.dumps({"connstr": dsn.connection_string(), "secret": dsn.password, "dialect": dsn.dialect,
                       **fields}) + "\n"


def run_sql(st: LabState, vm: str, sql: str, params: tuple = (), timeout_s: float = 30,
            database: str = DB_NAME) -> list[tuple]:
    """Execute one statement in the client namespace and return its rows."""
    reply = _call(st, dsn_for(st, vm, database), {"mode": "query", "sql": sql, "params": list(params)},
                  timeout_s)
    if not reply.get("ok"):
        raise SQLError(f"{vm}: {reply.get('error')}", sqlstate=reply.get("sqlstate"))
    return [tuple(r) for r in reply["rows"]]


def wait_for_db(st: LabState, vm: str, deadline_s: float) -> dict:
    """Poll from the client namespace until the database accepts a login and answers SELECT 1."""
    return _call(st, dsn_for(st, vm), {"mode": "wait", "deadline_s": deadline_s}, deadline_s + 30)


def _call(st: LabState, dsn: DSN, req: dict, timeout_s: float) -> dict:
    try:
        r = subprocess.run(_worker_cmd(st), input=worker_request(dsn, **req), capture_output=True,
                           text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise SQLError(f"SQL worker in {st.client_namespace} did not answer in {timeout_s:.0f} s") from None
    if r.returncode != 0 or not r.stdout.strip():
        err = r.stderr.replace(dsn.password, "***").strip()[-2000:]
        raise AvailLabError(f"SQL worker in {st.client_namespace} failed (exit {r.returncode}): {err}")
    return json.loads(r.stdout.strip().splitlines()[-1])

