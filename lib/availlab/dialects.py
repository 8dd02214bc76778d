"""What differs between the databases the clients talk to, and nothing else.

The workload, the final read, the backup's "prepare" step and the wait for a login are written
once; each profile says how its database spells them: the workload table's DDL, the insert and
the read, the server-identity query (which server answered: the same one before and after a
migration), the connection string of its ODBC driver, and which errors mean "the connection
failed" (a write that meets one may have committed: `info`) rather than "the statement failed"
(`fail`). The DSN server, port and credentials come from the caller; a user-supplied ODBC DSN
(`DSN=name`) replaces driver, server, port and the profile's timeout and retry settings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .records import Rec

TABLE = "availlab_kv"


@dataclass(frozen=True)
class Dialect:
    name: str
    default_driver: str  # as registered in odbcinst.ini by the driver's package
    port: int
    ddl: str
    insert: str  # parameters: key, value, client, run_id
    read: str  # parameter: key -> one row (v) or none
    keys_of_run: str  # parameter: run_id -> every key that run wrote
    rows_of_run: str  # parameter: run_id -> (key, value) of every row that run wrote
    # -> one row: (server address or name, version, instance id, start time and its clock now, both
    # as epoch seconds on the server's own clock: a guest's clock lags after a pause, and the
    # second tells by how much)
    identity: str
    prepare_backup: str | None  # what a VSS writer would do before the freeze; None: nothing
    other_sessions: str  # -> ids of the current user's other sessions (the workload's connections)
    kill_session: str  # ends session {id} server-side, as a DBA or a failover would
    connection_states: tuple[str, ...]  # SQLSTATE prefixes meaning the connection failed
    connection_words: tuple[str, ...]  # lower-case message fragments meaning the same
    # a secondary index: the final read finds a run's keys through it, and the consistency check
    # of a restored database counts through it, a structure of its own beside the table
    indexes: tuple[str, ...] = (f"CREATE INDEX IF NOT EXISTS {TABLE}_run ON {TABLE} (run_id)",)
    # two counts of the workload's table that must agree on a sound restored database, each read
    # from a structure of its own: the table (its heap, or InnoDB's clustered primary key) and an index
    count_by_table: str = f"SELECT count(*) FROM {TABLE}"
    count_by_index: str = f"SELECT count(*) FROM {TABLE} WHERE k >= ''"
    integrity_check: str | None = None  # the server's own check of the table and its indexes, if any
    probe: str = "SELECT 1"  # the cheapest round trip: what the blackout probe runs every few ms
    # the lab's guest image: the packages of its database server ((): no lab image, e.g. SQL Server,
    # reached on a real server through a DSN), and whether a booted template of its VM is proven
    # safe to restore (vm/template.py says what that took for MariaDB)
    image_packages: tuple[str, ...] = ()
    templatable: bool = False
    # what this machine needs to reach it: its ODBC driver and client tools (its dump tool), Debian
    # packages that lab/setup.sh installs ((): none from Debian, e.g. Microsoft's ODBC driver)
    host_packages: tuple[str, ...] = ()
    # one server process whose threads serve every session: its guest seldom switches page tables,
    # which is what lab/defects.py's TCG defect needs to bite (a process per connection switches
    # them all the time)
    one_process: bool = True

    def password_statement(self, user: str, password: str) -> str | None:
        """The statement that gives `user` the lab's password, as a stored hash (run on a VM
        restored from a template, logged in with the template's own password); None: no lab image."""
        return None

    def prepare(self) -> tuple[str, ...]:
        """What makes the workload's table ready: the table, then its indexes (each idempotent)."""
        return (self.ddl, *self.indexes)

    def drop(self) -> str:
        """What removes the workload's table (and its indexes): a watch leaves nothing of its own
        in a database that is not a lab's."""
        return f"DROP TABLE IF EXISTS {TABLE}"

    def integrity_problems(self, rows: list[list[str]]) -> list[str]:
        """What the server's integrity check (its answer's rows, as text) found wrong; [] when sound.
        A check that gave no answer at all is a problem too: it cannot vouch for anything."""
        return [] if rows else ["the integrity check gave no answer"]

    def connection_string(self, *, server: str, port: int, database: str, user: str, password: str,
                          driver: str | None = None, dsn: str | None = None, connect_timeout_s: int = 5,
                          extra: str = "") -> str:
        creds = f"DATABASE={odbc_value(database)};UID={odbc_value(user)};PWD={odbc_value(password)};"
        if dsn:  # the user's DSN carries its driver's settings (timeouts, retries, TLS): they rule
            return f"DSN={odbc_value(dsn)};" + creds + extra
        # 0: no login timeout in the string, for a caller that sets its own (pyodbc's timeout=):
        # psqlODBC refuses both at once ("connect_timeout parameter in pqopt option conflicts")
        return (f"DRIVER={odbc_braced(driver or self.default_driver)};" + self._address(server, port) + creds
                + (self._timeouts(connect_timeout_s) if connect_timeout_s else "") + self._resilience() + extra)

    def _address(self, server: str, port: int) -> str:
        return f"SERVER={odbc_value(server)};PORT={int(port)};"

    def _timeouts(self, connect_timeout_s: int) -> str:
        return ""

    def _resilience(self) -> str:
        """The driver's own reconnection settings: not a login timeout, so always there."""
        return ""

    def is_connection_error(self, sqlstate: str | None, message: str) -> bool:
        if sqlstate and sqlstate.startswith(self.connection_states):
            return True
        low = message.lower()
        return any(w in low for w in self.connection_words)

    def classify(self, kind: str, sqlstate: str | None, message: str) -> str:
        """fail = certainly did not happen; info = may have happened (a write on a dead connection).
        A read that fails never changed anything, so it is always `fail`."""
        if kind == "write" and self.is_connection_error(sqlstate, message):
            return Rec.INFO
        return Rec.FAIL


