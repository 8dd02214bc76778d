"""A watch (issue 30) on crafted histories: outages found from the evidence alone, each with what
announced it; an unannounced one named and held against the SLO; the operator's command judged;
marks; the CLI's flags as runbook 50's parameters. The real lab runs it in
tests/integration/test_watch.py, with `virsh migrate` as the mover."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from availlab.checks import SLO
from availlab.checks.observe import check_watch, outage_floor_ms
from availlab.cli_watch import duration_s, watch_params
from availlab.errors import UsageError
from availlab.report import write_run
from availlab.scenarios.observe import mark

from .test_checker import final, identity, keys_of, steady

MS = 1_000_000


def _history(skip=None, until_ms=6000):
    h = [{"type": "clock", "t": 0, "wall": 1_700_000_000.0}, {"type": "warm", "t": 0}] + steady(until_ms=until_ms, skip=skip)
    return h + [final(keys_of(h))]


def _command(t0_ms, t1_ms, code=0):
    return [{"type": "command-start", "t": t0_ms * MS, "argv": ["virsh", "migrate", "sql1"]},
            {"type": "command", "t": t1_ms * MS, "t0": t0_ms * MS, "t1": t1_ms * MS, "argv": ["virsh", "migrate", "sql1"],
             "exit_code": code, "output": "/runs/x/command.log", "tail": "error: boom" if code else ""}]


def _pause(t0_ms, t1_ms):
    return [{"type": "watch-event", "t": t0_ms * MS, "host": "h1", "event": "suspended", "detail": "migrated"},
            {"type": "watch-event", "t": t1_ms * MS, "host": "h2", "event": "resumed", "detail": "migrated"}]


def by_name(r):
    return {c.name: c for c in r.checks}


def test_a_migration_under_a_watched_command_is_one_explained_outage_and_passes():
    job = {"type": "watch-event", "t": 2400 * MS, "host": "h2", "event": "migration-completed", "downtime_ms": 92}
    r = check_watch(_history(skip=(2000, 2300)), _command(1500, 3000) + _pause(2050, 2150) + [job], SLO(),
                    with_command=True)
    c = by_name(r)
    assert r.verdict == "PASS", [(x.name, x.valid, x.message) for x in r.checks]
    assert r.figures["hypervisor_pauses"][0]["libvirt_downtime_ms"] == 92  # the target's own job statistics
    out = c["outages"].figures["outages"]
    assert len(out) == 1 and out[0]["explained"] and out[0]["ms"] >= 300
    assert out[0]["announced_by"] == ["command (virsh migrate …)"]
    assert out[0]["hypervisor"] == ["paused on h1 (migrated), resumed on h2"]
    assert c["command"].valid is True and "exited 0" in c["command"].message
    p = r.figures["hypervisor_pauses"][0]
    assert (p["host"], p["resumed_on"], p["paused_ms"]) == ("h1", "h2", 100.0) and p["client_gap_ms"] >= 300


def test_an_outage_nothing_announced_is_named_and_fails_the_slo_with_nothing_lost():
    r = check_watch(_history(skip=(3000, 5000)), [], SLO(max_blackout_ms=1000), with_command=False)
    c = by_name(r)
    assert r.verdict == "FAIL" and c["blackout"].valid is False and c["lost-writes"].valid is True
    assert r.figures["unexplained_outages"] == 1 and "unexplained outage at 22:13:22.990 for 2020.0 ms" in c["outages"].message
    assert "command" not in c  # a watch for a time has no command to judge


def test_each_outage_names_the_clients_that_saw_it_and_the_probes_own_gap_across_it():
    h = _history(skip=(3000, 5000))
    h += [{"type": "probe", "t": t * MS, "ok": True} for t in range(0, 6000, 5) if not 3002 <= t <= 4997]
    (o,) = by_name(check_watch(h, [], SLO(), with_command=False))["outages"].figures["outages"]
    assert o["clients"] == [0, 1] and o["probe_gap_ms"] == 2000.0
    (o,) = by_name(check_watch(_history(skip=(3000, 5000)), [], SLO(), with_command=False))["outages"].figures["outages"]
    assert o["probe_gap_ms"] is None  # no probe ran: no second witness, not a zero


def test_an_operators_mark_just_before_an_outage_announces_it():
    ev = [{"type": "mark", "t": 2500 * MS, "text": "Move-VM started"}]
    out = by_name(check_watch(_history(skip=(3000, 3400)), ev, SLO(), with_command=False))["outages"].figures["outages"]
    assert out[0]["explained"] and out[0]["announced_by"] == ["mark: Move-VM started"]


def test_a_pause_nobody_announced_is_still_an_unexplained_outage_with_its_cause_beside_it():
    ev = _pause(3050, 4900)
    ev[0]["detail"] = "paused"  # `virsh suspend` by someone else
    o = by_name(check_watch(_history(skip=(3000, 5000)), ev, SLO(), with_command=False))["outages"]
    assert o.figures["unexplained_outages"] == 1 and "(paused on h1 (paused), resumed on h2)" in o.message


def test_a_database_restart_inside_an_outage_is_named_beside_it_and_fails_the_server_check():
    h = [r for r in _history(skip=(3000, 5000)) if r["type"] != "server-identity"]
    # read after it by a guest whose clock lags 2.5 s (it was paused): up again 4.2 s into the run
    h += [identity("before", 0, started_at=1_699_990_000.0),
          {**identity("after", 6100, started_at=1_700_000_001.7), "clock_offset_s": -2.5}]
    c = by_name(check_watch(h, [], SLO(), with_command=False))
    o = c["outages"].figures["outages"]
    assert len(o) == 1 and o[0]["database"] == ["the database restarted (up again at 22:13:24.200)"]
    assert not o[0]["explained"]  # named, yet nobody announced it
    assert c["server"].valid is False and "the database restarted at" in c["server"].message


def test_a_command_that_failed_fails_the_run_and_one_that_never_ended_is_unknown():
    c = by_name(check_watch(_history(), _command(1000, 2000, code=1), SLO(), with_command=True))["command"]
    assert c.valid is False and "exited with 1: error: boom" in c.message
    cut = by_name(check_watch(_history(), _command(1000, 2000)[:1], SLO(), with_command=True))["command"]
    assert cut.valid == "unknown" and "never ended" in cut.message


def test_the_outage_floor_is_the_runs_quiet_moments_never_below_50_ms():
    assert outage_floor_ms([]) == 50.0 and outage_floor_ms([5.0] * 100) == 50.0
    assert outage_floor_ms([5.0] * 99 + [40.0]) == 50.0 and outage_floor_ms([30.0] * 100) == 90.0


def test_the_report_shows_the_watch(tmp_path):
    h, ev = _history(skip=(2000, 2300)), _command(1500, 3000) + _pause(2050, 2150)
    r = check_watch(h, ev, SLO(), with_command=True)
    a = write_run(tmp_path, "50-watch", r, h, ev, {"vm": "sql1"}, 0.0)
    page = a.report.read_text()
    assert "<table id='outages'>" in page and "virsh migrate sql1" in page and "<table id='pauses'>" in page
    assert "clients 0, 1; probe did not run" in page
    assert json.loads((tmp_path / "results.json").read_text())["figures"]["hypervisor_pauses"][0]["host"] == "h1"


def test_a_mark_goes_into_a_running_watch_only(tmp_path):
    with pytest.raises(UsageError, match="no events.jsonl"):
        mark(tmp_path, "moved")
    (tmp_path / "events.jsonl").write_text("")
    with pytest.raises(UsageError, match="text is empty"):
        mark(tmp_path, "  ")
    rec = mark(tmp_path, " migration started ")
    assert json.loads((tmp_path / "events.jsonl").read_text())["text"] == "migration started" == rec["text"]
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(UsageError, match="already judged"):
        mark(tmp_path, "too late")


def _args(**kw):
    base = {"vm": "sql1", "duration": None, "clients": None, "rate": None, "max_blackout_ms": None, "warmup": None,
            "cooldown": None, "watcher": "libvirt", "command": [], "dsn": None, "database": None,
            "password_file": None, "password_env": None, "keep": False, "read_only": False}
    return argparse.Namespace(**{**base, **kw})


def test_the_cli_flags_are_runbook_50s_parameters():
    from availlab.scenarios.runbook import parse_value

    def parsed(args):
        return {k: parse_value(v) for k, v in watch_params(args)}

    cmd = ["--", "virsh", "-c", "qemu:///system", "migrate", "--live", "sql1", "it's"]
    p = parsed(_args(command=cmd, watcher="none"))
    assert p == {"vm": "sql1", "command": cmd[1:], "command_cwd": os.getcwd(), "duration_s": 0.0,
                 "watcher": ""}  # while the command runs, where the operator started it
    assert parsed(_args(duration=600.0, rate=0.0))["duration_s"] == 600.0
    assert "duration_s" not in parsed(_args())  # the runbook's own default (60 s)
    assert [duration_s(x) for x in ("90", "90s", "10m", "1.5h")] == [90, 90, 600, 5400]
    with pytest.raises(argparse.ArgumentTypeError):
        duration_s("ten minutes")


def test_the_command_runs_where_the_operator_is_and_its_end_is_recorded(tmp_path):
    from availlab.history import JsonlWriter, read_jsonl
    from availlab.scenarios.observe import run_command

    here = tmp_path / "operator"
    here.mkdir()
    (here / "move.sh").write_text("echo moving $1; pwd; exit 3\n")
    with JsonlWriter(tmp_path / "events.jsonl") as ev:
        rec = run_command(["sh", "move.sh", "sql1"], tmp_path, ev, cwd=str(here))
        assert rec["exit_code"] == 3 and rec["tail"] == f"moving sql1\n{here}\n" == (tmp_path / "command.log").read_text()
        missing = run_command(["no-such-mover-here"], tmp_path, ev)
    assert missing["exit_code"] == 127 and "could not start the command" in missing["tail"]
    kinds = [e["type"] for e in read_jsonl(tmp_path / "events.jsonl")]
    assert kinds == ["command-start", "command", "command-start", "command"]


def test_any_database_by_its_connection_string_never_with_its_password(tmp_path, monkeypatch):
    from availlab.clients.sql import dsn_for
    from availlab.lab.endpoint import endpoint_state, parse_connection_string
    from availlab.scenarios.params import Watch

    assert parse_connection_string("Driver={PostgreSQL Unicode};Server=db1;Port=5433;Database=app;UID=w") == {
        "driver": "PostgreSQL Unicode", "server": "db1", "port": "5433", "dbname": "app", "user": "w"}
    assert parse_connection_string("DSN=prod;Database=app;UID=w")["odbc_dsn"] == "prod"
    for bad, said in (("Server=db1;Database=app;UID=w;PWD=hunter2", "--password-file FILE"),
                      ("Server=db1;Database=app;UID=w;SSLmode=require", "unknown key 'SSLmode'"),
                      ("Database=app;UID=w", "name the server"), ("Server=db1;UID=w", "name the database"),
                      ("Server=db1;Database=app", "name the user"),
                      ("Server=db1;Port=fivefour;Database=app;UID=w", "Port must be a number")):
        with pytest.raises(UsageError, match=said):
            parse_connection_string(bad)
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    st = endpoint_state("prod", "Server=10.0.0.5;Database=app;UID=w", "mariadb", password_file=str(pw))
    d = dsn_for(st, "prod")
    assert (d.server, d.database, d.user, d.password, d.dialect, st.hosts) == ("10.0.0.5", "app", "w", "s3cret", "mariadb", {})
    monkeypatch.setenv("WATCH_PW", "from-env")
    assert dsn_for(endpoint_state("prod", "Server=h;Database=a;UID=w", "postgresql", password_env="WATCH_PW"),
                   "prod").password == "from-env"
    pw.chmod(0o644)
    with pytest.raises(UsageError, match="readable by others"):
        endpoint_state("prod", "Server=h;Database=a;UID=w", "postgresql", password_file=str(pw))
    with pytest.raises(UsageError, match="exactly one"):
        Watch.parse({"dsn": "Server=h;Database=a;UID=w"})
    with pytest.raises(UsageError, match="only with dsn"):
        Watch.parse({"password_env": "WATCH_PW"})
    assert Watch.parse({"dsn": "Server=h;Database=a;UID=w", "password_env": "X"}).lab_must_be_up is False
    assert Watch.parse({}).lab_must_be_up is True
    with pytest.raises(UsageError, match="keep_table: only with dsn"):
        Watch.parse({"keep_table": True})


def test_a_watcher_uses_only_read_only_connections_and_leaves_none_open():
    """Unit-level, with stand-in connections (the real refusal is tested on the lab): a connection
    that is not read-only is refused, and the ones already opened are closed."""
    from availlab.events.watchers import LibvirtWatcher
    from availlab.history import JsonlWriter

    closed = []

    class Conn:
        def __init__(self, name, ro):
            self.name, self.read_only = name, ro

        def on_domain_events(self, vm, cb):
            return [1]

        def remove_callbacks(self, handles):
            pass

        def close(self):
            closed.append(self.name)

    w = LibvirtWatcher("sql1", ["h1", "h2"], lambda h: Conn(h, ro=(h == "h1")))
    with JsonlWriter(Path("/dev/null")) as ev, pytest.raises(UsageError, match="h2 is not read-only"):
        w.start(ev)
    assert closed == ["h1", "h2"] and w._conns == []


def test_a_read_only_watch_passes_on_what_it_can_judge_and_says_lost_writes_were_not_checked():
    h = [r for r in _history() if r["type"] != "final-read"]
    h = [{**r, "f": "read", "key": ""} if r.get("f") == "write" else r for r in h]
    r = check_watch(h, [], SLO(), with_command=False, read_only=True)
    lw = by_name(r)["lost-writes"]
    assert r.verdict == "PASS" and lw.valid == "unknown" and not lw.judged
    assert lw.message == "not run: a read-only watch writes nothing to lose" and r.figures["lost_writes"] is None
    assert by_name(check_watch(h, [], SLO(), with_command=False))["lost-writes"].valid == "unknown"  # else: no final read


def test_a_read_only_client_runs_the_cheapest_read_and_writes_nothing():
    import io

    from availlab.clients.worker import Client

    ran = []

    class Conn:
        def execute(self, sql, *args):
            ran.append((sql, args))
            return self

        def fetchone(self):
            return (1,)

    out = io.StringIO()
    c = Client({"client": 0, "run_id": "r", "dialect": "postgresql", "read_only": True, "connstr": "", "secret": "x"}, out)
    c.conn = Conn()
    for _ in range(3):
        c.one_op()
    assert ran == [("SELECT 1", ())] * 3 and c.acked == []
    recs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["type"] for r in recs] == ["invoke", "ok"] * 3 and {r["f"] for r in recs} == {"read"}


def test_a_watch_tells_lost_connections_from_failed_statements():
    h = _history()
    ok_at = [i for i, r in enumerate(h) if r.get("type") == "ok" and r.get("client") == 0]
    conn = {"sqlstate": "08006", "error": "server closed the connection unexpectedly"}
    h[ok_at[10]] = {**h[ok_at[10]], "type": "fail", **conn}
    e = by_name(check_watch(h, [], SLO(), with_command=False))["errors"]
    assert e.figures["lost_connections"] == 1 and e.figures["statement_errors"] == 0 and not e.judged
    assert "every one reconnected" in e.message and e.valid is True
    h[ok_at[20]] = {**h[ok_at[20]], "type": "fail", "sqlstate": "42P01", "error": 'relation "x" does not exist'}
    e = by_name(check_watch(h, [], SLO(), with_command=False))["errors"]
    assert e.figures["statement_errors"] == 1 and e.valid is False and "1 statement error" in e.message


def test_where_the_vm_is_leaves_out_a_definition_left_shut_off():
    """A migration that keeps the source's definition (virsh migrate without --undefinesource)
    leaves the VM shut off there: it does not run on two hosts."""
    from availlab.events.watchers import LibvirtWatcher
    from availlab.lab.hypervisor import DomainInfo

    class Conn:
        def __init__(self, name, state):
            self.name, self.state = name, state

        def domains(self):
            return [DomainInfo("sql1", "u", self.state, True, self.name)]

    w = LibvirtWatcher("sql1", ["h1", "h2"], lambda h: None)
    w._conns = [(Conn("h1", "shut-off"), []), (Conn("h2", "running"), [])]
    assert w.where() == {"h2": "running"}
