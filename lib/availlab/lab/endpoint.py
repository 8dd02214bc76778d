"""Any database reachable over ODBC, as a lab of no hosts: what `availlab watch --dsn` observes.

A watch needs no hypervisor: the clients' evidence is the same whoever moves the VM. So a
database given by its connection string becomes an in-memory lab state (never saved: nothing
of it is availlab's to keep or remove) with one VM entry whose endpoint says how to reach it, the
way a remote cluster's declared VMs do. Its clients run in the caller's own network namespace.
The password is never in the connection string nor on the command line: a 0600 file, or an
environment variable (read when the clients start, never written anywhere).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ..dialects import dialect
from ..errors import UsageError
from .remote import check_password_file
from .state import LabState, VMState

# connection-string keys, case-insensitive, as the drivers spell them -> the endpoint's field
KEYS = {"driver": "driver", "server": "server", "host": "server", "servername": "server", "port": "port",
        "database": "dbname", "dbname": "dbname", "uid": "user", "user": "user", "username": "user", "dsn": "odbc_dsn"}
SECRET_KEYS = {"pwd", "password"}


def parse_connection_string(text: str) -> dict[str, str]:
    """`Driver={PostgreSQL Unicode};Server=db1;Port=5432;Database=app;UID=availlab` -> endpoint
    fields; `DSN=prod` (odbc.ini) too. A password in it is refused, with where it goes instead."""
    fields: dict[str, str] = {}
    for part in re.findall(r"([^;=]+)=(\{(?:[^}]|\}\})*\}|[^;]*)", text):
        key, value = part[0].strip().lower(), part[1].strip()
        if value.startswith("{") and value.endswith("}"):
            value = value[1:-1].replace("}}", "}")
        if key in SECRET_KEYS:
            raise UsageError("dsn: a password in the connection string would be kept in the run's files; "
                             "give it with --password-file FILE (mode 0600) or --password-env VARIABLE")
        if key not in KEYS:
            raise UsageError(f"dsn: unknown key {part[0].strip()!r} (known: {', '.join(sorted(KEYS))}); "
                             "a driver's own settings go in an odbc.ini DSN (DSN=name)")
        fields[KEYS[key]] = value
    if "port" in fields and not fields["port"].isdigit():
        raise UsageError(f"dsn: Port must be a number (got {fields['port']!r})")
    if not fields.get("server") and not fields.get("odbc_dsn"):
        raise UsageError("dsn: name the server (Server=host) or an odbc.ini DSN (DSN=name)")
    for field, said in (("dbname", "the database (Database=name): availlab writes only to its own table in it"),
                        ("user", "the user the clients log in as (UID=name)")):
        if not fields.get(field):
            raise UsageError(f"dsn: name {said}")
    return fields


def endpoint_state(vm: str, dsn: str, database: str, *, password_file: str = "", password_env: str = "") -> LabState:
    """The database behind `dsn` as a lab of no hosts, with one VM entry named `vm`."""
    d = dialect(database)
    fields = parse_connection_string(dsn)
    if bool(password_file) == bool(password_env):
        raise UsageError("password: give exactly one of --password-file FILE (mode 0600) or --password-env VARIABLE")
    if password_env and password_env not in os.environ:
        raise UsageError(f"password-env: the variable {password_env!r} is not set")
    endpoint = {"port": int(fields["port"]) if "port" in fields else None,
                "driver": fields.get("driver"), "odbc_dsn": fields.get("odbc_dsn"),
                "user": fields["user"], "dbname": fields["dbname"],
                **({"password_file": check_password_file("password-file", Path(password_file))} if password_file
                   else {"password_env": password_env})}
    return LabState(lab=f"dsn-{vm}", status="up", topology={"dsn": dsn}, provider="remote", client_namespace="",
                    vms={vm: VMState(name=vm, address=fields.get("server", ""), host="", disk="", config_disk="",
                                     console_log="", uuid="", created_at=time.time(), database=d.name,
                                     endpoint=endpoint)})
