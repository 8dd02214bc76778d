"""The database's own backup beside the VM backup: a logical dump over the lab network.

A host-level VM backup is no substitute for the database's own backups (the seed article says so
too). The dump tool runs in the client namespace against the VM: pg_dump for PostgreSQL,
mariadb-dump for MariaDB, one registry entry each. Passwords come from 0600 files in the lab's
secrets (a pgpass file, a MariaDB option file), never from the command line or the environment.
A dump is verified by restoring it into a scratch database on the restored VM.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..dialects import DEFAULT_DATABASE, MARIADB, POSTGRESQL
from ..errors import BackupError
from ..history import now_ns
from ..lab.credentials import DB_NAME, DB_USER, db_password
from ..lab.state import LabState, secrets_dir
from ..paths import sha256_file

SCRATCH_DB = "availlab_dump_check"  # the MariaDB guest grants the lab's user `availlab\_%` databases
SCRATCH_NAME = re.compile(rf"{DB_NAME}_[a-z0-9_]{{1,40}}")


@dataclass(frozen=True)
class Dump:
    path: str
    t0: int
    t1: int
    size_bytes: int
    sha256: str
    tool: str = "pg_dump"


def _run(st: LabState, args: list[str], what: str, env: dict[str, str] | None = None,
         stdin: Path | None = None) -> None:
    with open(stdin or os.devnull, "rb") as fh:
        r = subprocess.run(["ip", "netns", "exec", st.client_namespace, *args], stdin=fh,
                           env={"PATH": "/usr/bin:/bin", **(env or {})}, capture_output=True, timeout=600)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip()
        raise BackupError(f"{what} failed: {err.replace(db_password(st.lab), '***')}")


@dataclass(frozen=True)
class DumpTool:
    """How one database is dumped and the dump loaded into a scratch database."""
    tool: str
    suffix: str
    dump: Callable[[LabState, str, Path], None]
    load: Callable[[LabState, str, Path, str], None]


# PostgreSQL ------------------------------------------------------------------------------------
def _pg_env(st: LabState) -> dict[str, str]:
    path = secrets_dir(st.lab) / "pgpass"
    paths.write_private(path, f"*:{POSTGRESQL.port}:*:{DB_USER}:{db_password(st.lab)}\n")
    return {"PGPASSFILE": str(path), "PGCONNECT_TIMEOUT": "10"}


def _pg_dump(st: LabState, vm: str, out: Path) -> None:
    _run(st, ["pg_dump", "-h", st.vms[vm].address, "-U", DB_USER, "-d", DB_NAME, "-Fc", "-f", str(out)],
         f"pg_dump of {vm}", _pg_env(st))


def _pg_load(st: LabState, vm: str, dump: Path, dbname: str) -> None:
    host, env = ["-h", st.vms[vm].address, "-U", DB_USER], _pg_env(st)
    _run(st, ["dropdb", *host, "--if-exists", dbname], f"dropdb {dbname} on {vm}", env)
    _run(st, ["createdb", *host, dbname], f"createdb {dbname} on {vm}", env)
    _run(st, ["pg_restore", *host, "-d", dbname, "--no-owner", str(dump)], f"pg_restore into {dbname} on {vm}", env)


# MariaDB ---------------------------------------------------------------------------------------
def _my_options(st: LabState, vm: str) -> list[str]:
    path = secrets_dir(st.lab) / "mariadb.cnf"
    # [client] is read by mariadb and mariadb-dump alike: only options both know
    paths.write_private(path, f"[client]\nuser={DB_USER}\npassword={db_password(st.lab)}\nport={MARIADB.port}\n")
    return [f"--defaults-extra-file={path}", "-h", st.vms[vm].address]  # the option file must come first


def _my_dump(st: LabState, vm: str, out: Path) -> None:
    # one consistent snapshot of InnoDB without locking the clients out
    _run(st, ["mariadb-dump", *_my_options(st, vm), "--single-transaction", "--skip-lock-tables",
              f"--result-file={out}", DB_NAME], f"mariadb-dump of {vm}")


def _my_load(st: LabState, vm: str, dump: Path, dbname: str) -> None:
    client = ["mariadb", *_my_options(st, vm)]
    _run(st, [*client, "-e", f"DROP DATABASE IF EXISTS `{dbname}`; CREATE DATABASE `{dbname}`"],
         f"create {dbname} on {vm}")
    _run(st, [*client, dbname], f"load the dump into {dbname} on {vm}", stdin=dump)


TOOLS = {"postgresql": DumpTool("pg_dump", "pgdump", _pg_dump, _pg_load),
         "mariadb": DumpTool("mariadb-dump", "sql", _my_dump, _my_load)}


def tool_for(st: LabState, vm: str) -> DumpTool:
    database = st.vms[vm].database if vm in st.vms else DEFAULT_DATABASE
    if database not in TOOLS:
        raise BackupError(f"{vm} runs {database}: availlab has no logical dump for it "
                          f"(it has: {', '.join(TOOLS)})")
    return TOOLS[database]


def dump(st: LabState, vm: str, directory: Path) -> Dump:
    """The VM's database dumped to `<directory>/<vm>.<suffix>` by its own tool."""
    t = tool_for(st, vm)
    out = directory / f"{vm}.{t.suffix}"
    paths.write_private(out, b"")  # 0600 before the tool writes the database into it (it keeps the mode)
    t0 = now_ns()
    t.dump(st, vm, out)
    return Dump(str(out), t0, now_ns(), out.stat().st_size, sha256_file(out), t.tool)


def restore_into_scratch(st: LabState, vm: str, dump: Dump, dbname: str = SCRATCH_DB) -> str:
    """Load the dump into a fresh database on `vm` (dropped first); returns the database's name."""
    if not SCRATCH_NAME.fullmatch(dbname):  # it is quoted into SQL, and dropped: only ours
        raise BackupError(f"scratch database {dbname!r}: must be {DB_NAME}_ and lower-case letters, digits or _")
    tool_for(st, vm).load(st, vm, Path(dump.path), dbname)
    return dbname
