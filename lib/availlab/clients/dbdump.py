"""The database's own backup beside the VM backup: pg_dump over the lab network.

A host-level VM backup is no substitute for the database's own backups (the seed article says so
too). pg_dump runs in the client namespace against the VM; its password comes from a 0600
pgpass file in the lab's secrets, never from the command line or the environment. A dump is
verified by restoring it into a scratch database.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..paths import sha256_file
from ..lab.credentials import DB_NAME, DB_USER, db_password
from ..errors import BackupError
from ..history import now_ns
from ..dialects import POSTGRESQL
from ..lab.state import LabState, secrets_dir

SCRATCH_DB = "availlab_dump_check"


@dataclass(frozen=True)
class Dump:
    path: str
    t0: int
    t1: int
    size_bytes: int
    sha256: str


def _pgpass(st: LabState) -> Path:
    path = secrets_dir(st.lab) / "pgpass"
    paths.write_private(path, f"*:{POSTGRESQL.port}:*:{DB_USER}:{db_password(st.lab)}\n")
    return path


def _run(st: LabState, args: list[str], what: str) -> None:
    env = {"PGPASSFILE": str(_pgpass(st)), "PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "10"}
    r = subprocess.run(["ip", "netns", "exec", st.client_namespace, *args], env=env,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise BackupError(f"{what} failed: {r.stderr.strip().replace(db_password(st.lab), '***')}")


def _require_postgresql(st: LabState, vm: str) -> None:
    if vm in st.vms and st.vms[vm].database != "postgresql":
        raise BackupError(f"{vm} runs {st.vms[vm].database}: the logical dump check uses pg_dump and "
                          "exists for PostgreSQL only")


def pg_dump(st: LabState, vm: str, out: Path) -> Dump:
    _require_postgresql(st, vm)
    t0 = now_ns()
    _run(st, ["pg_dump", "-h", st.vms[vm].address, "-U", DB_USER, "-d", DB_NAME, "-Fc", "-f", str(out)],
         f"pg_dump of {vm}")
    return Dump(str(out), t0, now_ns(), out.stat().st_size, sha256_file(out))


def restore_into_scratch(st: LabState, vm: str, dump: Dump, dbname: str = SCRATCH_DB) -> str:
    """Load the dump into a fresh database on `vm`; returns the database's name."""
    host = ["-h", st.vms[vm].address, "-U", DB_USER]
    _run(st, ["dropdb", *host, "--if-exists", dbname], f"dropdb {dbname} on {vm}")
    _run(st, ["createdb", *host, dbname], f"createdb {dbname} on {vm}")
    _run(st, ["pg_restore", *host, "-d", dbname, "--no-owner", dump.path], f"pg_restore into {dbname} on {vm}")
    return dbname
