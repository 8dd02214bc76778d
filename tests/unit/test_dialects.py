"""The three database profiles: what each says to its server and how it judges an error."""

import pytest

from availlab.clients.sql import DSN
from availlab.dialects import DIALECTS, MARIADB, POSTGRESQL, SQLSERVER, TABLE, dialect
from availlab.errors import UsageError

ALL = [POSTGRESQL, MARIADB, SQLSERVER]


@pytest.mark.parametrize("d", ALL, ids=lambda d: d.name)
def test_every_profile_speaks_about_the_same_table_with_four_insert_parameters(d):
    assert TABLE in d.ddl and TABLE in d.insert and TABLE in d.read and TABLE in d.keys_of_run
    assert d.insert.count("?") == 4 and d.read.count("?") == 1 and d.keys_of_run.count("?") == 1
    for column in ("k", "v", "client", "run_id", "written_at"):
        assert f" {column} " in d.ddl.replace("(", " ").replace(",", " ")
    assert d.ddl.count("(") == d.ddl.count(")")


def test_ddl_is_each_servers_own_dialect():
    assert "timestamptz" in POSTGRESQL.ddl and "IF NOT EXISTS" in POSTGRESQL.ddl
    assert "ENGINE=InnoDB" in MARIADB.ddl and "VARCHAR(191)" in MARIADB.ddl  # utf8mb4 index limit
    assert SQLSERVER.ddl.startswith(f"IF OBJECT_ID(N'{TABLE}', N'U') IS NULL") and "NVARCHAR" in SQLSERVER.ddl
    assert "version()" in POSTGRESQL.identity and "@@hostname" in MARIADB.identity
    assert "@@SERVERNAME" in SQLSERVER.identity


def test_connection_strings_carry_each_drivers_own_timeout_and_address_form():
    pg = DSN(server="10.0.0.5", password="pw").connection_string()
    assert pg.startswith("DRIVER={PostgreSQL Unicode};SERVER=10.0.0.5;PORT=5432;")
    assert "pqopt={connect_timeout=5};" in pg
    my = DSN(server="10.0.0.5", password="pw", dialect="mariadb").connection_string()
    assert my.startswith("DRIVER={MariaDB Unicode};SERVER=10.0.0.5;PORT=3306;") and "CONN_TIMEOUT=5;" in my
    ms = DSN(server="sql.example", password="pw", dialect="sqlserver").connection_string()
    assert ms.startswith("DRIVER={ODBC Driver 18 for SQL Server};SERVER=tcp:sql.example,1433;")
    assert "ConnectRetryCount=3;ConnectRetryInterval=10;" in ms and "LoginTimeout=5;" in ms
    tds = DSN(server="sql.example", password="pw", dialect="sqlserver", driver="FreeTDS", port=14330)
    assert tds.connection_string().startswith("DRIVER={FreeTDS};SERVER=tcp:sql.example,14330;")


def test_a_user_dsn_replaces_driver_server_and_port_and_the_secret_can_be_masked():
    d = DSN(server="ignored", password="s3cret", dialect="sqlserver", odbc_dsn="prod-sql")
    s = d.connection_string()
    assert s.startswith("DSN=prod-sql;DATABASE=") and "SERVER=" not in s and "DRIVER=" not in s
    assert "ConnectRetryCount" not in s  # the DSN's own settings rule
    assert "s3cret" in s and "s3cret" not in d.connection_string(show_secret=False)
    assert "s3cret" not in repr(d)


@pytest.mark.parametrize("d,state,message", [
    (POSTGRESQL, "08006", "could not receive data from server"),
    (POSTGRESQL, "08S01", "SQLPrepareW unable due to the connection lost (35)"),  # psqlODBC, seen
    (POSTGRESQL, "57P01", "terminating connection due to administrator command"),
    (POSTGRESQL, "HY000", "server closed the connection unexpectedly"),
    (MARIADB, "08S01", "[ma-3.1.15][10.11.19-MariaDB-0+deb12u1]Lost connection to server during query (2013)"),
    (MARIADB, "HY000", "Lost connection to server during query"),
    (MARIADB, "HY000", "MySQL server has gone away"),
    (MARIADB, "08S01", "Communication link failure"),
    (SQLSERVER, "08S01", "[Microsoft][ODBC Driver 18 for SQL Server]Communication link failure"),
    (SQLSERVER, "HYT00", "Query timeout expired"),
    (SQLSERVER, "42000", "TCP Provider: Error code 0x68"),
    (SQLSERVER, "IMC01", "The connection is broken and recovery is not possible."),
])
def test_a_write_that_meets_a_connection_failure_may_have_happened(d, state, message):
    assert d.is_connection_error(state, message)
    assert d.classify("write", state, message) == "info"
    assert d.classify("read", state, message) == "fail"  # a read changed nothing