class _PostgreSQL(Dialect):
    def password_statement(self, user: str, password: str) -> str | None:
        return f"ALTER ROLE \"{user}\" PASSWORD '{scram_verifier(password)}'"

    def _timeouts(self, connect_timeout_s: int) -> str:
        # psqlODBC rejects ODBC's login timeout; libpq's own goes through pqopt
        return f"pqopt={{connect_timeout={connect_timeout_s}}};"


_SPECIAL = set(";{}=[](),?*!@") | {" ", "\t"}


def odbc_value(value: str) -> str:
    """An attribute value as ODBC's SQLDriverConnect grammar wants it: a value holding `;`, a
    brace or another special character goes inside braces, a `}` in it doubled. Unbraced,
    `PWD=a;b` would end the password at `a` and pass `b` on as an attribute of its own."""
    if not value or not (set(value) & _SPECIAL or value != value.strip()):
        return value
    return odbc_braced(value)


def odbc_braced(value: str) -> str:
    """A value always in braces (a driver's name, which has spaces), a `}` in it doubled."""
    return "{" + value.replace("}", "}}") + "}"


class _MariaDB(Dialect):
    def password_statement(self, user: str, password: str) -> str | None:
        return f"SET PASSWORD = '{native_hash(password)}'"  # its own: needs no CREATE USER

    def _timeouts(self, connect_timeout_s: int) -> str:
        return f"CONN_TIMEOUT={connect_timeout_s};"

    def integrity_problems(self, rows: list[list[str]]) -> list[str]:
        """CHECK TABLE answers (Table, Op, Msg_type, Msg_text) rows, ending in status OK when sound."""
        bad = [f"{r[2]}: {r[3]}" for r in rows if len(r) >= 4 and r[2].lower() in ("error", "warning")]
        if not rows or rows[-1][-1] != "OK":
            bad.append(f"CHECK TABLE did not end in OK: {rows[-1] if rows else 'no answer'}")
        return bad


