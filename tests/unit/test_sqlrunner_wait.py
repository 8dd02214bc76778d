"""Waiting for a database that boots: what counts as "not yet" is the profile's call. MariaDB's
driver reports a server still starting as HY000 "Can't connect" (2002), which the wait used to take
for a final answer, failing a restored MariaDB VM within seconds. Faked pyodbc here; the real
thing runs in tests/integration/test_mariadb.py (a restore drill boots a MariaDB VM cold)."""

import pyodbc
import pytest

from availlab.clients import sqlrunner

BOOTING = {"mariadb": ("HY000", "[ma-3.1.15]Can't connect to server on '10.213.0.102' (115) (2002)"),
           "postgresql": ("08001", "could not connect to server: Connection refused")}


class _Conn:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql):
        return self

    def fetchall(self):
        return [(1,)]


@pytest.mark.parametrize("profile", sorted(BOOTING))
def test_a_server_still_booting_is_waited_for(monkeypatch, profile):
    calls = []

    def connect(connstr, autocommit):
        calls.append(connstr)
        if len(calls) < 3:
            raise pyodbc.Error(*BOOTING[profile])
        return _Conn()

    monkeypatch.setattr(sqlrunner.pyodbc, "connect", connect)
    reply = sqlrunner._wait({"connstr": "x", "dialect": profile, "deadline_s": 10, "interval_s": 0})
    assert reply["ok"] is True and reply["attempts"] == 3


def test_a_refused_login_is_final_at_once(monkeypatch):
    def connect(connstr, autocommit):
        raise pyodbc.Error("28000", "[ma-3.1.15]Access denied for user 'availlab'@'10.213.0.1'")

    monkeypatch.setattr(sqlrunner.pyodbc, "connect", connect)
    reply = sqlrunner._wait({"connstr": "x", "dialect": "mariadb", "deadline_s": 10, "interval_s": 0})
    assert reply["ok"] is False and reply["attempts"] == 1 and reply["sqlstate"] == "28000"