@pytest.mark.parametrize("d,state,message", [
    (POSTGRESQL, "23505", "duplicate key value violates unique constraint"),
    (POSTGRESQL, "42P01", 'relation "availlab_kv" does not exist'),
    (MARIADB, "23000", "Duplicate entry 'x' for key 'PRIMARY'"),
    (MARIADB, "42S02", "Table 'availlab.availlab_kv' doesn't exist"),
    (SQLSERVER, "23000", "Violation of PRIMARY KEY constraint"),
    (SQLSERVER, "42S02", "Invalid object name 'availlab_kv'"),
])
def test_a_statement_error_certainly_did_not_happen(d, state, message):
    assert not d.is_connection_error(state, message)
    assert d.classify("write", state, message) == "fail"


def test_profiles_by_name_and_a_clear_error_for_an_unknown_one():
    assert set(DIALECTS) == {"postgresql", "mariadb", "sqlserver"}
    assert dialect("mariadb") is MARIADB
    with pytest.raises(UsageError, match="database: 'oracle' is not a known profile"):
        dialect("oracle")


def test_only_databases_whose_backup_needs_it_prepare_one():
    assert POSTGRESQL.prepare_backup == "CHECKPOINT" and SQLSERVER.prepare_backup == "CHECKPOINT"
    assert MARIADB.prepare_backup is None  # InnoDB's redo log: a frozen image is crash-consistent


@pytest.mark.parametrize("password, expected", [
    ("plain24chars", "PWD=plain24chars;"),
    ("a;b}c", "PWD={a;b}}c};"),
    ("x;UID=root", "PWD={x;UID=root};"),
    ("{x}", "PWD={{x}}};"),
    (" lead", "PWD={ lead};"),
])
def test_a_password_with_odbc_syntax_in_it_stays_one_value(password, expected):
    """ODBC: a value with `;` or braces goes inside braces, `}` doubled; the driver manager
    then sees exactly the attributes we wrote, whatever the password holds."""
    for db in ("postgresql", "mariadb", "sqlserver"):
        s = DSN(server="10.0.0.5", password=password, dialect=db).connection_string()
        assert expected in s, s


def test_no_timeout_leaves_the_login_timeout_to_the_client():
    """`lab dsn` prints this form: psqlODBC refuses pqopt's connect_timeout beside pyodbc's timeout=."""
    for d in ("postgresql", "mariadb", "sqlserver"):
        s = DSN(server="10.0.0.5", password="pw", dialect=d, connect_timeout_s=0).connection_string()
        assert not any(t in s for t in ("pqopt", "connect_timeout", "CONN_TIMEOUT", "LoginTimeout")), s
    ms = DSN(server="sql.example", password="pw", dialect="sqlserver", connect_timeout_s=0).connection_string()
    assert "ConnectRetryCount=3;ConnectRetryInterval=10;" in ms  # resiliency is not a login timeout


def test_the_consistency_counts_read_two_structures_on_every_database():
    """On InnoDB the table is its clustered primary key: counting through PRIMARY twice could never
    disagree, so the second count reads the secondary index the workload's table is made with."""
    from availlab.dialects import DIALECTS, MARIADB, TABLE

    for d in DIALECTS.values():
        assert any(f"{TABLE}_run" in s and "run_id" in s for s in d.prepare()[1:]), d.name
    assert "PRIMARY" in MARIADB.count_by_table and "PRIMARY" not in MARIADB.count_by_index
    assert f"FORCE INDEX ({TABLE}_run)" in MARIADB.count_by_index
    assert MARIADB.integrity_check == f"CHECK TABLE {TABLE} EXTENDED"
    ok = [["availlab.availlab_kv", "check", "status", "OK"]]
    assert MARIADB.integrity_problems(ok) == []
    bad = MARIADB.integrity_problems([["availlab.availlab_kv", "check", "warning", "Found 99 rows in index"],
                                      ["availlab.availlab_kv", "check", "error", "Corrupt"]])
    assert "warning: Found 99 rows in index" in bad and any("did not end in OK" in b for b in bad)


def test_a_value_is_derived_from_its_key_so_a_restored_row_can_be_checked():
    from availlab.clients.worker import value_for

    assert value_for("run1:3:17") == "v17"


def test_the_default_database_is_named_once():
    """Issue 29: "postgresql" was a literal default 26 times outside dialects.py. The default is
    dialects.DEFAULT_DATABASE. A dialect owns its image packages, its template and its password
    statement; what is left keyed by profile name: the dump tools (they run programs, which the
    pure dialects do not)."""
    import re
    from pathlib import Path

    pkg = Path(__file__).resolve().parents[2] / "lib" / "availlab"
    tables = {"clients/dbdump.py"}
    spelled = sorted({str(p.relative_to(pkg)) for p in pkg.rglob("*.py") if p.name != "dialects.py"
                      and re.search(r'"postgresql"', p.read_text())})
    assert set(spelled) <= tables, spelled