class _SQLServer(Dialect):
    def _address(self, server: str, port: int) -> str:
        address = f"tcp:{server},{int(port)}"  # the driver's form: its comma is ODBC's special, not the server's
        return f"SERVER={odbc_braced(address) if set(server) & _SPECIAL else address};"

    def _timeouts(self, connect_timeout_s: int) -> str:
        return f"LoginTimeout={connect_timeout_s};"

    def _resilience(self) -> str:
        # ConnectRetryCount/Interval: the driver's own idle-connection resiliency; the workload
        # additionally reconnects by its own policy (WorkloadSpec.connect_retry_*)
        return "ConnectRetryCount=3;ConnectRetryInterval=10;"


# Shared by all three: ODBC's own "connection" classes (08xxx), and timeouts (HYT00/HYT01).
_ODBC_CONNECTION_STATES = ("08", "HYT00", "HYT01")
# The workload's statements are plain SQL with ODBC `?` markers: the same text for every server.
_STATEMENTS: dict[str, Any] = dict(insert=f"INSERT INTO {TABLE} (k, v, client, run_id) VALUES (?, ?, ?, ?)",
                   read=f"SELECT v FROM {TABLE} WHERE k = ?",
                   keys_of_run=f"SELECT k FROM {TABLE} WHERE run_id = ?",
                   rows_of_run=f"SELECT k, v FROM {TABLE} WHERE run_id = ?")

POSTGRESQL = _PostgreSQL(
    name="postgresql", default_driver="PostgreSQL Unicode", port=5432,
    image_packages=("postgresql-15",), templatable=True, one_process=False,
    host_packages=("odbc-postgresql", "postgresql-client"),  # psqlODBC; pg_dump, pg_restore
    ddl=(f"CREATE TABLE IF NOT EXISTS {TABLE} (k text PRIMARY KEY, v text NOT NULL, client int NOT NULL, "
         "run_id text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())"),
    **_STATEMENTS,
    identity=("SELECT coalesce(host(inet_server_addr()), 'local socket'), version(), "
              "(SELECT system_identifier::text FROM pg_control_system()), "
              "extract(epoch FROM pg_postmaster_start_time())::float8, extract(epoch FROM clock_timestamp())::float8"),
    prepare_backup="CHECKPOINT",
    other_sessions=("SELECT pid FROM pg_stat_activity WHERE usename = current_user "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"),
    kill_session="SELECT pg_terminate_backend({id})",
    count_by_table=f"SET enable_indexscan = off; SET enable_bitmapscan = off; SELECT count(*) FROM {TABLE}",
    count_by_index=f"SET enable_seqscan = off; SELECT count(*) FROM {TABLE} WHERE k >= ''",
    # 57P01-03: admin shutdown, crash shutdown, cannot connect now
    connection_states=_ODBC_CONNECTION_STATES + ("57P01", "57P02", "57P03"),
    connection_words=("server closed the connection", "could not receive data", "could not send data",
                      "connection not open", "communication link", "no connection to the server",
                      "terminating connection", "connection reset", "broken pipe"),
)

MARIADB = _MariaDB(
    name="mariadb", default_driver="MariaDB Unicode", port=3306,
    image_packages=("mariadb-server",), templatable=True,
    host_packages=("odbc-mariadb", "mariadb-client"),  # MariaDB Connector/ODBC; mariadb-dump, mariadb
    ddl=(f"CREATE TABLE IF NOT EXISTS {TABLE} (k VARCHAR(191) PRIMARY KEY, v VARCHAR(255) NOT NULL, "
         "client INT NOT NULL, run_id VARCHAR(64) NOT NULL, "
         "written_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"),
    **_STATEMENTS,
    identity=("SELECT @@hostname, VERSION(), CAST(@@server_id AS CHAR), "
              "UNIX_TIMESTAMP() - (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
              "WHERE VARIABLE_NAME = 'UPTIME'), UNIX_TIMESTAMP(NOW(6))"),
    # InnoDB's redo log makes a frozen filesystem image crash-consistent; there is no CHECKPOINT
    # statement, and FLUSH TABLES WITH READ LOCK would have to be held across the freeze.
    prepare_backup=None,
    other_sessions=("SELECT id FROM information_schema.processlist "
                    "WHERE user = SUBSTRING_INDEX(CURRENT_USER(), '@', 1) AND id <> CONNECTION_ID()"),
    kill_session="KILL CONNECTION {id}",
    # InnoDB's table is its clustered primary key, so the other count must read a secondary
    # index, a B-tree of its own (reading PRIMARY twice could never disagree); CHECK TABLE …
    # EXTENDED checks every index entry against its row
    count_by_table=f"SELECT count(*) FROM {TABLE} FORCE INDEX (PRIMARY)",
    count_by_index=f"SELECT count(*) FROM {TABLE} FORCE INDEX ({TABLE}_run) WHERE run_id >= ''",
    integrity_check=f"CHECK TABLE {TABLE} EXTENDED",
    # the driver reports "server has gone away" (2006) and "lost connection" (2013) as HY000
    connection_states=_ODBC_CONNECTION_STATES,
    connection_words=("server has gone away", "lost connection", "can't connect", "connection refused",
                      "connection reset", "broken pipe", "communication link"),
)

SQLSERVER = _SQLServer(
    name="sqlserver", default_driver="ODBC Driver 18 for SQL Server", port=1433,
    ddl=(f"IF OBJECT_ID(N'{TABLE}', N'U') IS NULL CREATE TABLE {TABLE} (k NVARCHAR(191) NOT NULL PRIMARY KEY, "
         "v NVARCHAR(255) NOT NULL, client INT NOT NULL, run_id NVARCHAR(64) NOT NULL, "
         "written_at DATETIME2 NOT NULL DEFAULT SYSUTCDATETIME())"),
    **_STATEMENTS,
    indexes=(f"IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'{TABLE}_run') "
             f"CREATE INDEX {TABLE}_run ON {TABLE} (run_id)",),
    identity=("SELECT CAST(@@SERVERNAME AS NVARCHAR(128)), CAST(SERVERPROPERTY('ProductVersion') AS NVARCHAR(128)), "
              "CAST(SERVERPROPERTY('MachineName') AS NVARCHAR(128)), "
              "(SELECT DATEDIFF_BIG(millisecond, '1970-01-01', sqlserver_start_time) / 1000.0 FROM sys.dm_os_sys_info), "
              # local time, as sqlserver_start_time is: the offset then carries the time zone too
              "DATEDIFF_BIG(millisecond, '1970-01-01', SYSDATETIME()) / 1000.0"),
    prepare_backup="CHECKPOINT",
    other_sessions=("SELECT session_id FROM sys.dm_exec_sessions WHERE login_name = SUSER_SNAME() "
                    "AND session_id <> @@SPID AND is_user_process = 1"),
    kill_session="KILL {id}",  # needs ALTER ANY CONNECTION
    # 08S01 communication link failure, 08001 cannot connect; IMC01-IMC06: the driver's idle
    # connection recovery (ConnectRetryCount) failed; 40613/40197 (Azure: database unavailable,
    # service error) arrive with 42000/HY000 and are matched by their words
    connection_states=_ODBC_CONNECTION_STATES + ("IMC",),
    connection_words=("communication link failure", "tcp provider", "connection is no longer usable",
                      "login timeout expired", "is not currently available", "connection reset",
                      "broken pipe"),
)

DIALECTS = {d.name: d for d in (POSTGRESQL, MARIADB, SQLSERVER)}


DEFAULT_DATABASE = "postgresql"  # the profile a lab VM runs unless told otherwise: named here only
LAB_IMAGES = tuple(n for n, d in DIALECTS.items() if d.image_packages)  # the profiles a lab VM can run


def host_packages() -> list[str]:
    """Every database's Debian packages for this machine, once each (lab/setup.sh installs them)."""
    return list(dict.fromkeys(p for d in DIALECTS.values() for p in d.host_packages))


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802/7677, as libpq's
    PQencryptPasswordConn makes it): sent instead of the password, which so never crosses the
    lab network nor reaches the server's statement log."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}"


def native_hash(password: str) -> str:
    """MariaDB's mysql_native_password hash: '*' + hex(SHA1(SHA1(password)))."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise UsageError(f"database: {name!r} is not a known profile (profiles: {', '.join(DIALECTS)})") from None
